//! Collaborative backbones behind one small trait.
//!
//! A backbone owns its parameters and knows how to turn layer-0 node embeddings
//! (`ego`, `[U+I, d]`, users first) into final node embeddings (`encode`). The trainer
//! computes BPR on the final embeddings, adds the backbone's own self-supervised terms
//! (`aux_losses`, e.g. SGL/SimGCL contrastive losses) and whatever the alignment plug-in
//! returns. Because an alignment may rewrite `ego` before propagation (RLMRec-Gen masks
//! nodes) and reads the final embeddings after it, neither side knows the other.
//! Scores are always `<e_u, e_i>` of the final embeddings.
//!
//! Adding a backbone = one file here + one arm in [`build`] + its defaults in the config.

pub mod autocf;
pub mod config;
pub mod dccf;
pub mod gccf;
pub mod lightgcn;
pub mod mf;
pub mod sgl;
pub mod simgcl;
pub mod views;

use crate::data::graph::BipartiteGraph;
use crate::rng::Rng;
use crate::step::{Batch, LossTerm};
use candle_core::{DType, Device, Result, Tensor, Var};
pub use config::ModelConfig;
use std::sync::Arc;

/// Whether stochastic parts (edge dropout, noise) are active.
pub enum Mode<'a> {
    Train(&'a mut Rng),
    Eval,
}

/// What a backbone is built from.
pub struct BuildContext<'a> {
    pub n_users: usize,
    pub n_items: usize,
    pub graph: Arc<BipartiteGraph>,
    pub device: &'a Device,
    pub rng: &'a mut Rng,
}

pub trait Backbone: Send {
    /// Short name used in configs, logs and saved models.
    fn name(&self) -> &'static str;
    /// The layer-0 node table `[U+I, d]`, users first (every backbone here has one).
    fn table(&self) -> &Var;
    /// Trainable parameters with stable names (the keys in `model.safetensors`); by
    /// default the node table alone, as `embedding`.
    fn params(&self) -> Vec<(String, Var)> {
        vec![("embedding".into(), self.table().clone())]
    }
    /// Layer-0 node embeddings `[U+I, d]`, users first.
    fn ego(&self) -> Result<Tensor> {
        Ok(self.table().as_tensor().clone())
    }
    /// Width of the layer-0 embeddings.
    fn ego_dim(&self) -> usize {
        self.table().dim(1).unwrap_or(0)
    }
    /// Width of the final embeddings returned by `encode` (by default the layer-0 width).
    fn out_dim(&self) -> usize {
        self.ego_dim()
    }
    /// Final node embeddings `[U+I, d_out]` from (possibly rewritten) layer-0 embeddings.
    fn encode(&self, ego: &Tensor, mode: &mut Mode) -> Result<Tensor>;
    /// The ranking loss on the embeddings scores are taken from (`scored`: the final
    /// embeddings, or the alignment's score space): BPR by default, logged as `bpr`.
    fn rank_loss(&self, scored: &Tensor, batch: &Batch) -> Result<LossTerm> {
        let bpr = crate::ops::bpr::bpr_loss(
            scored,
            batch.user_idx.clone(),
            batch.pos_idx.clone(),
            batch.neg_idx.clone(),
        )?;
        Ok(LossTerm::new("bpr", bpr))
    }
    /// The backbone's own extra losses for a training batch, given the layer-0 embeddings
    /// and the final ones of the same forward pass (none by default).
    fn aux_losses(
        &self,
        _ego: &Tensor,
        _nodes: &Tensor,
        _batch: &Batch,
        _rng: &mut Rng,
    ) -> Result<Vec<LossTerm>> {
        Ok(Vec::new())
    }
    /// Fold-in: how a user who was not in training gets a final embedding from the items
    /// they interacted with, in closed form and without retraining, prepared once from the
    /// trained layer-0 embeddings `ego`. `None` (the default): the backbone has none, and
    /// callers fit the user's vector against the fixed item embeddings instead.
    fn fold_in(&self, _ego: &Tensor) -> Result<Option<Box<dyn FoldIn>>> {
        Ok(None)
    }
}

