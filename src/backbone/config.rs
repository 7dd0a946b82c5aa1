//! The collaborative model's settings (RLMRec's defaults, SPEC.md section 2), owned by the
//! backbones that read them; `config.rs` gathers it with the other sections.

use super::autocf::AutoCfConfig;
use super::dccf::DccfConfig;
use super::sgl::SglConfig;
use super::simgcl::SimGclConfig;
use serde::{Deserialize, Serialize};

/// The collaborative model (RLMRec's defaults, SPEC.md section 2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// One of [`BACKBONES`]: `mf`, `lightgcn`, `gccf`, `sgl`, `simgcl`, `dccf`, `autocf`, or
    /// the training-free baseline `mostpop`.
    pub backbone: String,
    /// Embedding size.
    pub dim: usize,
    /// Propagation layers (graph backbones).
    pub layers: usize,
    /// Probability that an edge survives dropout during training (1 = no dropout).
    pub keep_rate: f32,
    /// Weight of `sum ||W||^2` over all parameters.
    pub reg: f64,
    /// SGL's contrastive settings (`backbone = "sgl"`).
    pub sgl: SglConfig,
    /// SimGCL's contrastive settings (`backbone = "simgcl"`).
    pub simgcl: SimGclConfig,
    /// DCCF's intents and contrastive settings (`backbone = "dccf"`).
    pub dccf: DccfConfig,
    /// AutoCF's masking, decoder and loss settings (`backbone = "autocf"`).
    pub autocf: AutoCfConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: "lightgcn".into(),
            dim: 32,
            layers: 3,
            keep_rate: 0.8,
            reg: 1e-6,
            sgl: SglConfig::default(),
            simgcl: SimGclConfig::default(),
            dccf: DccfConfig::default(),
            autocf: AutoCfConfig::default(),
        }
    }
}

/// Backbones `model.backbone` may name (`mostpop` is the training-free baseline).
pub const BACKBONES: &[&str] = &[
    "mf", "lightgcn", "gccf", "sgl", "simgcl", "dccf", "autocf", "mostpop",
];

impl ModelConfig {
    /// Checks the settings before anything is built, naming the field at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.dim == 0 {
            anyhow::bail!("model.dim must be positive");
        }
        if !(self.keep_rate > 0.0 && self.keep_rate <= 1.0) {
            anyhow::bail!("model.keep_rate must be in (0, 1], got {}", self.keep_rate);
        }
        if self.reg < 0.0 {
            anyhow::bail!("model.reg must be >= 0, got {}", self.reg);
        }
        self.sgl.validate()?;
        self.simgcl.validate()?;
        self.dccf.validate()?;
        if self.backbone == "autocf" {
            self.autocf.validate(self.dim)?;
        }
        if !BACKBONES.contains(&self.backbone.as_str()) {
            anyhow::bail!(
                "model.backbone `{}` is not known ({})",
                self.backbone,
                BACKBONES.join(", ")
            );
        }
        Ok(())
    }
}
