//! The user-item bipartite graph of the training split and its symmetric normalisation
//! `D^-1/2 A D^-1/2` (SPEC.md section 2; LightGCN, He et al. 2020, eq. 7).
//!
//! Nodes are numbered users first (`0..U`), then items (`U..U+I`). [`Csr`] is the sparse
//! matrix the propagation op multiplies with. Edge dropout (training only) keeps each
//! *undirected* edge with probability `keep_rate` and keeps the surviving entries' values
//! from the full graph (no rescaling, as RLMRec). Dropping both directions together is our
//! choice: it keeps the matrix symmetric, so the backward pass is the same product.

use crate::data::UserItems;
use crate::ops::fastmath::vectorized;
use crate::rng::Rng;
use rayon::prelude::*;

/// Compressed sparse rows, f32 values.
#[derive(Clone, Debug, Default)]
pub struct Csr {
    pub n: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// Runs `body(task, out_rows, total_rows)` in parallel over `chunk`-sized pieces of `out`
/// and, when `total` is not empty, the matching pieces of `total`.
fn for_row_tasks(
    out: &mut [f32],
    total: &mut [f32],
    chunk: usize,
    body: impl Fn(usize, &mut [f32], Option<&mut [f32]>) + Sync,
) {
    if total.is_empty() {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(task, o)| body(task, o, None));
    } else {
        out.par_chunks_mut(chunk)
            .zip(total.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(task, (o, t))| body(task, o, Some(t)));
    }
}

/// Rows per rayon task in the sparse product: big enough to amortise scheduling.
const ROWS_PER_TASK: usize = 256;

impl Csr {
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// `out = self * x` for a dense row-major `x` with `d` columns (`out` is overwritten).
    /// Common widths use a register-resident row accumulator of fixed size.
    pub fn spmm(&self, x: &[f32], d: usize, out: &mut [f32]) {
        self.spmm_fused(x, d, out, None, None);
    }

    /// One pass of `out = self * x + beta * add`, then `total += alpha * out`, row by row
    /// while the row is in registers (`add = (beta, add)`, `total = (alpha, total)`, both
    /// optional). Saves the separate sweeps over `[n, d]` buffers that the propagation's
    /// layer sum and its adjoint would otherwise make.
    pub fn spmm_fused(
        &self,
        x: &[f32],
        d: usize,
        out: &mut [f32],
        add: Option<(f32, &[f32])>,
        total: Option<(f32, &mut [f32])>,
    ) {
        assert_eq!(x.len(), self.n * d, "spmm: x has the wrong size");
        assert_eq!(out.len(), self.n * d, "spmm: out has the wrong size");
        if let Some((_, a)) = add {
            assert_eq!(a.len(), self.n * d, "spmm: add has the wrong size");
        }
        // an empty `total` means none from here on
        let (alpha, total): (f32, &mut [f32]) = match total {
            Some((a, t)) => {
                assert_eq!(t.len(), self.n * d, "spmm: total has the wrong size");
                (a, t)
            }
            None => (0.0, &mut []),
        };
        match d {
            16 => self.spmm_fixed::<16>(x, out, add, alpha, total),
            32 => self.spmm_fixed::<32>(x, out, add, alpha, total),
            64 => self.spmm_fixed::<64>(x, out, add, alpha, total),
            _ => self.spmm_any(x, d, out, add, alpha, total),
        }
    }

