//! Multi-head attention over the edges of a sparse graph as one candle op with a
//! hand-written backward: AutoCF's graph-transformer layer (Xia et al., WWW 2023, section
//! 3.3; RLMRec's `GTLayer`; SPEC.md section 2). For each directed edge `(r, c)` and head
//! `h`: `s = clamp(<q_r^h, k_c^h>, -10, 10)`, `a = exp(s)`, and
//! `out_r^h = sum_c a_rc^h / (sum_c a_rc^h + 1e-8) v_c^h`.
//!
//! From plain candle ops ([`edge_attention_reference`]) the layer gathered `q`, `k` and
//! `v` per edge (three edge-sized copies of `d` floats, a million edges on amazon's decoder
//! graph), scattered the normalisers back per row and the messages per row, each with its
//! own backward and fresh edge-sized buffers. Here the forward walks the rows in parallel
//! and keeps nothing per edge; the backward recomputes the scores, stores two floats per
//! edge and head, and reaches the key and value side through the edges sorted by column.

use super::fastmath::{axpy, lane_dot as dot, vectorized};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// Score clamp and normaliser offset (RLMRec's values).
const CLAMP: f32 = 10.0;
const NORM_EPS: f32 = 1e-8;
/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// Directed edges in row order, and the same edges by column.
pub struct EdgeList {
    n: usize,
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    /// The row of each edge.
    rows: Vec<u32>,
    col_ptr: Vec<usize>,
    /// Edge ids sorted by column.
    by_col: Vec<u32>,
    /// The edges as index tensors, made on the first call of the reference form (which
    /// non-CPU devices use); one edge list serves one device.
    index: OnceLock<(Tensor, Tensor)>,
}

impl EdgeList {
    /// Edges `(rows[j], cols[j])` on `n` nodes, in any order (they are sorted here).
    pub fn new(n: usize, rows: &[u32], cols: &[u32]) -> Result<Self> {
        if rows.len() != cols.len() || rows.iter().chain(cols).any(|&v| v as usize >= n) {
            candle_core::bail!("edge attention: edges must be pairs of nodes below {n}");
        }
        let mut pairs: Vec<(u32, u32)> = rows.iter().copied().zip(cols.iter().copied()).collect();
        pairs.sort_unstable();
        let (rows, cols): (Vec<u32>, Vec<u32>) = pairs.into_iter().unzip();
        let ptr = |keys: &[u32]| {
            let mut p = vec![0usize; n + 1];
            keys.iter().for_each(|&k| p[k as usize + 1] += 1);
            (0..n).for_each(|i| p[i + 1] += p[i]);
            p
        };
        let row_ptr = ptr(&rows);
        let col_ptr = ptr(&cols);
        let mut by_col: Vec<u32> = (0..cols.len() as u32).collect();
        by_col.sort_by_key(|&j| cols[j as usize]);
        Ok(Self {
            n,
            row_ptr,
            index: OnceLock::new(),
            cols,
            rows,
            col_ptr,
            by_col,
        })
    }

    pub fn len(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }
}

/// The layer's output `[n, d]` from `q`, `k`, `v` (`[n, d]`, `d` divisible by `heads`).
pub fn edge_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    edges: &Arc<EdgeList>,
    heads: usize,
) -> Result<Tensor> {
    if !q.device().is_cpu() {
        return edge_attention_reference(q, k, v, edges, heads);
    }
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        EdgeAttention {
            edges: edges.clone(),
            heads,
        },
    )
}

/// The same layer from plain candle ops (reference and non-CPU devices).
pub fn edge_attention_reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    edges: &EdgeList,
    heads: usize,
) -> Result<Tensor> {
    let (n, d) = q.dims2()?;
    let m = edges.len();
    let dev = q.device();
    if edges.index.get().is_none() {
        let made = (
            Tensor::from_slice(&edges.rows, m, dev)?,
            Tensor::from_slice(&edges.cols, m, dev)?,
        );
        let _ = edges.index.set(made);
    }
    let index = edges.index.get().expect("set above");
    let (rows, cols) = (&index.0, &index.1);
    let q = q.index_select(rows, 0)?;
    let k = k.index_select(cols, 0)?;
    let v = v.index_select(cols, 0)?;
    let att = (q * k)?
        .reshape((m, heads, d / heads))?
        .sum(D::Minus1)?
        .clamp(-CLAMP, CLAMP)?
        .exp()?;
    let norm = Tensor::zeros((n, heads), DType::F32, att.device())?
        .index_add(rows, &att, 0)?
        .index_select(rows, 0)?;
    let att = (att / (norm + NORM_EPS as f64)?)?;
    let res = v
        .reshape((m, heads, d / heads))?
        .broadcast_mul(&att.unsqueeze(2)?)?
        .reshape((m, d))?;
    Tensor::zeros((n, d), DType::F32, res.device())?.index_add(rows, &res, 0)
}

