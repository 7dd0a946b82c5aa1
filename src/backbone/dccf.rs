//! DCCF (Ren et al., SIGIR 2023, "Disentangled Contrastive Collaborative Filtering") as
//! RLMRec runs it (SPEC.md section 2). Each layer `l` turns `E_l` into
//! `E_{l+1} = G E_l + I(E_l) + A_G E_l + A_I E_l + E_l`:
//! - `G E_l`: the plain message on `D^-1/2 A D^-1/2` (no self loops, no edge dropout);
//! - `I(E_l)`: intent-aware aggregation over `K` global intents per side,
//!   `softmax(E_u W_u) W_u^T` for users and `softmax(E_i W_i) W_i^T` for items;
//! - `A_G E_l`, `A_I E_l`: adaptive-edge messages. Each edge `(h, t)` of the graph gets
//!   `alpha = (cos(x_h, x_t) + 1) / 2` from the plain message (`x = G E_l`) or the intent
//!   message (`x = I(E_l)`), row-normalised (`alpha / sum_t alpha`); the weights are
//!   learned through, as in the paper.
//!
//! The final embedding sums `E_0..E_L`. The contrastive term, per layer, is InfoNCE
//! (cosine, `tau`) of the plain message against each of the other three for the batch's
//! distinct users and distinct positive items, the candidates being the same distinct rows
//! of the other view; all six sums are divided by the number of distinct users (RLMRec's
//! code) and weighted by `cl_weight`.

use super::ModelConfig;
use super::{xavier_matrix, xavier_node_table, Backbone, BuildContext, Mode};
use crate::data::graph::Csr;
use crate::ops::adaptive::{adaptive_message, EdgeIndex};
use crate::ops::rowwise::{l2_normalize, softmax_rows};
use crate::ops::similarity::info_nce;
use crate::ops::{propagate, Combine};
use crate::rng::Rng;
use crate::step::{Batch, LossTerm};
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// DCCF's own settings (`[model.dccf]`; RLMRec's values for all three data sets).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DccfConfig {
    /// Global intents per side (`K`).
    pub intents: usize,
    pub cl_weight: f64,
    pub tau: f64,
}

impl Default for DccfConfig {
    fn default() -> Self {
        Self {
            intents: 128,
            cl_weight: 1e-3,
            tau: 0.1,
        }
    }
}

impl DccfConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.intents == 0 {
            anyhow::bail!("model.dccf.intents must be positive");
        }
        if !(self.cl_weight >= 0.0) {
            anyhow::bail!("model.dccf.cl_weight must be >= 0, got {}", self.cl_weight);
        }
        if !(self.tau > 0.0) {
            anyhow::bail!("model.dccf.tau must be positive, got {}", self.tau);
        }
        Ok(())
    }
}

/// The four messages of one layer, kept from a training forward pass for the
/// contrastive term.
struct LayerViews {
    gnn: Tensor,
    int: Tensor,
    gaa: Tensor,
    iaa: Tensor,
}

pub struct Dccf {
    table: Var,
    user_intent: Var,
    item_intent: Var,
    full: Arc<Csr>,
    /// `full`'s entries and their reverse entries, for the adaptive messages.
    edges: Arc<EdgeIndex>,
    layers: usize,
    n_users: usize,
    cfg: DccfConfig,
    /// The views of the last training-mode `encode`, taken by `aux_losses`.
    last_views: Mutex<Option<Vec<LayerViews>>>,
}

impl Dccf {
    pub fn new(cfg: &ModelConfig, ctx: BuildContext) -> Result<Self> {
        let table = xavier_node_table(ctx.n_users, ctx.n_items, cfg.dim, ctx.device, ctx.rng)?;
        let k = cfg.dccf.intents;
        let user_intent = xavier_matrix(cfg.dim, k, ctx.device, ctx.rng)?;
        let item_intent = xavier_matrix(cfg.dim, k, ctx.device, ctx.rng)?;
        let full = Arc::new(ctx.graph.normalized(false));
        let edges = Arc::new(EdgeIndex::new(full.clone())?);
        Ok(Self {
            table,
            user_intent,
            item_intent,
            full,
            edges,
            layers: cfg.layers,
            n_users: ctx.n_users,
            cfg: cfg.dccf.clone(),
            last_views: Mutex::new(None),
        })
    }

    /// `softmax(E W) W^T` for users and items with their own intents.
    fn intent_message(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let one = |rows: &Tensor, w: &Var| -> Result<Tensor> {
            let w = w.as_tensor();
            softmax_rows(&rows.matmul(w)?)?.matmul(&w.t()?)
        };
        let users = one(&x.narrow(0, 0, self.n_users)?, &self.user_intent)?;
        let items = one(
            &x.narrow(0, self.n_users, n - self.n_users)?,
            &self.item_intent,
        )?;
        Tensor::cat(&[users, items], 0)
    }

    /// Final embeddings and, per layer, the four messages.
    fn forward(&self, ego: &Tensor) -> Result<(Tensor, Vec<LayerViews>)> {
        let mut layer = ego.clone();
        let mut sum = ego.clone();
        let mut views = Vec::with_capacity(self.layers);
        for _ in 0..self.layers {
            let gnn = propagate(&layer, self.full.clone(), 1, Combine::Last)?;
            let int = self.intent_message(&layer)?;
            let gaa = adaptive_message(&gnn, &layer, &self.edges)?;
            let iaa = adaptive_message(&int, &layer, &self.edges)?;
            layer = ((((&gnn + &int)? + &gaa)? + &iaa)? + &layer)?;
            sum = (sum + &layer)?;
            views.push(LayerViews { gnn, int, gaa, iaa });
        }
        Ok((sum, views))
    }

