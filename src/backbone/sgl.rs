//! SGL (Wu et al., SIGIR 2021, "Self-supervised Graph Learning for Recommendation"), the
//! edge-dropout variant as RLMRec runs it: LightGCN without dropout for BPR; two views on
//! graphs with independently dropped edges (`keep_rate`, undirected edges as LightGCN's
//! dropout, no rescaling), each the sum of layers 0..L; InfoNCE (cosine, `tau`) between
//! the views for the batch's users (candidates: all users of view 2), positive and
//! negative items (all items of view 2), `/ B * cl_weight` (see `views.rs`).

use super::views::{Rows, TwoViews};
use super::ModelConfig;
use super::{xavier_node_table, Backbone, BuildContext, Mode};
use crate::data::graph::{BipartiteGraph, Csr};
use crate::ops::{propagate, Combine};
use crate::rng::Rng;
use crate::step::{Batch, LossTerm};
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// SGL's own settings (`[model.sgl]`; RLMRec's amazon values).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SglConfig {
    pub cl_weight: f64,
    pub tau: f64,
}

impl Default for SglConfig {
    fn default() -> Self {
        Self {
            cl_weight: 0.1,
            tau: 0.2,
        }
    }
}

impl SglConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.cl_weight >= 0.0) {
            anyhow::bail!("model.sgl.cl_weight must be >= 0, got {}", self.cl_weight);
        }
        if !(self.tau > 0.0) {
            anyhow::bail!("model.sgl.tau must be positive, got {}", self.tau);
        }
        Ok(())
    }
}

pub struct Sgl {
    table: Var,
    graph: Arc<BipartiteGraph>,
    full: Arc<Csr>,
    layers: usize,
    keep_rate: f32,
    n_users: usize,
    cfg: SglConfig,
}

impl Sgl {
    pub fn new(cfg: &ModelConfig, ctx: BuildContext) -> Result<Self> {
        let table = xavier_node_table(ctx.n_users, ctx.n_items, cfg.dim, ctx.device, ctx.rng)?;
        let full = Arc::new(ctx.graph.normalized(false));
        Ok(Self {
            table,
            graph: ctx.graph,
            full,
            layers: cfg.layers,
            keep_rate: cfg.keep_rate,
            n_users: ctx.n_users,
            cfg: cfg.sgl.clone(),
        })
    }

    fn dropped_view(&self, ego: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let adj = Arc::new(self.graph.drop_edges(&self.full, self.keep_rate, rng));
        propagate(ego, adj, self.layers, Combine::Sum)
    }
}

impl Backbone for Sgl {
    fn name(&self) -> &'static str {
        "sgl"
    }
    fn table(&self) -> &Var {
        &self.table
    }
    /// The clean view: LightGCN on the full graph (BPR, and inference).
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
            rows: &[Rows::Users, Rows::PosItems, Rows::NegItems],
            tau: self.cfg.tau,
            cl_weight: self.cfg.cl_weight,
        };
        views.term(batch, rng, |rng| self.dropped_view(ego, rng))
    }
}
