//! Row-wise lazy Adam (TensorFlow Addons' `LazyAdam`, PyTorch's `SparseAdam`) for a
//! `[N, d]` table whose gradient in a step reaches only some rows: only those rows'
//! moments and values change, each by exactly the update dense Adam gives it (same
//! formula, same global step count `t` in the bias corrections, the same coupled weight
//! decay added to its gradient); rows without a gradient keep their moments and values
//! instead of decaying. A step costs `O(rows x d)`, not `O(N d)`.
//!
//! When every row is touched in every step the result is dense Adam's, bit for bit
//! (`ops::adam`); otherwise the rows a step skips are left exactly where they were.

use super::AdamConfig;
use rayon::prelude::*;

/// Rows per parallel task of an update.
const ROWS_PER_TASK: usize = 256;

/// Lazy Adam state of one `[n_rows, dim]` table.
pub struct LazyAdam {
    cfg: AdamConfig,
    dim: usize,
    t: u64,
    /// Both moments of a row side by side (`[m_r | v_r]`, `2 d` floats): one stretch of
    /// memory a row instead of two far apart.
    mv: Vec<f32>,
    /// One bit per row, to check that a step's rows are distinct (cleared after use).
    seen: Vec<u64>,
}

impl LazyAdam {
    pub fn new(n_rows: usize, dim: usize, cfg: AdamConfig) -> Self {
        Self {
            cfg,
            dim,
            t: 0,
            mv: vec![0.0; 2 * n_rows * dim],
            seen: vec![0; n_rows.div_ceil(64)],
        }
    }