    fn spmm_fixed<const D: usize>(
        &self,
        x: &[f32],
        out: &mut [f32],
        add: Option<(f32, &[f32])>,
        alpha: f32,
        total: &mut [f32],
    ) {
        let chunk = ROWS_PER_TASK * D;
        let body = |task: usize, out_rows: &mut [f32], mut tot_rows: Option<&mut [f32]>| {
            // compiled for the CPU's widest vectors: a 32-wide row is two AVX-512 adds
            vectorized(
                #[inline(always)]
                || {
                    let first = task * ROWS_PER_TASK;
                    for (r, orow) in out_rows.chunks_exact_mut(D).enumerate() {
                        let row = first + r;
                        let mut acc = [0f32; D];
                        if let Some((beta, a)) = add {
                            let arow: &[f32; D] =
                                a[row * D..(row + 1) * D].try_into().expect("width");
                            for j in 0..D {
                                acc[j] = beta * arow[j];
                            }
                        }
                        for k in self.indptr[row]..self.indptr[row + 1] {
                            let w = self.values[k];
                            let c = self.indices[k] as usize;
                            let xrow: &[f32; D] =
                                x[c * D..(c + 1) * D].try_into().expect("row width");
                            for j in 0..D {
                                acc[j] += w * xrow[j];
                            }
                        }
                        orow.copy_from_slice(&acc);
                        if let Some(t) = tot_rows.as_deref_mut() {
                            let trow: &mut [f32; D] =
                                (&mut t[r * D..(r + 1) * D]).try_into().expect("row width");
                            for j in 0..D {
                                trow[j] += alpha * acc[j];
                            }
                        }
                    }
                },
            )
        };
        for_row_tasks(out, total, chunk, body);
    }

    fn spmm_any(
        &self,
        x: &[f32],
        d: usize,
        out: &mut [f32],
        add: Option<(f32, &[f32])>,
        alpha: f32,
        total: &mut [f32],
    ) {
        let chunk = ROWS_PER_TASK * d;
        let body = |task: usize, out_rows: &mut [f32], mut tot_rows: Option<&mut [f32]>| {
            let first = task * ROWS_PER_TASK;
            for (r, orow) in out_rows.chunks_mut(d).enumerate() {
                let row = first + r;
                match add {
                    Some((beta, a)) => orow
                        .iter_mut()
                        .zip(&a[row * d..(row + 1) * d])
                        .for_each(|(o, v)| *o = beta * v),
                    None => orow.fill(0.0),
                }
                for k in self.indptr[row]..self.indptr[row + 1] {
                    let w = self.values[k];
                    let c = self.indices[k] as usize;
                    let xrow = &x[c * d..(c + 1) * d];
                    for (o, v) in orow.iter_mut().zip(xrow) {
                        *o += w * v;
                    }
                }
                if let Some(t) = tot_rows.as_deref_mut() {
                    for (t, o) in t[r * d..(r + 1) * d].iter_mut().zip(orow.iter()) {
                        *t += alpha * o;
                    }
                }
            }
        };
        for_row_tasks(out, total, chunk, body);
    }

    /// The row of every stored entry, in storage order (with `indices`, the entries as
    /// `(row, column)` edge lists).
    pub fn entry_rows(&self) -> Vec<u32> {
        let mut rows = Vec::with_capacity(self.indices.len());
        for v in 0..self.n {
            rows.extend(std::iter::repeat_n(
                v as u32,
                self.indptr[v + 1] - self.indptr[v],
            ));
        }
        rows
    }

    /// Dense copy (tests and tiny graphs only).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut m = vec![0.0; self.n * self.n];
        for r in 0..self.n {
            for k in self.indptr[r]..self.indptr[r + 1] {
                m[r * self.n + self.indices[k] as usize] += self.values[k];
            }
        }
        m
    }
}

/// The training graph: structure plus, for every stored entry, the id of its undirected edge.
#[derive(Clone, Debug)]
pub struct BipartiteGraph {
    pub n_users: usize,
    pub n_items: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    edge_id: Vec<u32>,
    n_edges: usize,
}

impl BipartiteGraph {
    /// Builds the graph from the per-user training item lists (duplicates already removed).
    pub fn from_train(n_users: usize, n_items: usize, train: &UserItems) -> Self {
        let n = n_users + n_items;
        let mut deg = vec![0usize; n];
        for u in 0..n_users {
            for &i in train.row(u as u32) {
                deg[u] += 1;
                deg[n_users + i as usize] += 1;
            }
        }
        let mut indptr = vec![0usize; n + 1];
        for v in 0..n {
            indptr[v + 1] = indptr[v] + deg[v];
        }
        let nnz = indptr[n];
        let mut fill = indptr.clone();
        let mut indices = vec![0u32; nnz];
        let mut edge_id = vec![0u32; nnz];
        let mut e = 0u32;
        for u in 0..n_users {
            for &i in train.row(u as u32) {
                let iv = n_users + i as usize;
                indices[fill[u]] = iv as u32;
                edge_id[fill[u]] = e;
                fill[u] += 1;
                indices[fill[iv]] = u as u32;
                edge_id[fill[iv]] = e;
                fill[iv] += 1;
                e += 1;
            }
        }
        Self {
            n_users,
            n_items,
            indptr,
            indices,
            edge_id,
            n_edges: e as usize,
        }
    }

