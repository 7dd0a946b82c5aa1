//! Multi-layer graph propagation as one candle custom op with a hand-written backward.
//!
//! Forward: `E_0 = X`, `E_l = A E_{l-1}` for `l = 1..L`, then combine the layers:
//! `Sum` (LightGCN, He et al. 2020 eq. 4 as RLMRec implements it: the sum of layers
//! 0..L), `Mean`, `Last`, or `Concat` (GCCF: `[E_0 | E_1 | ... | E_L]`).
//! Backward: with `A` symmetric, `dX = sum_l A^l G_l` where `G_l` is the gradient that
//! reaches layer `l`; computed by Horner's rule `g = G_L; g = A g + G_l` for `l = L-1..0`,
//! i.e. the same sparse product again. The op is exact only for symmetric `A`, which
//! [`crate::data::graph`] guarantees (also under edge dropout).

use crate::data::graph::Csr;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How the per-layer embeddings become the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    Sum,
    Mean,
    Last,
    Concat,
}

/// `propagate(x, adj, layers, combine)`: differentiable w.r.t. `x` ([N, d], f32).
pub fn propagate(x: &Tensor, adj: Arc<Csr>, layers: usize, combine: Combine) -> Result<Tensor> {
    let x = x.contiguous()?;
    x.apply_op1(Propagate {
        adj,
        layers,
        combine,
    })
}

struct Propagate {
    adj: Arc<Csr>,
    layers: usize,
    combine: Combine,
}

/// Weight of layer `l` in the output for the additive combinations.
fn layer_weight(combine: Combine, l: usize, layers: usize) -> f32 {
    match combine {
        Combine::Sum | Combine::Concat => 1.0,
        Combine::Mean => 1.0 / (layers as f32 + 1.0),
        Combine::Last => {
            if l == layers {
                1.0
            } else {
                0.0
            }
        }
    }
}

impl Propagate {
    fn dims(&self, l: &Layout) -> Result<(usize, usize)> {
        let (n, d) = l.shape().dims2()?;
        if n != self.adj.n {
            candle_core::bail!("propagate: {n} rows but the graph has {} nodes", self.adj.n);
        }
        Ok((n, d))
    }
}

impl CustomOp1 for Propagate {
    fn name(&self) -> &'static str {
        "propagate"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, d) = self.dims(l)?;
        let x = super::cpu_slice(s, l, "propagate")?;
        let big_l = self.layers;
        if self.combine == Combine::Concat {
            let w = d * (big_l + 1);
            let mut out = vec![0f32; n * w];
            let mut cur = x.to_vec();
            let mut next = vec![0f32; n * d];
            for layer in 0..=big_l {
                if layer > 0 {
                    self.adj.spmm(&cur, d, &mut next);
                    std::mem::swap(&mut cur, &mut next);
                }
                for r in 0..n {
                    out[r * w + layer * d..r * w + (layer + 1) * d]
                        .copy_from_slice(&cur[r * d..(r + 1) * d]);
                }
            }
            return Ok((CpuStorage::F32(out), Shape::from((n, w))));
        }
        // each product adds its weighted layer into `out` while the row is in registers
        let w0 = layer_weight(self.combine, 0, big_l);
        let mut out: Vec<f32> = x.iter().map(|v| v * w0).collect();
        let mut cur = vec![0f32; if big_l > 0 { n * d } else { 0 }];
        let mut next = vec![0f32; if big_l > 1 { n * d } else { 0 }];
        for layer in 1..=big_l {
            let w = layer_weight(self.combine, layer, big_l);
            let total = (w != 0.0).then_some((w, &mut out[..]));
            if layer == 1 {
                self.adj.spmm_fused(x, d, &mut cur, None, total);
            } else {
                self.adj.spmm_fused(&cur, d, &mut next, None, total);
                std::mem::swap(&mut cur, &mut next);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, d))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        let d = arg.dim(1)?;
        let adj = PropagateAdjoint {
            adj: self.adj.clone(),
            layers: self.layers,
            combine: self.combine,
            d,
        };
        Ok(Some(g.apply_op1_no_bwd(&adj)?))
    }
}

/// The adjoint of [`Propagate`] (first-order only).
struct PropagateAdjoint {
    adj: Arc<Csr>,
    layers: usize,
    combine: Combine,
    d: usize,
}

