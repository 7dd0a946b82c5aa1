//! RLMRec-Gen (Ren et al., WWW 2024, section 3.3.2): generative alignment. A random
//! `mask_ratio` of all nodes has its layer-0 embedding replaced by one learnable mask
//! token before propagation; the masked nodes' final embeddings go through an MLP into the
//! semantic space and are contrasted (cosine InfoNCE, negatives: the other masked nodes)
//! with their own `e_L`. `loss = recon_weight * mean InfoNCE` (SPEC.md section 1). BPR is
//! computed on the masked graph, as in RLMRec.

use super::mlp::Mlp;
use super::{AlignContext, AlignInput, Alignment, SemanticTables};
use crate::ops::rowwise::l2_normalize;
use crate::ops::similarity::info_nce;
use crate::rng::Rng;
use crate::step::LossTerm;
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GenConfig {
    pub recon_weight: f64,
    pub tau: f64,
    pub mask_ratio: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            recon_weight: 1e-2,
            tau: 0.2,
            mask_ratio: 0.1,
        }
    }
}

pub struct RlmrecGen {
    cfg: GenConfig,
    mlp: Mlp,
    token: Var,
    sem: SemanticTables,
    /// Node ids masked in the current step.
    masked: Vec<u32>,
}

impl RlmrecGen {
    pub fn new(cfg: &GenConfig, ctx: AlignContext) -> Result<Self> {
        if !(cfg.mask_ratio > 0.0 && cfg.mask_ratio < 1.0) {
            candle_core::bail!(
                "align.rlmrec_gen.mask_ratio must be in (0, 1), got {}",
                cfg.mask_ratio
            );
        }
        let mlp = Mlp::new(ctx.out_dim, ctx.sem.dim, ctx.device, ctx.rng)?;
        let bound = (6.0 / (1 + ctx.ego_dim) as f64).sqrt();
        let t: Vec<f32> = (0..ctx.ego_dim)
            .map(|_| ((ctx.rng.f64() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let token = Var::from_tensor(&Tensor::from_vec(t, (1, ctx.ego_dim), ctx.device)?)?;
        Ok(Self {
            cfg: cfg.clone(),
            mlp,
            token,
            sem: ctx.sem,
            masked: Vec::new(),
        })
    }
}

impl Alignment for RlmrecGen {
    fn name(&self) -> &'static str {
        "rlmrec_gen"
    }
    fn params(&self) -> Vec<(String, Var)> {
        let mut p = self.mlp.params("mlp");
        p.push(("mask_token".into(), self.token.clone()));
        p
    }
    fn before_encode(&mut self, ego: Tensor, rng: &mut Rng) -> Result<Tensor> {
        let n = ego.dim(0)?;
        let k = ((n as f64 * self.cfg.mask_ratio) as usize).max(2);
        self.masked = rng
            .sample_distinct(n, k)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let mut m = vec![0f32; n];
        for &i in &self.masked {
            m[i as usize] = 1.0;
        }
        let mask = Tensor::from_vec(m, (n, 1), ego.device())?;
        let keep = (1.0 - &mask)?;
        ego.broadcast_mul(&keep)? + mask.matmul(self.token.as_tensor())?
    }
    fn losses(&mut self, input: &AlignInput, _rng: &mut Rng) -> Result<Vec<LossTerm>> {
        let idx = Tensor::from_slice(&self.masked, self.masked.len(), input.nodes.device())?;
        let enc = l2_normalize(&self.mlp.forward(&input.nodes.index_select(&idx, 0)?)?)?;
        let prf = l2_normalize(&self.sem.all.index_select(&idx, 0)?)?;
        let nce = info_nce(&enc, &prf, &prf, self.cfg.tau)?;
        let loss = (nce * (self.cfg.recon_weight / self.masked.len() as f64))?;
        Ok(vec![LossTerm::new("recon", loss.to_dtype(DType::F32)?)])
    }
}
