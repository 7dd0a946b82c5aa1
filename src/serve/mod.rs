//! Using a trained model (issue 14): everything that answers requests from a run
//! directory, whatever its backbone and alignment.
//!
//! - [`Recommender`] (`recommender.rs`) loads a run once and answers: recommendations for
//!   a known user, for a new user from the items they liked (fold-in, `fold_in.rs`),
//!   similar items, items added from text alone (cold start, `cold_start.rs`), and
//!   explanations (`explain.rs`); a request names an item by its id or its title
//!   (`item_lookup.rs`);
//! - `export.rs` writes the vectors as `.npy` with id maps and a manifest;
//! - `http.rs` serves all of it over HTTP (axum), with `metrics.rs` (Prometheus text),
//!   `openapi.json` and a one-page HTML client (`page.html`).

pub mod cold_start;
pub mod explain;
pub mod export;
pub mod fold_in;
pub mod http;
pub mod item_lookup;
pub mod metrics;
pub mod recommender;

pub use recommender::{LoadOptions, Recommender, Scored, ServeError};
