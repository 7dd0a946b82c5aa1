//! GCCF (Chen et al., AAAI 2020, "Revisiting Graph based Collaborative Filtering: A Linear
//! Residual Graph Convolutional Network Approach") as RLMRec runs it: linear propagation
//! `E_{l+1} = A E_l` on `A = D^-1/2 (A + I) D^-1/2` (self loops, counted in the degrees),
//! no layer weights (RLMRec's code keeps them out: "performs better without W") and no
//! edge dropout; the final embedding concatenates layers 0..L, so it is `(L + 1) d` wide
//! and every alignment takes that width (SPEC.md section 2).

use super::ModelConfig;
use super::{xavier_node_table, Backbone, BuildContext, Mode};
use crate::data::graph::Csr;
use crate::ops::{propagate, Combine};
use candle_core::{Result, Tensor, Var};
use std::sync::Arc;

pub struct Gccf {
    table: Var,
    adj: Arc<Csr>,
    layers: usize,
}

impl Gccf {
    pub fn new(cfg: &ModelConfig, ctx: BuildContext) -> Result<Self> {
        let table = xavier_node_table(ctx.n_users, ctx.n_items, cfg.dim, ctx.device, ctx.rng)?;
        Ok(Self {
            table,
            adj: Arc::new(ctx.graph.normalized(true)),
            layers: cfg.layers,
        })
    }
}

impl Backbone for Gccf {
    fn name(&self) -> &'static str {
        "gccf"
    }
    fn table(&self) -> &Var {
        &self.table
    }
    fn out_dim(&self) -> usize {
        self.ego_dim() * (self.layers + 1)
    }
    /// The same full graph in training and evaluation (GCCF has no dropout).
    fn encode(&self, ego: &Tensor, _mode: &mut Mode) -> Result<Tensor> {
        propagate(ego, self.adj.clone(), self.layers, Combine::Concat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::graph::BipartiteGraph;
    use crate::data::UserItems;
    use crate::rng::Rng;
    use candle_core::Device;

    /// Two users, two items, edges u0-i0, u0-i1, u1-i1: with self loops the degrees are
    /// 3, 2, 2, 3 (u0, u1, i0, i1), so u0's first layer is
    /// `x_u0/3 + x_i0/sqrt(6) + x_i1/3` and the output is `[E_0 | E_1]`.
    #[test]
    fn one_layer_by_hand() {
        let train = UserItems::from_pairs(2, &[(0, 0), (0, 1), (1, 1)]);
        let graph = Arc::new(BipartiteGraph::from_train(2, 2, &train));
        let cfg = ModelConfig {
            backbone: "gccf".into(),
            dim: 1,
            layers: 1,
            ..Default::default()
        };
        let mut rng = Rng::new(1);
        let g = Gccf::new(
            &cfg,
            BuildContext {
                n_users: 2,
                n_items: 2,
                graph,
                device: &Device::Cpu,
                rng: &mut rng,
            },
        )
        .unwrap();
        assert_eq!(g.out_dim(), 2);
        let x = Tensor::new(&[[1f32], [2.], [3.], [4.]], &Device::Cpu).unwrap();
        let out: Vec<Vec<f32>> = g.encode(&x, &mut Mode::Eval).unwrap().to_vec2().unwrap();
        let want_u0 = 1.0 / 3.0 + 3.0 / 6f32.sqrt() + 4.0 / 3.0;
        assert_eq!(out[0][0], 1.0);
        assert!((out[0][1] - want_u0).abs() < 1e-6, "{:?}", out[0]);
        // item 1 (node 3): x_u0/3 + x_u1/sqrt(6) + x_i1/3
        let want_i1 = 1.0 / 3.0 + 2.0 / 6f32.sqrt() + 4.0 / 3.0;
        assert!((out[3][1] - want_i1).abs() < 1e-6, "{:?}", out[3]);
    }
}
