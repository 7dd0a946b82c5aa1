//! BPR loss as one fused candle op: `mean_b softplus(<u_b, n_b> - <u_b, p_b>)` over rows of
//! the final node embeddings (SPEC.md section 2), with a hand-written backward that
//! scatters straight into one `[N, d]` gradient. Replaces three `index_select`s and their
//! autograd (each backward materialising full `[N, d]` zero tensors), which profiling
//! showed to dominate a step (examples/profile_step.rs: ~12 ms of a ~25 ms step).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Triples per parallel task when computing margins.
const MARGIN_CHUNK: usize = 512;

/// BPR loss of triples given as node indices (items already offset by the user count).
pub fn bpr_loss(
    nodes: &Tensor,
    users: Arc<Vec<u32>>,
    pos: Arc<Vec<u32>>,
    neg: Arc<Vec<u32>>,
) -> Result<Tensor> {
    if !nodes.device().is_cpu() {
        return bpr_generic(nodes, &users, &pos, &neg);
    }
    nodes.contiguous()?.apply_op1(Bpr { users, pos, neg })
}

/// The same loss from plain candle ops (reference and non-CPU devices).
pub fn bpr_generic(nodes: &Tensor, users: &[u32], pos: &[u32], neg: &[u32]) -> Result<Tensor> {
    let dev = nodes.device();
    let idx = |v: &[u32]| Tensor::from_slice(v, v.len(), dev);
    let u = nodes.index_select(&idx(users)?, 0)?;
    let p = nodes.index_select(&idx(pos)?, 0)?;
    let n = nodes.index_select(&idx(neg)?, 0)?;
    let x = ((&u * &n)?.sum(1)? - (&u * &p)?.sum(1)?)?;
    (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?.mean_all()
}

struct Bpr {
    users: Arc<Vec<u32>>,
    pos: Arc<Vec<u32>>,
    neg: Arc<Vec<u32>>,
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Bpr {
    fn check(&self, l: &Layout) -> Result<(usize, usize)> {
        let (n, d) = l.shape().dims2()?;
        let bad = self
            .users
            .iter()
            .chain(self.pos.iter())
            .chain(self.neg.iter())
            .any(|&i| i as usize >= n);
        if bad
            || self.users.len() != self.pos.len()
            || self.users.len() != self.neg.len()
            || self.users.is_empty()
        {
            candle_core::bail!(
                "bpr: empty batch, mismatched lengths or index out of range ({n} nodes)"
            );
        }
        Ok((n, d))
    }
    fn margin(&self, x: &[f32], d: usize, b: usize) -> f32 {
        let row = |i: u32| &x[i as usize * d..(i as usize + 1) * d];
        let u = row(self.users[b]);
        dot(u, row(self.neg[b])) - dot(u, row(self.pos[b]))
    }
}

impl CustomOp1 for Bpr {
    fn name(&self) -> &'static str {
        "bpr"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, d) = self.check(l)?;
        let x = super::cpu_slice(s, l, "bpr")?;
        // chunk sums in parallel, added in chunk order: the same value whatever the split
        let total: f64 = (0..self.users.len())
            .collect::<Vec<_>>()
            .par_chunks(MARGIN_CHUNK)
            .map(|c| {
                c.iter()
                    .map(|&b| softplus(self.margin(x, d, b) as f64))
                    .sum::<f64>()
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        Ok((
            CpuStorage::F32(vec![(total / self.users.len() as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res
            .to_dtype(candle_core::DType::F32)?
            .to_vec0::<f32>()?;
        let (n, d) = arg.dims2()?;
        let grad = super::with_host_slice(arg, |x| {
            let scale = g / self.users.len() as f32;
            // d softplus(m) = sigmoid(m), per triple (in parallel)
            let coef: Vec<f32> = (0..self.users.len())
                .into_par_iter()
                .with_min_len(MARGIN_CHUNK)
                .map(|b| scale / (1.0 + (-self.margin(x, d, b)).exp()))
                .collect();
            let mut grad = vec![0f32; n * d];
            let row = |i: usize| &x[i * d..(i + 1) * d];
            let users_part = |gu: &mut [f32]| {
                for (b, &s) in coef.iter().enumerate() {
                    let u = self.users[b] as usize;
                    let (xp, xn) = (row(self.pos[b] as usize), row(self.neg[b] as usize));
                    for ((o, a), c) in gu[u * d..(u + 1) * d].iter_mut().zip(xn).zip(xp) {
                        *o += s * (a - c);
                    }
                }
            };
            // `gi` holds rows from `first` on
            let items_part = |gi: &mut [f32], first: usize| {
                for (b, &s) in coef.iter().enumerate() {
                    let xu = row(self.users[b] as usize);
                    let (p, q) = (self.pos[b] as usize - first, self.neg[b] as usize - first);
                    for (o, v) in gi[p * d..(p + 1) * d].iter_mut().zip(xu) {
                        *o -= s * v;
                    }
                    for (o, v) in gi[q * d..(q + 1) * d].iter_mut().zip(xu) {
                        *o += s * v;
                    }
                }
            };
            // When every user row lies below every item row (users are nodes 0..U, items
            // after them), one task scatters into each half. Each row still receives its
            // terms in triple order, as in one serial loop: the same bits.
            let split = self
                .users
                .iter()
                .map(|&u| u as usize + 1)
                .max()
                .unwrap_or(0);
            let first_item = self.pos.iter().chain(self.neg.iter()).min();
            if first_item.is_some_and(|&i| i as usize >= split) {
                let (gu, gi) = grad.split_at_mut(split * d);
                rayon::join(|| users_part(gu), || items_part(gi, split));
            } else {
                for (b, &s) in coef.iter().enumerate() {
                    let (u, p, q) = (
                        self.users[b] as usize,
                        self.pos[b] as usize,
                        self.neg[b] as usize,
                    );
                    for j in 0..d {
                        let (xu, xp, xn) = (x[u * d + j], x[p * d + j], x[q * d + j]);
                        grad[u * d + j] += s * (xn - xp);
                        grad[p * d + j] -= s * xu;
                        grad[q * d + j] += s * xu;
                    }
                }
            }
            grad
        })?;
        Ok(Some(Tensor::from_vec(grad, (n, d), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Users below items (the split scatter) and users mixed with items (the serial one).
    #[test]
    fn fused_matches_plain_candle_in_value_and_gradient() {
        // repeated indices on purpose: gradients must accumulate
        check_against_plain(
            vec![0, 3, 3, 7, 9],
            vec![12, 15, 20, 12, 29],
            vec![20, 12, 15, 25, 12],
        );
        check_against_plain(
            vec![14, 3, 3, 27, 9],
            vec![12, 15, 20, 12, 2],
            vec![20, 12, 15, 25, 12],
        );
    }

    fn check_against_plain(users: Vec<u32>, pos: Vec<u32>, neg: Vec<u32>) {
        let dev = Device::Cpu;
        let (n, d) = (30, 5);
        let data: Vec<f32> = (0..n * d)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 6.0)
            .collect();
        let x = Var::from_vec(data, (n, d), &dev).unwrap();
        let (users, pos, neg) = (Arc::new(users), Arc::new(pos), Arc::new(neg));
        let a = bpr_loss(x.as_tensor(), users.clone(), pos.clone(), neg.clone()).unwrap();
        let b = bpr_generic(x.as_tensor(), &users, &pos, &neg).unwrap();
        let (va, vb) = (a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
        assert!((va - vb).abs() < 1e-5, "{va} vs {vb}");
        let ga = a.backward().unwrap().get(x.as_tensor()).unwrap().clone();
        let gb = b.backward().unwrap().get(x.as_tensor()).unwrap().clone();
        let diff = crate::ops::max_abs_diff(&ga, &gb);
        assert!(diff < 1e-6, "gradient diff {diff}");
    }
}