    pub fn n_nodes(&self) -> usize {
        self.n_users + self.n_items
    }
    pub fn n_edges(&self) -> usize {
        self.n_edges
    }
    pub fn degree(&self, v: usize) -> usize {
        self.indptr[v + 1] - self.indptr[v]
    }

    /// `D^-1/2 (A [+ I]) D^-1/2` over all edges. Isolated nodes get an empty row (or just
    /// their self loop).
    pub fn normalized(&self, self_loops: bool) -> Csr {
        self.build(self_loops, None)
    }

    /// Like [`normalized`](Self::normalized) but each undirected edge survives with
    /// probability `keep_rate`; surviving entries keep their full-graph values.
    pub fn normalized_dropped(&self, self_loops: bool, keep_rate: f32, rng: &mut Rng) -> Csr {
        if keep_rate >= 1.0 {
            return self.normalized(self_loops);
        }
        let keep: Vec<bool> = (0..self.n_edges).map(|_| rng.f32() < keep_rate).collect();
        self.build(self_loops, Some(&keep))
    }

    /// Edge dropout by filtering `full`, which must be `self.normalized(false)` (same entry
    /// order): the same matrix as `normalized_dropped(false, ..)` with the same `rng`, built
    /// without recomputing values, in two parallel passes (count, then fill).
    pub fn drop_edges(&self, full: &Csr, keep_rate: f32, rng: &mut Rng) -> Csr {
        assert_eq!(
            full.nnz(),
            self.indices.len(),
            "drop_edges: `full` is not this graph"
        );
        if keep_rate >= 1.0 {
            return full.clone();
        }
        let keep: Vec<u8> = (0..self.n_edges)
            .map(|_| (rng.f32() < keep_rate) as u8)
            .collect();
        // per stored entry: 1 if its undirected edge survives (branch-free passes below)
        let mut kept = vec![0u8; full.nnz()];
        kept.par_chunks_mut(BUILD_BLOCK * 16)
            .zip(self.edge_id.par_chunks(BUILD_BLOCK * 16))
            .for_each(|(k, e)| {
                k.iter_mut()
                    .zip(e)
                    .for_each(|(k, &e)| *k = keep[e as usize])
            });
        let n = full.n;
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(0usize);
        for v in 0..n {
            let row = &kept[full.indptr[v]..full.indptr[v + 1]];
            let c: usize = row.iter().map(|&b| b as usize).sum();
            indptr.push(indptr[v] + c);
        }
        let nnz = indptr[n];
        let mut indices = vec![0u32; nnz];
        let mut values = vec![0f32; nnz];
        // split the outputs at block boundaries so blocks fill disjoint slices in parallel
        let mut parts = Vec::with_capacity(n.div_ceil(BUILD_BLOCK));
        let (mut irest, mut vrest) = (&mut indices[..], &mut values[..]);
        for start in (0..n).step_by(BUILD_BLOCK) {
            let end = (start + BUILD_BLOCK).min(n);
            let len = indptr[end] - indptr[start];
            let (i, ir) = std::mem::take(&mut irest).split_at_mut(len);
            let (v, vr) = std::mem::take(&mut vrest).split_at_mut(len);
            (irest, vrest) = (ir, vr);
            parts.push((start..end, i, v));
        }
        parts.into_par_iter().for_each(|(rows, idx, val)| {
            let entries = full.indptr[rows.start]..full.indptr[rows.end];
            let kept = &kept[entries.clone()];
            let (src_i, src_v) = (&full.indices[entries.clone()], &full.values[entries]);
            let mut o = 0;
            for ((&k, &c), &w) in kept.iter().zip(src_i).zip(src_v) {
                if k != 0 {
                    idx[o] = c;
                    val[o] = w;
                    o += 1;
                }
            }
        });
        Csr {
            n,
            indptr,
            indices,
            values,
        }
    }

