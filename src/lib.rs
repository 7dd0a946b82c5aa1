//! darec: recommenders aligned with language-model semantics (RLMRec, DaRec) on candle.
//!
//! Layout: `data` (readers, preparation, graph), `ops` (fused candle custom ops),
//! `backbone` (collaborative models), `align` (alignment plug-ins), `train`, `eval`,
//! `config`, `run` (run directories and atomic writes).

// Deliberate patterns: `!(x > 0.0)` in validation rejects NaN along with the rest; the
// numeric kernels take their dimensions as plain arguments and read several arrays by
// one index.
#![allow(
    clippy::neg_cmp_op_on_partial_ord,
    clippy::too_many_arguments,
    clippy::needless_range_loop
)]

pub mod align;
pub mod alloc;
pub mod backbone;
pub mod cache;
pub mod config;
pub mod curves;
pub mod curves_compare;
pub mod data;
pub mod eval;
pub mod experiment;
pub mod fault;
pub mod ops;
pub mod pipeline;
pub mod plot;
pub mod plot_backend;
pub mod progress;
pub mod report;
pub mod rng;
pub mod run;
pub mod run_lock;
pub mod serve;
pub mod step;
pub mod text;
pub mod threads;
pub mod train;
pub mod tsne;