struct EdgeAttention {
    edges: Arc<EdgeList>,
    heads: usize,
}

/// Row `r`'s scores `s` and weights `a = exp(s)` per edge and head (edge-major), and the
/// per-head sums of `a`.
#[inline(always)]
fn row_scores(
    e: &EdgeList,
    q: &[f32],
    k: &[f32],
    d: usize,
    heads: usize,
    r: usize,
    s: &mut Vec<f32>,
    a: &mut Vec<f32>,
    sums: &mut [f32],
) {
    let dh = d / heads;
    s.clear();
    a.clear();
    sums.iter_mut().for_each(|x| *x = 0.0);
    let qr = &q[r * d..(r + 1) * d];
    for j in e.row_ptr[r]..e.row_ptr[r + 1] {
        let c = e.cols[j] as usize;
        let kc = &k[c * d..(c + 1) * d];
        for h in 0..heads {
            let raw = dot(&qr[h * dh..(h + 1) * dh], &kc[h * dh..(h + 1) * dh]);
            let x = raw.clamp(-CLAMP, CLAMP);
            let ex = x.exp();
            // a clamped score passes no gradient: mark it with NaN in `s`
            s.push(if raw > -CLAMP && raw < CLAMP {
                x
            } else {
                f32::NAN
            });
            a.push(ex);
            sums[h] += ex;
        }
    }
}

impl EdgeAttention {
    fn dims(&self, l: &Layout) -> Result<(usize, usize)> {
        let (n, d) = l.shape().dims2()?;
        if n != self.edges.n || self.heads == 0 || d % self.heads != 0 {
            candle_core::bail!(
                "edge attention: [{n}, {d}] inputs for {} nodes and {} heads",
                self.edges.n,
                self.heads
            );
        }
        Ok((n, d))
    }
}