    fn build(&self, self_loops: bool, keep: Option<&[bool]>) -> Csr {
        let n = self.n_nodes();
        let loop_deg = if self_loops { 1.0 } else { 0.0 };
        let inv_sqrt: Vec<f32> = (0..n)
            .map(|v| {
                let d = self.degree(v) as f32 + loop_deg;
                if d > 0.0 {
                    1.0 / d.sqrt()
                } else {
                    0.0
                }
            })
            .collect();
        // Rows are built in parallel blocks, then concatenated.
        let blocks: Vec<(Vec<usize>, Vec<u32>, Vec<f32>)> = (0..n.div_ceil(BUILD_BLOCK))
            .into_par_iter()
            .map(|blk| {
                let rows = blk * BUILD_BLOCK..((blk + 1) * BUILD_BLOCK).min(n);
                let (mut lens, mut idx, mut val) =
                    (Vec::with_capacity(rows.len()), Vec::new(), Vec::new());
                for v in rows {
                    let before = idx.len();
                    let mut pushed_loop = !self_loops;
                    for k in self.indptr[v]..self.indptr[v + 1] {
                        let c = self.indices[k] as usize;
                        if !pushed_loop && c > v {
                            idx.push(v as u32);
                            val.push(inv_sqrt[v] * inv_sqrt[v]);
                            pushed_loop = true;
                        }
                        if keep.is_some_and(|kp| !kp[self.edge_id[k] as usize]) {
                            continue;
                        }
                        idx.push(c as u32);
                        val.push(inv_sqrt[v] * inv_sqrt[c]);
                    }
                    if !pushed_loop {
                        idx.push(v as u32);
                        val.push(inv_sqrt[v] * inv_sqrt[v]);
                    }
                    lens.push(idx.len() - before);
                }
                (lens, idx, val)
            })
            .collect();
        let nnz: usize = blocks.iter().map(|b| b.1.len()).sum();
        let mut indptr = Vec::with_capacity(n + 1);
        let mut indices = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        indptr.push(0);
        for (lens, idx, val) in blocks {
            for l in lens {
                indptr.push(indptr.last().unwrap() + l);
            }
            indices.extend_from_slice(&idx);
            values.extend_from_slice(&val);
        }
        Csr {
            n,
            indptr,
            indices,
            values,
        }
    }
}