    fn contrast(&self, views: &[LayerViews], batch: &Batch) -> Result<Tensor> {
        let dev = self.table.device();
        let users = batch.distinct_nodes(&batch.user_idx)?;
        let items = batch.distinct_nodes(&batch.pos_idx)?;
        let n_distinct_users = users.dim(0)?.max(1) as f64;
        let tau = self.cfg.tau;
        let mut total = Tensor::zeros((), DType::F32, dev)?;
        for v in views {
            for rows in [&users, &items] {
                let plain = l2_normalize(&v.gnn.index_select(rows, 0)?)?;
                for other in [&v.int, &v.gaa, &v.iaa] {
                    let other = l2_normalize(&other.index_select(rows, 0)?)?;
                    total = (total + info_nce(&plain, &other, &other, tau)?)?;
                }
            }
        }
        total * (self.cfg.cl_weight / n_distinct_users)
    }
}

impl Backbone for Dccf {
    fn name(&self) -> &'static str {
        "dccf"
    }
    fn table(&self) -> &Var {
        &self.table
    }
    fn params(&self) -> Vec<(String, Var)> {
        vec![
            ("embedding".into(), self.table.clone()),
            ("user_intent".into(), self.user_intent.clone()),
            ("item_intent".into(), self.item_intent.clone()),
        ]
    }
    fn encode(&self, ego: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let (out, views) = self.forward(ego)?;
        // an evaluation-mode encode drops a stash no step took, so the views of a
        // training encode are never held past the next encode
        *self.last_views.lock().unwrap() =
            (matches!(mode, Mode::Train(_)) && self.cfg.cl_weight > 0.0).then_some(views);
        Ok(out)
    }
    fn aux_losses(
        &self,
        ego: &Tensor,
        _nodes: &Tensor,
        batch: &Batch,
        _rng: &mut Rng,
    ) -> Result<Vec<LossTerm>> {
        if self.cfg.cl_weight == 0.0 {
            return Ok(Vec::new());
        }
        let views = match self.last_views.lock().unwrap().take() {
            Some(v) => v,
            None => self.forward(ego)?.1,
        };
        Ok(vec![LossTerm::new("cl", self.contrast(&views, batch)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_gradient_matches_finite_differences, tiny_graph};
    use super::*;
    use candle_core::Device;

    fn tiny(rng: &mut Rng) -> Dccf {
        let cfg = ModelConfig {
            backbone: "dccf".into(),
            dim: 4,
            layers: 2,
            // weight 1 so that the gradient test sees the term at full size
            dccf: DccfConfig {
                intents: 5,
                cl_weight: 1.0,
                tau: 0.5,
            },
            ..ModelConfig::default()
        };
        let ctx = BuildContext {
            n_users: 3,
            n_items: 4,
            graph: tiny_graph(),
            device: &Device::Cpu,
            rng,
        };
        Dccf::new(&cfg, ctx).unwrap()
    }

    /// The adaptive message equals the hand-written row-normalised cosine weights.
    #[test]
    fn adaptive_message_by_hand() {
        let mut rng = Rng::new(3);
        let m = tiny(&mut rng);
        let x: Vec<Vec<f32>> = (0..7)
            .map(|_| (0..4).map(|_| rng.f32() - 0.5).collect())
            .collect();
        let e: Vec<Vec<f32>> = (0..7)
            .map(|_| (0..4).map(|_| rng.f32() - 0.5).collect())
            .collect();
        let t = |v: &Vec<Vec<f32>>| Tensor::new(v.clone(), &Device::Cpu).unwrap();
        let got: Vec<Vec<f32>> = adaptive_message(&t(&x), &t(&e), &m.edges)
            .unwrap()
            .to_vec2()
            .unwrap();
        let cos = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            dot / (na * nb)
        };
        for h in 0..7 {
            let nbrs = &m.full.indices[m.full.indptr[h]..m.full.indptr[h + 1]];
            let w: Vec<f32> = nbrs
                .iter()
                .map(|&t| (cos(&x[h], &x[t as usize]) + 1.0) / 2.0)
                .collect();
            let s: f32 = w.iter().sum();
            for j in 0..4 {
                let want: f32 = nbrs
                    .iter()
                    .zip(&w)
                    .map(|(&t, wt)| wt / s * e[t as usize][j])
                    .sum();
                assert!(
                    (got[h][j] - want).abs() < 1e-5,
                    "node {h}: {} vs {want}",
                    got[h][j]
                );
            }
        }
    }

    /// The contrastive term's gradient with respect to the node table matches central
    /// finite differences (through softmax intents and learned edge weights).
    #[test]
    fn contrastive_gradient_matches_finite_differences() {
        let mut rng = Rng::new(5);
        let m = tiny(&mut rng);
        let batch = Batch::new(&[(0, 1, 2), (1, 2, 3), (0, 0, 3)], 3, &Device::Cpu).unwrap();
        let loss = |ego: &Tensor| -> Tensor {
            let (_, views) = m.forward(ego).unwrap();
            m.contrast(&views, &batch).unwrap()
        };
        assert_gradient_matches_finite_differences(m.table.as_tensor(), loss);
    }
}
