//! SimGCL (Yu et al., SIGIR 2022, "Are Graph Augmentations Necessary?") as RLMRec runs it:
//! LightGCN without edge dropout for BPR; two noisy views for a contrastive term. A noisy
//! view propagates `E_l = A E_{l-1} + eps * normalize(U[0,1)) * sign(A E_{l-1})` (uniform
//! noise per entry, each row of it L2-normalised, the sign taken from the propagated
//! embedding) and sums layers 0..L. InfoNCE (cosine, `tau`) between the views for the
//! batch's users (candidates: all users of view 2) and positive items (all items of view
//! 2), `/ B * cl_weight` (see `views.rs`).

use super::views::{Rows, TwoViews};
use super::ModelConfig;
use super::{xavier_node_table, Backbone, BuildContext, Mode};
use crate::data::graph::Csr;
use crate::ops::{propagate, Combine};
use crate::rng::Rng;
use crate::step::{Batch, LossTerm};
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// SimGCL's own settings (`[model.simgcl]`; RLMRec's amazon and yelp values).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimGclConfig {
    pub cl_weight: f64,
    pub tau: f64,
    /// Noise magnitude `eps` per layer.
    pub eps: f64,
}

impl Default for SimGclConfig {
    fn default() -> Self {
        Self {
            cl_weight: 0.1,
            tau: 0.2,
            eps: 0.9,
        }
    }
}

impl SimGclConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.cl_weight >= 0.0) {
            anyhow::bail!(
                "model.simgcl.cl_weight must be >= 0, got {}",
                self.cl_weight
            );
        }
        if !(self.tau > 0.0) {
            anyhow::bail!("model.simgcl.tau must be positive, got {}", self.tau);
        }
        if !(self.eps >= 0.0) {
            anyhow::bail!("model.simgcl.eps must be >= 0, got {}", self.eps);
        }
        Ok(())
    }
}

pub struct SimGcl {
    table: Var,
    full: Arc<Csr>,
    layers: usize,
    n_users: usize,
    cfg: SimGclConfig,
}

impl SimGcl {
    pub fn new(cfg: &ModelConfig, ctx: BuildContext) -> Result<Self> {
        let table = xavier_node_table(ctx.n_users, ctx.n_items, cfg.dim, ctx.device, ctx.rng)?;
        Ok(Self {
            table,
            full: Arc::new(ctx.graph.normalized(false)),
            layers: cfg.layers,
            n_users: ctx.n_users,
            cfg: cfg.simgcl.clone(),
        })
    }

    /// One noisy view: layers with noise added after each propagation, summed with layer 0.
    pub fn noisy_view(&self, ego: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let (n, d) = ego.dims2()?;
        let mut layer = ego.clone();
        let mut sum = ego.clone();
        for _ in 0..self.layers {
            let next = propagate(&layer, self.full.clone(), 1, Combine::Last)?;
            let mut noise: Vec<f32> = (0..n * d).map(|_| rng.f32()).collect();
            for row in noise.chunks_exact_mut(d) {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut()
                    .for_each(|x| *x *= self.cfg.eps as f32 / norm);
            }
            let noise = Tensor::from_vec(noise, (n, d), ego.device())?;
            // sign(next) without a gradient: +1 where >= 0, -1 elsewhere
            let sign = ((next.detach().ge(0.0)?.to_dtype(DType::F32)? * 2.0)? - 1.0)?;
            layer = (next + (noise * sign)?)?;
            sum = (sum + &layer)?;
        }
        Ok(sum)
    }
}

impl Backbone for SimGcl {
    fn name(&self) -> &'static str {
        "simgcl"
    }
    fn table(&self) -> &Var {
        &self.table
    }
    /// The clean view: LightGCN on the full graph (no dropout, as RLMRec's SimGCL).
    fn encode(&self, ego: &Tensor, _mode: &mut Mode) -> Result<Tensor> {
        propagate(ego, self.full.clone(), self.layers, Combine::Sum)
    }
    fn aux_losses(
        &self,
        ego: &Tensor,
        _nodes: &Tensor,
        batch: &Batch,
        rng: &mut Rng,
    ) -> Result<Vec<LossTerm>> {
        let views = TwoViews {
            n_users: self.n_users,
            rows: &[Rows::Users, Rows::PosItems],
            tau: self.cfg.tau,
            cl_weight: self.cfg.cl_weight,
        };
        views.term(batch, rng, |rng| self.noisy_view(ego, rng))
    }
}