/// Rows per parallel block when building a normalised matrix.
const BUILD_BLOCK: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> BipartiteGraph {
        // users 0,1 ; items 0,1,2 ; edges u0-i0, u0-i1, u1-i1
        let ui = UserItems::from_pairs(2, &[(0, 0), (0, 1), (1, 1)]);
        BipartiteGraph::from_train(2, 3, &ui)
    }

    #[test]
    fn normalisation_matches_hand_computed_values() {
        let g = tiny();
        let a = g.normalized(false).to_dense();
        let n = 5;
        // degrees: u0=2, u1=1, i0=1, i1=2, i2=0
        let at = |r: usize, c: usize| a[r * n + c];
        assert!((at(0, 2) - 1.0 / (2f32.sqrt() * 1.0)).abs() < 1e-6);
        assert!((at(0, 3) - 1.0 / 2.0).abs() < 1e-6);
        assert!((at(1, 3) - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        for r in 0..n {
            for c in 0..n {
                assert_eq!(at(r, c), at(c, r), "symmetric");
            }
        }
        assert_eq!(at(4, 4), 0.0);
        let s = g.normalized(true).to_dense();
        // with self loops: u0 degree 3, i0 degree 2
        assert!((s[0] - 1.0 / 3.0).abs() < 1e-6);
        assert!((s[2] - 1.0 / (3f32.sqrt() * 2f32.sqrt())).abs() < 1e-6);
        assert!(
            (s[4 * n + 4] - 1.0).abs() < 1e-6,
            "isolated node keeps its self loop"
        );
    }

    #[test]
    fn dropout_is_symmetric_keeps_values_and_roughly_the_rate() {
        let pairs: Vec<(u32, u32)> = (0..200u32)
            .flat_map(|u| (0..10u32).map(move |k| (u, (u * 7 + k * 13) % 150)))
            .collect();
        let ui = UserItems::from_pairs(200, &pairs);
        let g = BipartiteGraph::from_train(200, 150, &ui);
        let full = g.normalized(false).to_dense();
        let mut rng = Rng::new(5);
        let d = g.normalized_dropped(false, 0.8, &mut rng);
        let dense = d.to_dense();
        let n = g.n_nodes();
        for r in 0..n {
            for c in 0..n {
                let v = dense[r * n + c];
                assert_eq!(v, dense[c * n + r]);
                assert!(v == 0.0 || v == full[r * n + c]);
            }
        }
        let kept = d.nnz() as f64 / g.normalized(false).nnz() as f64;
        assert!((kept - 0.8).abs() < 0.03, "kept {kept}");
    }

    #[test]
    fn fixed_width_products_match_the_general_loop() {
        let pairs: Vec<(u32, u32)> = (0..40u32)
            .flat_map(|u| (0..5u32).map(move |k| (u, (u * 3 + k * 7) % 30)))
            .collect();
        let g = BipartiteGraph::from_train(40, 30, &UserItems::from_pairs(40, &pairs));
        let a = g.normalized(false);
        for d in [16, 32, 64] {
            let x: Vec<f32> = (0..70 * d)
                .map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0)
                .collect();
            let (mut fast, mut slow) = (vec![0f32; 70 * d], vec![1f32; 70 * d]);
            a.spmm(&x, d, &mut fast);
            a.spmm_any(&x, d, &mut slow, None, 0.0, &mut []);
            assert_eq!(fast, slow, "d={d}");
        }
    }

    #[test]
    fn spmm_matches_dense_product() {
        let g = tiny();
        let a = g.normalized(true);
        let dense = a.to_dense();
        let d = 3;
        let x: Vec<f32> = (0..5 * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut out = vec![0.0; 5 * d];
        a.spmm(&x, d, &mut out);
        for r in 0..5 {
            for j in 0..d {
                let want: f32 = (0..5).map(|c| dense[r * 5 + c] * x[c * d + j]).sum();
                assert!((out[r * d + j] - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn fused_product_adds_and_accumulates() {
        let a = tiny().normalized(true);
        for d in [3usize, 16, 32] {
            let x: Vec<f32> = (0..5 * d).map(|i| (i as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..5 * d).map(|i| (i as f32 * 0.11).cos()).collect();
            let t0: Vec<f32> = (0..5 * d).map(|i| i as f32 * 0.01).collect();
            let mut plain = vec![0.0; 5 * d];
            a.spmm(&x, d, &mut plain);
            let mut out = vec![f32::NAN; 5 * d];
            let mut total = t0.clone();
            a.spmm_fused(&x, d, &mut out, Some((0.5, &y)), Some((2.0, &mut total)));
            for k in 0..5 * d {
                let want = plain[k] + 0.5 * y[k];
                assert!((out[k] - want).abs() < 1e-6, "d={d} out[{k}]");
                assert!(
                    (total[k] - (t0[k] + 2.0 * want)).abs() < 1e-5,
                    "d={d} total[{k}]"
                );
            }
        }
    }

    #[test]
    fn drop_edges_equals_the_rebuilt_dropped_graph() {
        let g = tiny();
        let full = g.normalized(false);
        for seed in 0..20 {
            let a = g.normalized_dropped(false, 0.6, &mut Rng::new(seed));
            let b = g.drop_edges(&full, 0.6, &mut Rng::new(seed));
            assert_eq!(
                (&a.indptr, &a.indices, &a.values),
                (&b.indptr, &b.indices, &b.values)
            );
        }
    }
}
