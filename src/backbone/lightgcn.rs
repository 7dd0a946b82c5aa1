//! LightGCN (He et al., SIGIR 2020): `E_{l+1} = A E_l` with `A = D^-1/2 A D^-1/2` of the
//! training graph, final embedding = sum of layers 0..L (as RLMRec implements it, SPEC.md
//! section 2), edge dropout with keep rate 0.8 during training only.

use super::ModelConfig;
use super::{xavier_node_table, Backbone, BuildContext, Mode};
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
    fn table(&self) -> &Var {
        &self.table
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

    /// A new user `u` joins the trained graph with edges to `items` and no layer-0
    /// embedding of its own (nothing was learnt for it): with the trained normalisation,
    /// `e_u^(l) = sum_{i in items} e_i^(l-1) / sqrt(|items| d_i)`, and `e_u` sums layers
    /// 1..L. The item layers `e_i^(0..L-1)` of the trained graph are computed once here.
    fn fold_in(&self, ego: &Tensor) -> Result<Option<Box<dyn super::FoldIn>>> {
        let (n, d) = ego.dims2()?;
        let (nu, ni) = (self.graph.n_users, self.graph.n_items);
        let mut layer: Vec<f32> = ego.flatten_all()?.to_vec1()?;
        let mut item_layers = Vec::with_capacity(self.layers);
        for l in 0..self.layers {
            item_layers.push(layer[nu * d..].to_vec());
            if l + 1 < self.layers {
                let mut next = vec![0f32; n * d];
                self.full.spmm(&layer, d, &mut next);
                layer = next;
            }
        }
        let inv_sqrt_degree = (0..ni)
            .map(|i| match self.graph.degree(nu + i) {
                0 => 0.0,
                k => 1.0 / (k as f32).sqrt(),
            })
            .collect();
        Ok(Some(Box::new(LightGcnFoldIn {
            item_layers,
            inv_sqrt_degree,
            dim: d,
        })))
    }
}

/// LightGCN's fold-in: item layers 0..L-1 and `1 / sqrt(d_i)` of the trained graph.
struct LightGcnFoldIn {
    item_layers: Vec<Vec<f32>>,
    inv_sqrt_degree: Vec<f32>,
    dim: usize,
}

impl super::FoldIn for LightGcnFoldIn {
    fn user(&self, items: &[u32]) -> Vec<f32> {
        let d = self.dim;
        let mut out = vec![0f32; d];
        if items.is_empty() {
            return out;
        }
        let norm_u = 1.0 / (items.len() as f32).sqrt();
        for layer in &self.item_layers {
            for &i in items {
                let w = norm_u * self.inv_sqrt_degree[i as usize];
                let row = &layer[i as usize * d..(i as usize + 1) * d];
                out.iter_mut().zip(row).for_each(|(o, x)| *o += w * x);
            }
        }
        out
    }
}