impl CustomOp3 for EdgeAttention {
    fn name(&self) -> &'static str {
        "edge-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = self.dims(ql)?;
        if kl.shape() != ql.shape() || vl.shape() != ql.shape() {
            candle_core::bail!("edge attention: q, k and v must have one shape");
        }
        let q = super::cpu_slice(qs, ql, "edge attention")?;
        let k = super::cpu_slice(ks, kl, "edge attention")?;
        let v = super::cpu_slice(vs, vl, "edge attention")?;
        let (e, heads, dh) = (&*self.edges, self.heads, d / self.heads);
        let mut out = vec![0f32; n * d];
        out.par_chunks_mut(ROWS_PER_TASK * d.max(1))
            .enumerate()
            .for_each(|(task, outs)| {
                vectorized(
                    #[inline(always)]
                    || {
                        let (mut s, mut a, mut sums) = (Vec::new(), Vec::new(), vec![0f32; heads]);
                        for (i, o) in outs.chunks_exact_mut(d.max(1)).enumerate() {
                            let r = task * ROWS_PER_TASK + i;
                            row_scores(e, q, k, d, heads, r, &mut s, &mut a, &mut sums);
                            for (jj, j) in (e.row_ptr[r]..e.row_ptr[r + 1]).enumerate() {
                                let c = e.cols[j] as usize;
                                for h in 0..heads {
                                    let w = a[jj * heads + h] / (sums[h] + NORM_EPS);
                                    let span = h * dh..(h + 1) * dh;
                                    axpy(&mut o[span.clone()], w, &v[c * d..(c + 1) * d][span]);
                                }
                            }
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(out), Shape::from((n, d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, d) = q.dims2()?;
        let g = grad_res.contiguous()?;
        let (dq, dk, dv) = super::with_host_slice(q, |q| {
            super::with_host_slice(k, |k| {
                super::with_host_slice(v, |v| {
                    super::with_host_slice(res, |out| {
                        super::with_host_slice(&g, |g| {
                            backward(&self.edges, self.heads, q, k, v, out, g, d)
                        })
                    })
                })
            })
        })?????;
        let dev = q.device();
        let t = |x: Vec<f32>| Tensor::from_vec(x, (n, d), dev);
        Ok((Some(t(dq)?), Some(t(dk)?), Some(t(dv)?)))
    }
}

/// Gradients of `q`, `k` and `v` given the output and its gradient `g`.
#[allow(clippy::too_many_arguments)]
fn backward(
    e: &EdgeList,
    heads: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    g: &[f32],
    d: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let dh = d / heads;
    // per edge and head: the weight w = a / (sum + eps) and the score's gradient
    let mut w = vec![0f32; e.len() * heads];
    let mut ds = vec![0f32; e.len() * heads];
    let mut dq = vec![0f32; e.n * d];
    dq.par_chunks_mut(ROWS_PER_TASK * d.max(1))
        .zip(super::split_row_tasks(
            &e.row_ptr,
            ROWS_PER_TASK,
            heads,
            &mut w,
        ))
        .zip(super::split_row_tasks(
            &e.row_ptr,
            ROWS_PER_TASK,
            heads,
            &mut ds,
        ))
        .enumerate()
        .for_each(|(task, ((dqs, wt), dst))| {
            vectorized(
                #[inline(always)]
                || {
                    let (mut s, mut a, mut sums) = (Vec::new(), Vec::new(), vec![0f32; heads]);
                    let base = e.row_ptr[task * ROWS_PER_TASK];
                    for (i, dqr) in dqs.chunks_exact_mut(d.max(1)).enumerate() {
                        let r = task * ROWS_PER_TASK + i;
                        row_scores(e, q, k, d, heads, r, &mut s, &mut a, &mut sums);
                        let gr = &g[r * d..(r + 1) * d];
                        let or = &out[r * d..(r + 1) * d];
                        for (jj, j) in (e.row_ptr[r]..e.row_ptr[r + 1]).enumerate() {
                            let c = e.cols[j] as usize;
                            for h in 0..heads {
                                let span = h * dh..(h + 1) * dh;
                                let z = sums[h] + NORM_EPS;
                                let at = jj * heads + h;
                                let slot = (j - base) * heads + h;
                                wt[slot] = a[at] / z;
                                // d out / d a_j = (v_c - out_r) / z, per head
                                let gv =
                                    dot(&gr[span.clone()], &v[c * d..(c + 1) * d][span.clone()]);
                                let go = dot(&gr[span.clone()], &or[span.clone()]);
                                let grad = if s[at].is_nan() {
                                    0.0
                                } else {
                                    (gv - go) / z * a[at]
                                };
                                dst[slot] = grad;
                                axpy(&mut dqr[span.clone()], grad, &k[c * d..(c + 1) * d][span]);
                            }
                        }
                    }
                },
            )
        });
    let mut dk = vec![0f32; e.n * d];
    let mut dv = vec![0f32; e.n * d];
    dk.par_chunks_mut(ROWS_PER_TASK * d.max(1))
        .zip(dv.par_chunks_mut(ROWS_PER_TASK * d.max(1)))
        .enumerate()
        .for_each(|(task, (dks, dvs))| {
            vectorized(
                #[inline(always)]
                || {
                    let cols = dks
                        .chunks_exact_mut(d.max(1))
                        .zip(dvs.chunks_exact_mut(d.max(1)));
                    for (i, (dkc, dvc)) in cols.enumerate() {
                        let c = task * ROWS_PER_TASK + i;
                        for &j in &e.by_col[e.col_ptr[c]..e.col_ptr[c + 1]] {
                            let (j, r) = (j as usize, e.rows[j as usize] as usize);
                            for h in 0..heads {
                                let span = h * dh..(h + 1) * dh;
                                let slot = j * heads + h;
                                let qr = &q[r * d..(r + 1) * d][span.clone()];
                                axpy(&mut dkc[span.clone()], ds[slot], qr);
                                axpy(
                                    &mut dvc[span.clone()],
                                    w[slot],
                                    &g[r * d..(r + 1) * d][span],
                                );
                            }
                        }
                    }
                },
            )
        });
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_same_gradients, var};

    /// Value and the gradients of q, k and v agree with the plain-candle form, on a graph
    /// with self loops, an asymmetric edge, a node without edges, and (at scale 4) scores
    /// beyond the clamp.
    #[test]
    fn fused_attention_matches_the_plain_candle_form() {
        let rows = [0, 0, 1, 1, 2, 2, 3, 0, 4, 4, 4];
        let cols = [0, 3, 1, 2, 2, 1, 3, 4, 0, 1, 4];
        // node 5 has no edge; the edges come unsorted
        let edges = Arc::new(EdgeList::new(6, &rows, &cols).unwrap());
        for scale in [0.5f32, 4.0] {
            let (q, k, v, probe) = (
                var(6, 8, 1, scale),
                var(6, 8, 2, scale),
                var(6, 8, 3, 1.0),
                var(6, 8, 4, 1.0),
            );
            let args = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let fused = edge_attention(args.0, args.1, args.2, &edges, 2).unwrap();
            let plain = edge_attention_reference(args.0, args.1, args.2, &edges, 2).unwrap();
            assert!(crate::ops::max_abs_diff(&fused, &plain) < 1e-5);
            let loss = |y: &Tensor| (y * probe.as_tensor()).unwrap().sum_all().unwrap();
            let gf = loss(&fused).backward().unwrap();
            let gp = loss(&plain).backward().unwrap();
            assert_same_gradients(&gf, &gp, &[&q, &k, &v], 1e-4);
        }
    }

    #[test]
    fn edges_outside_the_graph_are_refused() {
        let err = EdgeList::new(3, &[0, 3], &[1, 1])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("below 3"), "{err}");
    }
}
