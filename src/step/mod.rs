//! What one training step is made of: the batch of (user, positive, negative) triples and
//! the named loss terms. The backbones, the alignments and the trainer all use these, so
//! they live below all three and imports run one way (`train` -> `backbone`, `align` ->
//! `step`).

pub mod batch;

pub use batch::{distinct_with_counts, Batch};
use candle_core::Tensor;

/// A named, already weighted loss term (logged under its name, summed by the trainer).
pub struct LossTerm {
    pub name: String,
    pub value: Tensor,
}

impl LossTerm {
    pub fn new(name: impl Into<String>, value: Tensor) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }
}
