//! DCCF's adaptive-edge message (Ren et al., SIGIR 2023, section 3.2; SPEC.md section 2)
//! as one candle op with a hand-written backward:
//! `y_h = sum_{t in N(h)} w_ht e_t`, `w_ht = a_ht / S_h`, `a_ht = (cos(x_h, x_t) + 1) / 2`,
//! `S_h = sum_t a_ht`, with `cos` taken on rows scaled by `1 / sqrt(1e-8 + |x|^2)` (as
//! [`super::rowwise::l2_normalize`]) and `S_h` clamped at `1e-12` (a row whose weights
//! are all zero gets no message). Both `x` and `e` receive gradients.
//!
//! Built from plain candle ops ([`adaptive_message_reference`]) the message gathered the
//! normalised rows of both ends of every edge, multiplied, summed, scattered the row sums
//! back, gathered `e` per edge and scattered the products: six edge-sized tensors, each
//! with its own backward, and single-threaded scatters. A profile of a DCCF step on amazon
//! put most of the step outside the contrastive term in them. Here each pass walks the
//! rows in parallel; the backward reaches the tail side of each edge through the index of
//! its reverse entry, which a symmetric graph (the bipartite graph is) always has.

use super::fastmath::{axpy, lane_dot as dot, vectorized};
use crate::data::graph::Csr;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::Arc;

/// The structure the op walks: the graph's entries and, for each entry `(h, t)`, the
/// position of its reverse entry `(t, h)`. Built once per graph.
pub struct EdgeIndex {
    csr: Arc<Csr>,
    reverse: Vec<usize>,
    /// Head and tail node of every entry (for the reference and non-CPU devices).
    heads: Vec<u32>,
}

impl EdgeIndex {
    /// Fails when some entry has no reverse entry (the graph is not symmetric).
    pub fn new(csr: Arc<Csr>) -> Result<Self> {
        let n = csr.n;
        // each row's entries sorted by column, to find `(t, h)` by binary search
        let sorted: Vec<Vec<(u32, usize)>> = (0..n)
            .into_par_iter()
            .map(|r| {
                let mut v: Vec<(u32, usize)> = (csr.indptr[r]..csr.indptr[r + 1])
                    .map(|k| (csr.indices[k], k))
                    .collect();
                v.sort_unstable();
                v
            })
            .collect();
        let heads = csr.entry_rows();
        let reverse = heads
            .par_iter()
            .zip(csr.indices.par_iter())
            .map(|(&h, &t)| {
                let row = &sorted[t as usize];
                row.binary_search_by_key(&h, |p| p.0)
                    .map(|i| row[i].1)
                    .map_err(|_| {
                        candle_core::Error::Msg(format!(
                            "adaptive message: entry ({h}, {t}) has no reverse entry; the graph must be symmetric"
                        ))
                    })
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(Self {
            csr,
            reverse,
            heads,
        })
    }
}

/// `A_x e` (see the module header): `x` and `e` are `[n, d]` f32 with `n` the graph's nodes.
pub fn adaptive_message(x: &Tensor, e: &Tensor, index: &Arc<EdgeIndex>) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return adaptive_message_reference(x, e, index);
    }
    x.contiguous()?.apply_op2(
        &e.contiguous()?,
        AdaptiveMessage {
            index: index.clone(),
        },
    )
}

/// The same message from plain candle ops (reference and non-CPU devices).
pub fn adaptive_message_reference(x: &Tensor, e: &Tensor, index: &EdgeIndex) -> Result<Tensor> {
    let (n, d) = e.dims2()?;
    let dev = e.device();
    let m = index.heads.len();
    let heads = Tensor::from_slice(&index.heads, m, dev)?;
    let tails = Tensor::from_slice(&index.csr.indices, m, dev)?;
    let xn = super::rowwise::l2_normalize(x)?;
    let alpha = ((xn.index_select(&heads, 0)? * xn.index_select(&tails, 0)?)?.sum(D::Minus1)?
        + 1.0)?
        .affine(0.5, 0.0)?;
    let row_sum = Tensor::zeros(n, DType::F32, dev)?.index_add(&heads, &alpha, 0)?;
    let weight = (&alpha / row_sum.maximum(MIN_ROW_SUM)?.index_select(&heads, 0)?)?;
    let msg = e
        .index_select(&tails, 0)?
        .broadcast_mul(&weight.unsqueeze(1)?)?;
    Tensor::zeros((n, d), DType::F32, dev)?.index_add(&heads, &msg, 0)
}