    pub fn steps(&self) -> u64 {
        self.t
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Step count and moments (the checkpoint format of dense Adam, one variable).
    pub fn state(&self) -> super::adam::AdamState {
        let d = self.dim;
        let (mut m, mut v) = (
            Vec::with_capacity(self.mv.len() / 2),
            Vec::with_capacity(self.mv.len() / 2),
        );
        for row in self.mv.chunks_exact(2 * d) {
            m.extend_from_slice(&row[..d]);
            v.extend_from_slice(&row[d..]);
        }
        (self.t, vec![m], vec![v])
    }

    /// Restores a [`state`](Self::state).
    pub fn set_state(&mut self, t: u64, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>) -> anyhow::Result<()> {
        let (Ok([m]), Ok([v])) = (<[Vec<f32>; 1]>::try_from(m), <[Vec<f32>; 1]>::try_from(v))
        else {
            anyhow::bail!("lazy adam: the saved state does not hold exactly one table");
        };
        let d = self.dim;
        if m.len() * 2 != self.mv.len() || v.len() * 2 != self.mv.len() {
            anyhow::bail!(
                "lazy adam: the saved state has {} values, the table {}",
                m.len(),
                self.mv.len() / 2
            );
        }
        for ((row, m), v) in self
            .mv
            .chunks_exact_mut(2 * d)
            .zip(m.chunks_exact(d))
            .zip(v.chunks_exact(d))
        {
            row[..d].copy_from_slice(m);
            row[d..].copy_from_slice(v);
        }
        self.t = t;
        Ok(())
    }

    /// One step: `grads[k * d..(k + 1) * d]` is the gradient of row `rows[k]` of `table`.
    /// Every other row is left alone. Panics when `rows` repeats a row or leaves the table.
    pub fn step(&mut self, table: &mut [f32], rows: &[u32], grads: &[f32]) {
        let d = self.dim;
        assert_eq!(table.len() * 2, self.mv.len(), "lazy adam: table size");
        assert_eq!(
            grads.len(),
            rows.len() * d,
            "lazy adam: one gradient row per row"
        );
        let n_rows = table.len() / d.max(1);
        let mut ok = true;
        for &r in rows {
            let (w, bit) = (r as usize / 64, 1u64 << (r % 64));
            if r as usize >= n_rows || self.seen[w] & bit != 0 {
                ok = false;
                break;
            }
            self.seen[w] |= bit;
        }
        for &r in rows {
            if let Some(w) = self.seen.get_mut(r as usize / 64) {
                *w = 0;
            }
        }
        assert!(
            ok,
            "lazy adam: the rows of a step must be distinct rows of the table"
        );
        self.t += 1;
        let c = &self.cfg;
        let (b1, b2, eps, wd) = (
            c.beta1 as f32,
            c.beta2 as f32,
            c.eps as f32,
            c.weight_decay as f32,
        );
        // the same f32 constants as dense Adam's kernel
        let bc1 = (1.0 - c.beta1.powi(self.t as i32)) as f32;
        let bc2_sqrt = (1.0 - c.beta2.powi(self.t as i32)).sqrt() as f32;
        let step = c.lr as f32 / bc1;
        let shared = Shared {
            table: table.as_mut_ptr(),
            mv: self.mv.as_mut_ptr(),
        };
        rows.par_chunks(ROWS_PER_TASK)
            .zip(grads.par_chunks(ROWS_PER_TASK * d))
            .for_each(|(rows, g)| {
                let shared = &shared;
                // sqrt and division are exact in every vector width: the same bits as
                // dense Adam's kernel
                crate::ops::fastmath::vectorized(
                    #[inline(always)]
                    || {
                        for (k, &r) in rows.iter().enumerate() {
                            // the rows are scattered over tables far larger than the
                            // caches: ask for a later row's lines while this one computes
                            if let Some(&ahead) = rows.get(k + PREFETCH_AHEAD) {
                                let o = ahead as usize * d;
                                prefetch_row(shared.table, o, d);
                                prefetch_row(shared.mv, 2 * o, 2 * d);
                            }
                            // SAFETY: rows are distinct and within the table (checked
                            // above), so tasks write disjoint, in-bounds slices of both
                            // arrays.
                            let (p, mv) = unsafe { shared.rows(r as usize, d) };
                            let (m, v) = mv.split_at_mut(d);
                            let g = &g[k * d..(k + 1) * d];
                            for j in 0..d {
                                let gj = g[j] + wd * p[j];
                                m[j] = b1 * m[j] + (1.0 - b1) * gj;
                                v[j] = b2 * v[j] + (1.0 - b2) * gj * gj;
                                p[j] -= step * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
                            }
                        }
                    },
                )
            });
    }
}

/// How many rows ahead an update asks for the memory of the row it will reach.
const PREFETCH_AHEAD: usize = 64;

/// Hints the CPU to bring the `d` floats at `base + off` into the cache (no effect on
/// results; nothing is read here).
#[inline(always)]
pub(crate) fn prefetch_row(base: *const f32, off: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut k = 0;
        while k < d {
            // SAFETY: a prefetch never faults; `wrapping_add` keeps the address
            // computation defined even past the end.
            unsafe { _mm_prefetch(base.wrapping_add(off + k) as *const i8, _MM_HINT_T0) };
            k += 16;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (base, off, d);
}

/// Raw pointers to the table and moments, shared by the parallel tasks of one step.
struct Shared {
    table: *mut f32,
    mv: *mut f32,
}

// SAFETY: the tasks of a step touch disjoint rows (see `LazyAdam::step`).
unsafe impl Sync for Shared {}

impl Shared {
    /// Row `r` of the table and its moments `[m | v]`.
    ///
    /// # Safety
    /// Row `r` is within the arrays and no other task uses it meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, r: usize, d: usize) -> (&mut [f32], &mut [f32]) {
        (
            std::slice::from_raw_parts_mut(self.table.add(r * d), d),
            std::slice::from_raw_parts_mut(self.mv.add(2 * r * d), 2 * d),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand, lr 0.1, no decay, one value per row, rows 0 and 1:
    /// step 1 touches both with g = 1: m = 0.1, v = 0.001, update 0.1 * 1 / 1 -> x - 0.1.
    /// step 2 touches row 0 only with g = 1 (t = 2): m = 0.19, v = 0.001999,
    ///   m^ = 0.19 / 0.19 = 1, v^ = 0.001999 / 0.001999 = 1 -> x0 - 0.1 again;
    ///   row 1 keeps its value (dense Adam would move it by 0.1 * 0.09/0.19 / sqrt(0.000999/0.001999)).
    /// step 3 touches row 1 only with g = 1 (t = 3): its moments were not decayed at
    ///   step 2: m = 0.09 + 0.1 = 0.19, v = 0.000999 + 0.001 = 0.001999;
    ///   bc1 = 1 - 0.729 = 0.271, bc2 = 1 - 0.997003 = 0.002997
    ///   update = 0.1 * (0.19 / 0.271) / sqrt(0.001999 / 0.002997) = 0.070111 / 0.816710 = 0.085846.
    #[test]
    fn matches_a_hand_computed_lazy_update() {
        let cfg = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };
        let mut opt = LazyAdam::new(2, 1, cfg);
        let mut x = vec![1.0f32, 2.0];
        opt.step(&mut x, &[0, 1], &[1.0, 1.0]);
        assert!(
            (x[0] - 0.9).abs() < 1e-6 && (x[1] - 1.9).abs() < 1e-6,
            "{x:?}"
        );
        let before = x[1];
        opt.step(&mut x, &[0], &[1.0]);
        assert!((x[0] - 0.8).abs() < 1e-5, "{x:?}");
        assert_eq!(x[1], before, "row 1 untouched");
        opt.step(&mut x, &[1], &[1.0]);
        assert!((before - x[1] - 0.085846).abs() < 2e-5, "{}", before - x[1]);
        assert_eq!(opt.steps(), 3);
    }

    #[test]
    #[should_panic(expected = "distinct")]
    fn repeated_rows_are_refused() {
        let mut opt = LazyAdam::new(3, 1, AdamConfig::default());
        opt.step(&mut [0.0; 3], &[1, 1], &[1.0, 1.0]);
    }

    #[test]
    #[should_panic(expected = "distinct")]
    fn rows_outside_the_table_are_refused() {
        let mut opt = LazyAdam::new(3, 1, AdamConfig::default());
        opt.step(&mut [0.0; 3], &[3], &[1.0]);
    }

    /// Rows touched in every step get dense Adam's update bit for bit, weight decay
    /// included.
    #[test]
    fn equals_dense_adam_when_every_row_is_touched() {
        use candle_core::{Device, Tensor, Var};
        let (n, d) = (5, 3);
        let init: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let cfg = AdamConfig {
            lr: 0.01,
            weight_decay: 0.02,
            ..Default::default()
        };
        let var = Var::from_vec(init.clone(), (n, d), &Device::Cpu).unwrap();
        let mut dense = super::super::Adam::new(vec![var.clone()], cfg.clone()).unwrap();
        let mut lazy = LazyAdam::new(n, d, cfg);
        let mut table = init;
        for step in 0..6 {
            let g: Vec<f32> = (0..n * d)
                .map(|i| ((i * 13 + step * 5) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let gt = Tensor::from_vec(g.clone(), (n, d), &Device::Cpu).unwrap();
            let loss = (var.as_tensor() * &gt).unwrap().sum_all().unwrap();
            dense.step(&loss.backward().unwrap()).unwrap();
            // rows in another order: the order of rows does not matter
            let rows: Vec<u32> = vec![3, 0, 4, 1, 2];
            let grads: Vec<f32> = rows
                .iter()
                .flat_map(|&r| g[r as usize * d..(r as usize + 1) * d].to_vec())
                .collect();
            lazy.step(&mut table, &rows, &grads);
        }
        let want: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(table, want);
    }
}
