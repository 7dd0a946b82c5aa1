//! BPR loss (SPEC.md section 2) with a row-sparse gradient: for a table whose rows are
//! the final embeddings themselves (MF), a batch's gradient reaches only its users,
//! positives and negatives, so it is kept as `(row, gradient row)` pairs, `O(batch x d)`,
//! instead of a dense `[N, d]` tensor. The arithmetic is `ops::bpr`'s (same margins,
//! chunked loss sum and per-row accumulation in triple order), so each touched row gets
//! the same bits as the dense gradient's row. The batch's rows are first gathered into
//! one compact block: at scale the table is far larger than the caches, and the loss
//! then reads each row from memory once instead of once per use.

use rayon::prelude::*;

/// Triples per parallel task when computing margins (as `ops::bpr`).
const MARGIN_CHUNK: usize = 512;

/// Scratch for row-sparse gradients over a table of `n_rows` rows, reused across steps.
pub struct RowGrads {
    /// Distinct rows touched by the last batch, in order of first appearance.
    pub rows: Vec<u32>,
    /// `grads[k * d..(k + 1) * d]` is the gradient of `rows[k]`.
    pub grads: Vec<f32>,
    /// `slot[r]`: position of row `r` in `rows`, or `u32::MAX` (reset after each batch).
    slot: Vec<u32>,
    /// The batch's rows gathered into one compact block (`local[k]` = row `rows[k]`), so
    /// the loss and its gradient read cache-resident memory instead of the whole table.
    local: Vec<f32>,
    /// Per triple, the local positions of its user, positive and negative.
    ids: Vec<[u32; 3]>,
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rows per parallel task when gathering.
const GATHER_CHUNK: usize = 512;

impl RowGrads {
    pub fn new(n_rows: usize) -> Self {
        Self {
            rows: Vec::new(),
            grads: Vec::new(),
            slot: vec![u32::MAX; n_rows],
            local: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Position of row `r` in this batch, added on first sight.
    fn slot_of(&mut self, r: u32) -> u32 {
        let s = &mut self.slot[r as usize];
        if *s == u32::MAX {
            *s = self.rows.len() as u32;
            self.rows.push(r);
        }
        *s
    }

    /// Mean BPR loss `softplus(<u, n> - <u, p>)` of the triples (row indices of `x`, a
    /// row-major `[n_rows, d]` table) and its gradient by row, left in `rows`/`grads`.
    /// Panics on an index out of range or mismatched lengths (the caller builds them).
    pub fn bpr(&mut self, x: &[f32], d: usize, users: &[u32], pos: &[u32], neg: &[u32]) -> f32 {
        assert!(users.len() == pos.len() && users.len() == neg.len() && !users.is_empty());
        assert_eq!(x.len(), self.slot.len() * d, "bpr rows: table size");
        for &r in &self.rows {
            self.slot[r as usize] = u32::MAX;
        }
        self.rows.clear();
        self.ids.clear();
        for b in 0..users.len() {
            let t = [
                self.slot_of(users[b]),
                self.slot_of(pos[b]),
                self.slot_of(neg[b]),
            ];
            self.ids.push(t);
        }
        // gather: independent row copies, many loads in flight
        let n_local = self.rows.len();
        self.local.resize(n_local * d, 0.0);
        self.local
            .par_chunks_mut(GATHER_CHUNK * d)
            .zip(self.rows.par_chunks(GATHER_CHUNK))
            .for_each(|(dst, rows)| {
                for (k, (o, &r)) in dst.chunks_exact_mut(d).zip(rows).enumerate() {
                    if let Some(&ahead) = rows.get(k + 24) {
                        super::lazy_adam::prefetch_row(x.as_ptr(), ahead as usize * d, d);
                    }
                    o.copy_from_slice(&x[r as usize * d..(r as usize + 1) * d]);
                }
            });
        let local = &self.local;
        let ids = &self.ids;
        let b_len = users.len();
        let scale = 1.0f32 / b_len as f32;
        // per triple, its loss term (f64, as `ops::bpr` sums it) and its gradient
        // coefficient sigmoid(margin) / B: the transcendental work, in parallel
        let terms: Vec<(f64, f32)> = ids
            .par_iter()
            .with_min_len(MARGIN_CHUNK)
            .map(|&[u, p, n]| {
                let row = |k: u32| &local[k as usize * d..(k as usize + 1) * d];
                let xu = row(u);
                let m = dot(xu, row(n)) - dot(xu, row(p));
                (softplus(m as f64), scale / (1.0 + (-m).exp()))
            })
            .collect();
        let total: f64 = terms
            .par_chunks(MARGIN_CHUNK)
            .map(|c| c.iter().map(|t| t.0).sum::<f64>())
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        // every row's terms in triple order, as the dense op adds them (element-wise
        // only, so the vector width does not change a bit)
        self.grads.clear();
        self.grads.resize(n_local * d, 0.0);
        let g = &mut self.grads;
        match d {
            32 => scatter_fixed::<32>(g, local, ids, &terms),
            64 => scatter_fixed::<64>(g, local, ids, &terms),
            _ => {
                for (&[u, p, n], &(_, s)) in ids.iter().zip(&terms) {
                    let (u, p, n) = (u as usize * d, p as usize * d, n as usize * d);
                    for j in 0..d {
                        g[u + j] += s * (local[n + j] - local[p + j]);
                    }
                    for j in 0..d {
                        g[p + j] -= s * local[u + j];
                    }
                    for j in 0..d {
                        g[n + j] += s * local[u + j];
                    }
                }
            }
        }
        (total / b_len as f64) as f32
    }
}

/// The gradient accumulation of [`RowGrads::bpr`] for a width known at compile time:
/// rows as fixed-size arrays, so the loops compile to vector code without bounds checks.
fn scatter_fixed<const D: usize>(
    g: &mut [f32],
    local: &[f32],
    ids: &[[u32; 3]],
    terms: &[(f64, f32)],
) {
    crate::ops::fastmath::vectorized(
        #[inline(always)]
        || {
            let row = |x: &[f32], k: u32| -> [f32; D] {
                x[k as usize * D..(k as usize + 1) * D]
                    .try_into()
                    .expect("row width")
            };
            for (&[u, p, n], &(_, s)) in ids.iter().zip(terms) {
                let (xu, xp, xn) = (row(local, u), row(local, p), row(local, n));
                let gu: &mut [f32; D] = (&mut g[u as usize * D..(u as usize + 1) * D])
                    .try_into()
                    .expect("row width");
                for j in 0..D {
                    gu[j] += s * (xn[j] - xp[j]);
                }
                let gp: &mut [f32; D] = (&mut g[p as usize * D..(p as usize + 1) * D])
                    .try_into()
                    .expect("row width");
                for j in 0..D {
                    gp[j] -= s * xu[j];
                }
                let gn: &mut [f32; D] = (&mut g[n as usize * D..(n as usize + 1) * D])
                    .try_into()
                    .expect("row width");
                for j in 0..D {
                    gn[j] += s * xu[j];
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use std::sync::Arc;

    /// Loss and every touched row equal the dense fused op's (`ops::bpr`) bit for bit;
    /// untouched rows have a zero dense gradient.
    #[test]
    fn equals_the_dense_gradient_row_by_row() {
        let (n, d) = (30, 5);
        let data: Vec<f32> = (0..n * d)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 6.0)
            .collect();
        // repeated indices on purpose: gradients must accumulate
        let users = vec![0u32, 3, 3, 7, 9];
        let pos = vec![12u32, 15, 20, 12, 29];
        let neg = vec![20u32, 12, 15, 25, 12];
        let x = Var::from_vec(data.clone(), (n, d), &Device::Cpu).unwrap();
        let dense = crate::ops::bpr::bpr_loss(
            x.as_tensor(),
            Arc::new(users.clone()),
            Arc::new(pos.clone()),
            Arc::new(neg.clone()),
        )
        .unwrap();
        let g: Vec<Vec<f32>> = dense
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .to_vec2()
            .unwrap();
        let mut rg = RowGrads::new(n);
        let loss = rg.bpr(&data, d, &users, &pos, &neg);
        assert_eq!(loss, dense.to_scalar::<f32>().unwrap());
        let mut touched = rg.rows.clone();
        touched.sort_unstable();
        assert_eq!(touched, vec![0, 3, 7, 9, 12, 15, 20, 25, 29]);
        for (k, &r) in rg.rows.iter().enumerate() {
            assert_eq!(&rg.grads[k * d..(k + 1) * d], &g[r as usize][..], "row {r}");
        }
        for r in 0..n as u32 {
            if !touched.contains(&r) {
                assert!(g[r as usize].iter().all(|&v| v == 0.0));
            }
        }
        // the scratch is reset between batches
        let loss2 = rg.bpr(&data, d, &[1], &[2], &[4]);
        assert_eq!(rg.rows, vec![1, 2, 4]);
        assert!(loss2.is_finite());
    }
}
