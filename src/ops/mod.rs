//! Fused candle custom ops for the hot paths (see ../shared/STACK.md for the measurements
//! that motivated them): multi-layer sparse propagation with its backward, and an
//! in-place Adam update.

pub mod adam;
pub mod bpr;
pub mod dense;
pub mod fastmath;
pub mod propagate;
pub mod similarity;

pub use adam::{Adam, AdamConfig};
pub use propagate::{propagate, Combine};