/// A prepared fold-in (see [`Backbone::fold_in`]).
pub trait FoldIn: Send + Sync {
    /// The final embedding of a new user who interacted with `items` (internal ids).
    fn user(&self, items: &[u32]) -> Vec<f32>;
}

/// Builds the backbone named in the config.
pub fn build(cfg: &ModelConfig, ctx: BuildContext) -> anyhow::Result<Box<dyn Backbone>> {
    Ok(match cfg.backbone.as_str() {
        "mf" => Box::new(mf::Mf::new(cfg, ctx)?),
        "lightgcn" => Box::new(lightgcn::LightGcn::new(cfg, ctx)?),
        "gccf" => Box::new(gccf::Gccf::new(cfg, ctx)?),
        "sgl" => Box::new(sgl::Sgl::new(cfg, ctx)?),
        "simgcl" => Box::new(simgcl::SimGcl::new(cfg, ctx)?),
        "dccf" => Box::new(dccf::Dccf::new(cfg, ctx)?),
        "autocf" => Box::new(autocf::AutoCf::new(cfg, ctx)?),
        other => anyhow::bail!(
            "unknown backbone `{other}` (known: {}; mostpop is a baseline without training)",
            config::BACKBONES.join(", ")
        ),
    })
}

/// Xavier-uniform initialised embedding table for users and items, stored as one
/// `[U+I, d]` variable: each block uses its own bound `sqrt(6 / (rows + d))`, as two
/// separate `nn.init.xavier_uniform_` tables would (RLMRec's initialisation).
pub fn xavier_node_table(
    n_users: usize,
    n_items: usize,
    d: usize,
    device: &Device,
    rng: &mut Rng,
) -> Result<Var> {
    let mut data = Vec::with_capacity((n_users + n_items) * d);
    for rows in [n_users, n_items] {
        let bound = (6.0 / (rows + d) as f64).sqrt();
        for _ in 0..rows * d {
            data.push(((rng.f64() * 2.0 - 1.0) * bound) as f32);
        }
    }
    Var::from_tensor(
        &Tensor::from_vec(data, (n_users + n_items, d), &Device::Cpu)?
            .to_device(device)?
            .to_dtype(DType::F32)?,
    )
}

/// A Xavier-uniform `[rows, cols]` weight matrix (bound `sqrt(6 / (rows + cols))`, as
/// `nn.init.xavier_uniform_`).
pub fn xavier_matrix(rows: usize, cols: usize, device: &Device, rng: &mut Rng) -> Result<Var> {
    let bound = (6.0 / (rows + cols) as f64).sqrt();
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| ((rng.f64() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Var::from_tensor(&Tensor::from_vec(data, (rows, cols), device)?)
}

/// What the backbones' unit tests share: a tiny graph and a finite-difference check.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::data::UserItems;

    /// 3 users x 4 items, six edges, every node connected.
    pub fn tiny_graph() -> Arc<BipartiteGraph> {
        let train = UserItems::from_pairs(3, &[(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (2, 0)]);
        Arc::new(BipartiteGraph::from_train(3, 4, &train))
    }

    /// Checks `d loss / d ego` from autograd against central finite differences at a few
    /// entries of the `[7, 4]` node table.
    pub fn assert_gradient_matches_finite_differences(
        ego: &Tensor,
        loss: impl Fn(&Tensor) -> Tensor,
    ) {
        let grads = loss(ego).backward().unwrap();
        let g: Vec<Vec<f32>> = grads.get(ego).unwrap().to_vec2().unwrap();
        let base: Vec<Vec<f32>> = ego.to_vec2().unwrap();
        let h = 1e-2f32;
        for (r, c) in [(0, 0), (1, 3), (4, 2), (6, 1)] {
            let shifted = |s: f32| {
                let mut v = base.clone();
                v[r][c] += s;
                let t = Tensor::new(v, &Device::Cpu).unwrap();
                loss(&t).to_scalar::<f32>().unwrap() as f64
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
            let an = g[r][c] as f64;
            assert!(
                (fd - an).abs() < 2e-3 * (an.abs() + fd.abs()) + 2e-4,
                "({r},{c}): fd {fd} vs analytic {an}"
            );
        }
    }
}
