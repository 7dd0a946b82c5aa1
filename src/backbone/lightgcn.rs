//! LightGCN (He et al., SIGIR 2020): `E_{l+1} = A E_l` with `A = D^-1/2 A D^-1/2` of the
//! training graph, final embedding = sum of layers 0..L (as RLMRec implements it, SPEC.md
//! section 2), edge dropout with keep rate 0.8 during training only.

use super::{xavier_node_table, Backbone, BuildContext, Mode};
use crate::config::ModelConfig;
use crate::data::graph::{BipartiteGraph, Csr};
use crate::ops::{propagate, Combine};
use candle_core::{Result, Tensor, Var};
use std::sync::Arc;

pub struct LightGcn {
    table: Var,
    graph: Arc<BipartiteGraph>,
    full: Arc<Csr>,
    layers: usize,
    keep_rate: f32,
}

impl LightGcn {
    pub fn new(cfg: &ModelConfig, ctx: BuildContext) -> Result<Self> {
        let table = xavier_node_table(ctx.n_users, ctx.n_items, cfg.dim, ctx.device, ctx.rng)?;
        let full = Arc::new(ctx.graph.normalized(false));
        Ok(Self {
            table,
            graph: ctx.graph,
            full,
            layers: cfg.layers,
            keep_rate: cfg.keep_rate,
        })
    }
}

impl Backbone for LightGcn {
    fn name(&self) -> &'static str {
        "lightgcn"
    }
    fn params(&self) -> Vec<(String, Var)> {
        vec![("embedding".into(), self.table.clone())]
    }
    fn ego(&self) -> Result<Tensor> {
        Ok(self.table.as_tensor().clone())
    }
    fn ego_dim(&self) -> usize {
        self.table.dim(1).unwrap_or(0)
    }
    fn out_dim(&self) -> usize {
        self.ego_dim()
    }
    fn encode(&self, ego: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let adj = match mode {
            Mode::Train(rng) if self.keep_rate < 1.0 => {
                Arc::new(self.graph.drop_edges(&self.full, self.keep_rate, rng))
            }
            _ => self.full.clone(),
        };
        propagate(ego, adj, self.layers, Combine::Sum)
    }
}
