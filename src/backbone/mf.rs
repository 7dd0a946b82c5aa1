//! Matrix factorisation with BPR (Rendle et al. 2009): final embeddings are the layer-0
//! table itself. The simplest backbone, and the no-graph reference for the others.

use super::ModelConfig;
use super::{xavier_node_table, Backbone, BuildContext, Mode};
use candle_core::{Result, Tensor, Var};

pub struct Mf {
    table: Var,
}

impl Mf {
    pub fn new(cfg: &ModelConfig, ctx: BuildContext) -> Result<Self> {
        Ok(Self {
            table: xavier_node_table(ctx.n_users, ctx.n_items, cfg.dim, ctx.device, ctx.rng)?,
        })
    }
}

impl Backbone for Mf {
    fn name(&self) -> &'static str {
        "mf"
    }
    fn table(&self) -> &Var {
        &self.table
    }
    fn encode(&self, ego: &Tensor, _mode: &mut Mode) -> Result<Tensor> {
        Ok(ego.clone())
    }
}