/// Row sums below this are clamped (RLMRec turns the resulting infinities into zeros).
const MIN_ROW_SUM: f64 = 1e-12;
/// `eps` of the row normalisation, as `l2_normalize`.
const NORM_EPS: f32 = 1e-8;
/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

struct AdaptiveMessage {
    index: Arc<EdgeIndex>,
}

/// Rows scaled to unit norm, and each row's `sqrt(eps + |x|^2)`.
fn normalise(x: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut xn = x.to_vec();
    let mut norms = vec![0f32; x.len() / d.max(1)];
    xn.par_chunks_mut(ROWS_PER_TASK * d.max(1))
        .zip(norms.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|(rows, ns)| {
            vectorized(
                #[inline(always)]
                || {
                    for (r, s) in rows.chunks_exact_mut(d.max(1)).zip(ns.iter_mut()) {
                        *s = (NORM_EPS + dot(r, r)).sqrt();
                        let inv = 1.0 / *s;
                        r.iter_mut().for_each(|v| *v *= inv);
                    }
                },
            )
        });
    (xn, norms)
}

/// `(a_ht)` for the entries of row `h` into `out`, and their sum.
#[inline(always)]
fn row_weights(csr: &Csr, xn: &[f32], d: usize, h: usize, out: &mut Vec<f32>) -> f32 {
    out.clear();
    let xh = &xn[h * d..(h + 1) * d];
    let mut sum = 0f32;
    for k in csr.indptr[h]..csr.indptr[h + 1] {
        let t = csr.indices[k] as usize;
        let a = 0.5 * (dot(xh, &xn[t * d..(t + 1) * d]) + 1.0);
        out.push(a);
        sum += a;
    }
    sum
}

impl AdaptiveMessage {
    fn dims(&self, x: &Layout, e: &Layout) -> Result<(usize, usize)> {
        let (n, d) = e.shape().dims2()?;
        if x.shape().dims2()? != (n, d) || n != self.index.csr.n {
            candle_core::bail!(
                "adaptive message: x {:?} and e {:?} must both be [{}, d]",
                x.shape(),
                e.shape(),
                self.index.csr.n
            );
        }
        Ok((n, d))
    }
}