impl CustomOp1 for PropagateAdjoint {
    fn name(&self) -> &'static str {
        "propagate-adjoint"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, w) = l.shape().dims2()?;
        let g = super::cpu_slice(s, l, "propagate")?;
        let d = self.d;
        let big_l = self.layers;
        // G_l: gradient reaching layer l.
        let grad_of_layer = |layer: usize, buf: &mut Vec<f32>| {
            if self.combine == Combine::Concat {
                for r in 0..n {
                    buf[r * d..(r + 1) * d]
                        .copy_from_slice(&g[r * w + layer * d..r * w + (layer + 1) * d]);
                }
            } else {
                let wt = layer_weight(self.combine, layer, big_l);
                for (b, v) in buf.iter_mut().zip(g) {
                    *b = wt * v;
                }
            }
        };
        let mut acc = vec![0f32; n * d];
        grad_of_layer(big_l, &mut acc);
        let mut tmp = vec![0f32; n * d];
        if self.combine == Combine::Concat {
            let mut gl = vec![0f32; n * d];
            for layer in (0..big_l).rev() {
                grad_of_layer(layer, &mut gl);
                self.adj
                    .spmm_fused(&acc, d, &mut tmp, Some((1.0, &gl)), None);
                std::mem::swap(&mut acc, &mut tmp);
            }
        } else {
            // acc <- A acc + w_layer g in one pass per layer
            for layer in (0..big_l).rev() {
                let w = layer_weight(self.combine, layer, big_l);
                let add = (w != 0.0).then_some((w, g));
                self.adj.spmm_fused(&acc, d, &mut tmp, add, None);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        Ok((CpuStorage::F32(acc), Shape::from((n, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::graph::BipartiteGraph;
    use crate::data::UserItems;
    use candle_core::{Device, Var};

    fn graph() -> Arc<Csr> {
        let ui = UserItems::from_pairs(3, &[(0, 0), (0, 1), (1, 1), (2, 2), (2, 0)]);
        Arc::new(BipartiteGraph::from_train(3, 3, &ui).normalized(false))
    }

    /// Reference: dense products with plain candle ops.
    fn dense_reference(x: &Tensor, adj: &Csr, layers: usize, combine: Combine) -> Tensor {
        let a = Tensor::from_vec(adj.to_dense(), (adj.n, adj.n), x.device()).unwrap();
        let mut outs = vec![x.clone()];
        for _ in 0..layers {
            let next = a.matmul(outs.last().unwrap()).unwrap();
            outs.push(next);
        }
        match combine {
            Combine::Concat => Tensor::cat(&outs, 1).unwrap(),
            Combine::Last => outs.last().unwrap().clone(),
            Combine::Sum => Tensor::stack(&outs, 0).unwrap().sum(0).unwrap(),
            Combine::Mean => Tensor::stack(&outs, 0).unwrap().mean(0).unwrap(),
        }
    }

    #[test]
    fn forward_and_backward_match_dense_autograd() {
        let adj = graph();
        let dev = Device::Cpu;
        for combine in [Combine::Sum, Combine::Mean, Combine::Last, Combine::Concat] {
            for layers in [0, 1, 3] {
                let x0: Vec<f32> = (0..6 * 4)
                    .map(|i| ((i * 31 % 17) as f32 - 8.0) / 7.0)
                    .collect();
                let x = Var::from_vec(x0, (6, 4), &dev).unwrap();
                let y = propagate(x.as_tensor(), adj.clone(), layers, combine).unwrap();
                let yr = dense_reference(x.as_tensor(), &adj, layers, combine);
                let diff = crate::ops::max_abs_diff(&y, &yr);
                assert!(diff < 1e-5, "{combine:?} L={layers} forward diff {diff}");
                // a non-trivial scalar loss: sum(w * y) with a fixed weight pattern
                let wv: Vec<f32> = (0..y.elem_count())
                    .map(|i| (i as f32 * 0.7).cos())
                    .collect();
                let w = Tensor::from_vec(wv, y.shape(), &dev).unwrap();
                let g1 = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (&yr * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let a = g1.get(x.as_tensor()).unwrap();
                let b = g2.get(x.as_tensor()).unwrap();
                let diff = crate::ops::max_abs_diff(a, b);
                assert!(diff < 1e-5, "{combine:?} L={layers} backward diff {diff}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let adj = graph();
        let dev = Device::Cpu;
        let x0: Vec<f32> = (0..6 * 2).map(|i| (i as f32 * 0.91).sin()).collect();
        // loss = sum(propagate(x)^2), a non-linear function of x
        let loss_of = |v: &[f32]| -> f64 {
            let x = Tensor::from_vec(v.to_vec(), (6, 2), &dev).unwrap();
            let y = propagate(&x, adj.clone(), 2, Combine::Sum).unwrap();
            y.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let x = Var::from_vec(x0.clone(), (6, 2), &dev).unwrap();
        let y = propagate(x.as_tensor(), adj.clone(), 2, Combine::Sum).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let grad: Vec<f32> = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let h = 1e-2f32;
        for k in 0..x0.len() {
            let mut p = x0.clone();
            p[k] += h;
            let mut m = x0.clone();
            m[k] -= h;
            let fd = (loss_of(&p) - loss_of(&m)) / (2.0 * h as f64);
            assert!(
                (fd - grad[k] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                "k={k} fd={fd} grad={}",
                grad[k]
            );
        }
    }
}
