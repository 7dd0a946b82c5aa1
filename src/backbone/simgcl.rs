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
use candle_core::{Result, Tensor, Var};
use rayon::prelude::*;
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
        let mut layer = ego.clone();
        let mut sum = ego.clone();
        for _ in 0..self.layers {
            let next = propagate(&layer, self.full.clone(), 1, Combine::Last)?;
            // the noise's sign is taken from the detached layer: a constant to the gradient
            let noise = sign_aligned_noise(&next, self.cfg.eps as f32, rng)?;
            layer = (next + noise)?;
            sum = (sum + &layer)?;
        }
        Ok(sum)
    }
}

/// Rows drawn by one generator in [`sign_aligned_noise`].
const NOISE_ROWS: usize = 512;

/// SimGCL's noise for a layer `x` (`[n, d]`): `eps * normalize(u) * sign(x)` with `u`
/// uniform in `[0, 1)^d` per row and `sign(x) = +1` where `x >= 0`, else -1. One pass on
/// the host, blocks of rows in parallel; each block draws from its own generator, seeded
/// from one draw of `rng`, so the noise depends on the seed alone, not on the threads.
pub fn sign_aligned_noise(x: &Tensor, eps: f32, rng: &mut Rng) -> Result<Tensor> {
    let (n, d) = x.dims2()?;
    let base = rng.next_u64();
    let mut out = vec![0f32; n * d];
    if d > 0 {
        crate::ops::with_host_slice(&x.detach(), |xs| {
            out.par_chunks_mut(NOISE_ROWS * d)
                .zip(xs.par_chunks(NOISE_ROWS * d))
                .enumerate()
                .for_each(|(k, (o, xb))| {
                    let mut r = Rng::new(base.wrapping_add(k as u64));
                    for (orow, xrow) in o.chunks_mut(d).zip(xb.chunks(d)) {
                        orow.iter_mut().for_each(|v| *v = r.f32());
                        let norm = orow.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                        let scale = eps / norm;
                        for (v, x) in orow.iter_mut().zip(xrow) {
                            *v *= if *x >= 0.0 { scale } else { -scale };
                        }
                    }
                });
        })?;
    }
    Tensor::from_vec(out, (n, d), x.device())
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Each row of the noise has norm `eps` and the sign of the layer (+ at 0 and where
    /// the layer is NaN, -), the same seed gives the same bits, another seed other noise,
    /// across more rows than one generator block.
    #[test]
    fn noise_rows_have_norm_eps_and_the_layers_sign() {
        let (n, d) = (1100, 4);
        let xs: Vec<f32> = (0..n * d)
            .map(|i| match i % 7 {
                0 => 0.0,
                1 => f32::NAN,
                k => k as f32 - 3.5,
            })
            .collect();
        let x = Tensor::from_vec(xs.clone(), (n, d), &Device::Cpu).unwrap();
        let draw = |seed: u64| {
            sign_aligned_noise(&x, 0.9, &mut Rng::new(seed))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let noise = draw(5);
        for (row, xrow) in noise.chunks(d).zip(xs.chunks(d)) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 0.9).abs() < 1e-5, "{norm}");
            for (v, x) in row.iter().zip(xrow) {
                assert_eq!(*v >= 0.0, *x >= 0.0, "noise {v} on {x}");
            }
        }
        assert_eq!(noise, draw(5));
        assert_ne!(noise, draw(6));
        // the first and the last block differ (each draws from its own generator)
        assert_ne!(noise[..d], noise[(n - 1) * d..]);
    }
}