impl CustomOp2 for AdaptiveMessage {
    fn name(&self) -> &'static str {
        "adaptive-message"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        es: &CpuStorage,
        el: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = self.dims(xl, el)?;
        let x = super::cpu_slice(xs, xl, "adaptive message")?;
        let e = super::cpu_slice(es, el, "adaptive message")?;
        let csr = &*self.index.csr;
        let (xn, _) = normalise(x, d);
        let mut y = vec![0f32; n * d];
        y.par_chunks_mut(ROWS_PER_TASK * d.max(1))
            .enumerate()
            .for_each(|(task, ys)| {
                vectorized(
                    #[inline(always)]
                    || {
                        let mut a = Vec::new();
                        for (i, yh) in ys.chunks_exact_mut(d.max(1)).enumerate() {
                            let h = task * ROWS_PER_TASK + i;
                            let sum = row_weights(csr, &xn, d, h, &mut a);
                            let inv = 1.0 / sum.max(MIN_ROW_SUM as f32);
                            for (k, w) in (csr.indptr[h]..csr.indptr[h + 1]).zip(&a) {
                                let t = csr.indices[k] as usize;
                                axpy(yh, w * inv, &e[t * d..(t + 1) * d]);
                            }
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(y), Shape::from((n, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        e: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = e.dims2()?;
        let csr = &*self.index.csr;
        let rev = &self.index.reverse;
        let g = grad_res.contiguous()?;
        let (dx, de) = super::with_host_slice(x, |x| {
            super::with_host_slice(e, |e| {
                super::with_host_slice(res, |y| {
                    super::with_host_slice(&g, |g| backward(csr, rev, x, e, y, g, d))
                })
            })
        })????;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (n, d), dev)?),
            Some(Tensor::from_vec(de, (n, d), dev)?),
        ))
    }
}

/// Gradients of `x` and `e` given the output `y` and its gradient `g`.
fn backward(
    csr: &Csr,
    rev: &[usize],
    x: &[f32],
    e: &[f32],
    y: &[f32],
    g: &[f32],
    d: usize,
) -> (Vec<f32>, Vec<f32>) {
    let m = csr.indices.len();
    let (xn, norms) = normalise(x, d);
    // per entry (h, t): its weight w_ht, and the gradient reaching cos(x_h, x_t)
    let mut w = vec![0f32; m];
    let mut dcos = vec![0f32; m];
    super::split_row_tasks(&csr.indptr, ROWS_PER_TASK, 1, &mut w)
        .into_par_iter()
        .zip(super::split_row_tasks(
            &csr.indptr,
            ROWS_PER_TASK,
            1,
            &mut dcos,
        ))
        .enumerate()
        .for_each(|(task, (wt, ct))| {
            vectorized(
                #[inline(always)]
                || {
                    let mut a = Vec::new();
                    let first = task * ROWS_PER_TASK;
                    let base = csr.indptr[first];
                    for h in first..(first + ROWS_PER_TASK).min(csr.n) {
                        let sum = row_weights(csr, &xn, d, h, &mut a);
                        let inv = 1.0 / sum.max(MIN_ROW_SUM as f32);
                        let gh = &g[h * d..(h + 1) * d];
                        // d(1/S)/dS = -1/S^2 unless S is clamped
                        let gy = if sum < MIN_ROW_SUM as f32 {
                            0.0
                        } else {
                            dot(gh, &y[h * d..(h + 1) * d])
                        };
                        for (j, k) in (csr.indptr[h]..csr.indptr[h + 1]).enumerate() {
                            let t = csr.indices[k] as usize;
                            wt[k - base] = a[j] * inv;
                            ct[k - base] = 0.5 * (dot(gh, &e[t * d..(t + 1) * d]) - gy) * inv;
                        }
                    }
                },
            )
        });
    let mut dx = vec![0f32; csr.n * d];
    let mut de = vec![0f32; csr.n * d];
    dx.par_chunks_mut(ROWS_PER_TASK * d.max(1))
        .zip(de.par_chunks_mut(ROWS_PER_TASK * d.max(1)))
        .enumerate()
        .for_each(|(task, (dxs, des))| {
            vectorized(
                #[inline(always)]
                || {
                    let mut dxn = vec![0f32; d];
                    let rows = dxs
                        .chunks_exact_mut(d.max(1))
                        .zip(des.chunks_exact_mut(d.max(1)));
                    for (i, (dxr, der)) in rows.enumerate() {
                        let r = task * ROWS_PER_TASK + i;
                        // e_r feeds row t's message through the reverse entry (t, r); x_r's
                        // normalised row enters cos on both entries (r, t) and (t, r)
                        dxn.iter_mut().for_each(|v| *v = 0.0);
                        for k in csr.indptr[r]..csr.indptr[r + 1] {
                            let t = csr.indices[k] as usize;
                            let back = rev[k];
                            axpy(der, w[back], &g[t * d..(t + 1) * d]);
                            axpy(&mut dxn, dcos[k] + dcos[back], &xn[t * d..(t + 1) * d]);
                        }
                        // through x / sqrt(eps + |x|^2): (dxn - xn (xn . dxn)) / s
                        let xr = &xn[r * d..(r + 1) * d];
                        let proj = dot(xr, &dxn);
                        let inv = 1.0 / norms[r];
                        for ((o, dv), xv) in dxr.iter_mut().zip(&dxn).zip(xr) {
                            *o = (dv - xv * proj) * inv;
                        }
                    }
                },
            )
        });
    (dx, de)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_same_gradients, var};
    use candle_core::Device;

    /// A symmetric graph on 7 nodes with an isolated node (no message, no gradient) and
    /// uneven degrees.
    fn graph() -> Arc<EdgeIndex> {
        let edges = [(0, 4), (0, 5), (1, 4), (2, 5), (2, 6), (0, 6), (1, 6)];
        let n = 7;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
        for &(a, b) in &edges {
            rows[a].push(b as u32);
            rows[b].push(a as u32);
        }
        // node 3 stays isolated; the entries of a row are in no particular order
        rows[6].reverse();
        let mut csr = Csr {
            n,
            indptr: vec![0],
            ..Default::default()
        };
        for r in rows {
            csr.values.extend(r.iter().map(|_| 1.0));
            csr.indices.extend(r);
            csr.indptr.push(csr.indices.len());
        }
        Arc::new(EdgeIndex::new(Arc::new(csr)).unwrap())
    }

    /// Value and both inputs' gradients agree with the plain-candle form, under a weighted
    /// sum of the output so that every output entry gets its own gradient.
    #[test]
    fn fused_message_matches_the_plain_candle_form() {
        let idx = graph();
        let (x, e, probe) = (var(7, 5, 1, 1.0), var(7, 5, 2, 1.0), var(7, 5, 3, 1.0));
        let fused = adaptive_message(x.as_tensor(), e.as_tensor(), &idx).unwrap();
        let plain = adaptive_message_reference(x.as_tensor(), e.as_tensor(), &idx).unwrap();
        assert!(crate::ops::max_abs_diff(&fused, &plain) < 1e-5);
        let loss = |y: &Tensor| (y * probe.as_tensor()).unwrap().sum_all().unwrap();
        let gf = loss(&fused).backward().unwrap();
        let gp = loss(&plain).backward().unwrap();
        assert_same_gradients(&gf, &gp, &[&x, &e], 1e-5);
        // the isolated node gets nothing and passes nothing back
        let row3 = |t: &Tensor| t.get(3).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(row3(&fused).to_scalar::<f32>().unwrap(), 0.0);
        assert_eq!(
            row3(gf.get(e.as_tensor()).unwrap())
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }

    /// By hand on a path 0 - 1 - 2: node 1's weights follow the cosines of its ends.
    #[test]
    fn weights_follow_the_cosines_by_hand() {
        let csr = Csr {
            n: 3,
            indptr: vec![0, 1, 3, 4],
            indices: vec![1, 0, 2, 1],
            values: vec![1.0; 4],
        };
        let idx = Arc::new(EdgeIndex::new(Arc::new(csr)).unwrap());
        let dev = Device::Cpu;
        // x_1 = (1, 0); x_0 along it (cos 1), x_2 orthogonal (cos 0)
        let x = Tensor::new(&[[2f32, 0.], [1., 0.], [0., 3.]], &dev).unwrap();
        let e = Tensor::new(&[[1f32, 0.], [0., 1.], [4., 4.]], &dev).unwrap();
        let y = adaptive_message(&x, &e, &idx)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // node 1: a = (1, 0.5), w = (2/3, 1/3): 2/3 (1, 0) + 1/3 (4, 4) = (2, 4/3)
        assert!((y[1][0] - 2.0).abs() < 1e-5 && (y[1][1] - 4.0 / 3.0).abs() < 1e-5);
        // nodes 0 and 2 have one neighbour each: weight 1
        assert_eq!(y[0], vec![0.0, 1.0]);
        assert_eq!(y[2], vec![0.0, 1.0]);
    }

    #[test]
    fn an_asymmetric_graph_is_refused() {
        let csr = Csr {
            n: 2,
            indptr: vec![0, 1, 1],
            indices: vec![1],
            values: vec![1.0],
        };
        let err = EdgeIndex::new(Arc::new(csr)).err().unwrap().to_string();
        assert!(err.contains("no reverse entry"), "{err}");
    }
}
