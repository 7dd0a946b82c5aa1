//! The collaborative model's settings (RLMRec's defaults, SPEC.md section 2), owned by the
//! backbones that read them; `config.rs` gathers it with the other sections.

use serde::{Deserialize, Serialize};

/// The collaborative model (RLMRec's defaults, SPEC.md section 2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `mf`, `lightgcn`, or the training-free baseline `mostpop`.
    pub backbone: String,
    /// Embedding size.
    pub dim: usize,
    /// Propagation layers (graph backbones).
    pub layers: usize,
    /// Probability that an edge survives dropout during training (1 = no dropout).
    pub keep_rate: f32,
    /// Weight of `sum ||W||^2` over all parameters.
    pub reg: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: "lightgcn".into(),
            dim: 32,
            layers: 3,
            keep_rate: 0.8,
            reg: 1e-6,
        }
    }
}
