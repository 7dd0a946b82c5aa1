//! Alignment plug-ins between collaborative embeddings and language-model embeddings
//! (RLMRec-Con/Gen, DaRec). An alignment may rewrite layer-0 embeddings before the
//! backbone propagates them and adds loss terms computed from the final embeddings; it
//! never needs to know which backbone it is attached to.

use crate::backbone::LossTerm;
use crate::rng::Rng;
use crate::train::batch::Batch;
use candle_core::{Result, Tensor, Var};

/// What an alignment sees of a training step.
pub struct AlignInput<'a> {
    /// Layer-0 embeddings as propagated (after `before_encode`), `[U+I, d]`.
    pub ego: &'a Tensor,
    /// Final node embeddings of the backbone, `[U+I, d_out]`, users first.
    pub nodes: &'a Tensor,
    pub n_users: usize,
    pub batch: &'a Batch,
}

pub trait Alignment: Send {
    fn name(&self) -> &'static str;
    fn params(&self) -> Vec<(String, Var)>;
    /// Rewrites layer-0 embeddings before propagation (identity by default).
    fn before_encode(&mut self, ego: Tensor, _rng: &mut Rng) -> Result<Tensor> {
        Ok(ego)
    }
    /// Weighted loss terms for this step.
    fn losses(&mut self, input: &AlignInput, rng: &mut Rng) -> Result<Vec<LossTerm>>;
}

/// The plain backbone: no alignment.
pub struct NoAlignment;

impl Alignment for NoAlignment {
    fn name(&self) -> &'static str {
        "none"
    }
    fn params(&self) -> Vec<(String, Var)> {
        Vec::new()
    }
    fn losses(&mut self, _input: &AlignInput, _rng: &mut Rng) -> Result<Vec<LossTerm>> {
        Ok(Vec::new())
    }
}
