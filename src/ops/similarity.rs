//! Fused similarity losses over many rows, each one candle op with a hand-written backward
//! (a 4096x4096 similarity + loss + backward costs ~350 ms through candle autograd here
//! against ~120 ms hand-written, STACK.md). The big `[n, m]` matrix is never kept whole:
//! it is computed a block of rows at a time, and when the inputs are tracked (training)
//! the gradients are computed from each block while it is in cache, in the forward pass,
//! so the backward pass only hands them over (it recomputes them when they are absent).
//!
//! - [`info_nce`]: `sum_b [ -<a_b, p_b>/tau + log sum_m exp(<a_b, all_m>/tau) ]`, the
//!   InfoNCE of RLMRec-Con/Gen (inputs normalised by the caller).
//! - [`gram_mse`]: `mean_ij ((A A^T)_ij - (B B^T)_ij)^2`, DaRec's global structure
//!   alignment on normalised rows (DaRec eq. for L_g, SPEC.md section 1.4).
//! - [`uniformity`]: `log mean_{i != j} exp(-t ||x_i - x_j||^2)`, the uniformity loss of
//!   Wang & Isola (2020) used by DaRec for the specific parts (SPEC.md section 1.3).
//!
//! Each has a plain-candle reference (`*_reference`), used on non-CPU devices and in tests.

use super::dense::{a_b_into, a_bt_into, at_b_into};
use super::fastmath::{exp_shifted_sum_in_place, fast_exp, lane_max, lane_sum, vectorized};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.detach().flatten_all()?.to_vec1::<f32>()
}

fn scalar(t: &Tensor) -> Result<f32> {
    t.to_dtype(candle_core::DType::F32)?.to_vec0::<f32>()
}

fn scalar_out(v: f64) -> (CpuStorage, Shape) {
    (CpuStorage::F32(vec![v as f32]), Shape::from(()))
}

// ---------------------------------------------------------------- InfoNCE

/// InfoNCE summed over the rows of `a` (`[B, d]`) with positives `p` (`[B, d]`) and
/// candidates `all` (`[M, d]`). Pass normalised rows for the cosine form.
pub fn info_nce(a: &Tensor, p: &Tensor, all: &Tensor, tau: f64) -> Result<Tensor> {
    info_nce_weighted(a, p, all, tau, None, None)
}

/// InfoNCE over distinct rows with multiplicities: row `b` counts `rows[b]` times and
/// candidate `m` stands for `cols[m]` identical candidates, i.e. `sum_b rows_b [ -<a_b,
/// p_b>/tau + log sum_m cols_m exp(<a_b, all_m>/tau) ]`. Equal to [`info_nce`] on the
/// rows and candidates repeated, at the cost of the distinct ones only (RLMRec-Con's
/// in-batch items repeat a lot: 4096 draws from a few thousand items).
pub fn info_nce_weighted(
    a: &Tensor,
    p: &Tensor,
    all: &Tensor,
    tau: f64,
    rows: Option<Arc<Vec<f32>>>,
    cols: Option<Arc<Vec<f32>>>,
) -> Result<Tensor> {
    if rows
        .as_ref()
        .is_some_and(|r| r.len() != a.dim(0).unwrap_or(0))
        || cols
            .as_ref()
            .is_some_and(|c| c.len() != all.dim(0).unwrap_or(0))
    {
        candle_core::bail!("info-nce: weights do not match the rows or candidates");
    }
    if !a.device().is_cpu() {
        return info_nce_weighted_reference(a, p, all, tau, rows.as_deref(), cols.as_deref());
    }
    let log_cols = cols.map(|c| c.iter().map(|x| x.ln()).collect());
    a.contiguous()?.apply_op3(
        &p.contiguous()?,
        &all.contiguous()?,
        InfoNce {
            tau,
            rows,
            log_cols,
            grads_in_forward: a.track_op() || p.track_op() || all.track_op(),
            cache: Mutex::new(None),
        },
    )
}

/// Plain candle InfoNCE (reference).
pub fn info_nce_reference(a: &Tensor, p: &Tensor, all: &Tensor, tau: f64) -> Result<Tensor> {
    info_nce_weighted_reference(a, p, all, tau, None, None)
}

/// Plain candle weighted InfoNCE (reference).
pub fn info_nce_weighted_reference(
    a: &Tensor,
    p: &Tensor,
    all: &Tensor,
    tau: f64,
    rows: Option<&Vec<f32>>,
    cols: Option<&Vec<f32>>,
) -> Result<Tensor> {
    let pos = ((a * p)?.sum(1)? / tau)?;
    let mut logits = (a.matmul(&all.t()?)? / tau)?;
    if let Some(c) = cols {
        let lc = Tensor::from_slice(c, c.len(), a.device())?
            .log()?
            .unsqueeze(0)?;
        logits = logits.broadcast_add(&lc)?;
    }
    let max = logits.max_keepdim(1)?.detach();
    let lse = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + max)?.squeeze(1)?;
    let per_row = (lse - pos)?;
    match rows {
        Some(r) => (per_row * Tensor::from_slice(r, r.len(), a.device())?)?.sum_all(),
        None => per_row.sum_all(),
    }
}

struct InfoNce {
    tau: f64,
    /// Row multiplicities (`None`: all 1).
    rows: Option<Arc<Vec<f32>>>,
    /// `ln` of the candidate multiplicities, added to every row of logits.
    log_cols: Option<Vec<f32>>,
    /// Compute the gradients in the forward pass, while the softmax block is in cache,
    /// instead of recomputing the logits and exponentials in the backward pass (set when
    /// an input is tracked: training always differentiates this loss).
    grads_in_forward: bool,
    /// Gradients of the loss (upstream gradient 1) for `a`, `p`, `all`, left by the forward.
    cache: Mutex<Option<[Vec<f32>; 3]>>,
}

impl InfoNce {
    fn row_weight(&self, r: usize) -> f32 {
        self.rows.as_ref().map_or(1.0, |w| w[r])
    }
    /// Logits of rows `r0..r1` into `buf`, candidate log-multiplicities added.
    #[allow(clippy::too_many_arguments)]
    fn logits(
        &self,
        a: &[f32],
        all: &[f32],
        r0: usize,
        r1: usize,
        m: usize,
        d: usize,
        buf: &mut Vec<f32>,
    ) {
        block_a_bt(a, all, r0, r1, m, d, (1.0 / self.tau) as f32, buf);
        if let Some(lc) = &self.log_cols {
            buf.par_chunks_mut(m)
                .for_each(|row| row.iter_mut().zip(lc).for_each(|(v, c)| *v += c));
        }
    }

    /// The loss and, when asked, its gradients for `a`, `p` and `all` (upstream gradient
    /// 1), block by block over the rows: with row weights `w`, `dA = (w softmax) all / tau
    /// - w p / tau`, `dP = -w a / tau`, `dAll = (w softmax)^T a / tau`.
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &self,
        a: &[f32],
        p: &[f32],
        all: &[f32],
        b: usize,
        m: usize,
        d: usize,
        grads: bool,
    ) -> (f64, Option<[Vec<f32>; 3]>) {
        let inv_tau = (1.0 / self.tau) as f32;
        let w = |i: usize| self.row_weight(i / d);
        let (mut da, mut dall) = if grads {
            let da: Vec<f32> = p
                .iter()
                .enumerate()
                .map(|(i, x)| -inv_tau * w(i) * x)
                .collect();
            (da, vec![0f32; m * d])
        } else {
            (Vec::new(), Vec::new())
        };
        let mut buf = Vec::new();
        // per block: `E (all)` and the rows of `a` scaled by `w_r / s_r`
        let (mut e_all, mut a_scaled) = (Vec::new(), Vec::new());
        let mut total = 0f64;
        for (r0, r1) in blocks(b) {
            let rows = r1 - r0;
            self.logits(a, all, r0, r1, m, d, &mut buf);
            // `buf` now holds `E = exp(logit - row max)`; the softmax is `E_r / s_r`
            let lse = row_lse(&mut buf, m);
            total += lse
                .iter()
                .enumerate()
                .map(|(i, (v, _))| v * self.row_weight(r0 + i) as f64)
                .sum::<f64>();
            if grads {
                // The row factors `w_r / s_r` scale the small `[rows, d]` matrices on each
                // side of the two products instead of the `[rows, m]` block:
                // `dA_r += f_r (E all)_r / tau` and `dAll += E^T (f a) / tau`.
                let f: Vec<f32> = lse
                    .iter()
                    .enumerate()
                    .map(|(i, (_, s))| (self.row_weight(r0 + i) as f64 / s) as f32)
                    .collect();
                e_all.resize(rows * d, 0.0);
                a_b_into(&buf, all, rows, d, m, inv_tau, &mut e_all, false);
                let da_block = &mut da[r0 * d..r1 * d];
                for ((out, src), fr) in da_block.chunks_mut(d).zip(e_all.chunks(d)).zip(&f) {
                    out.iter_mut().zip(src).for_each(|(o, v)| *o += fr * v);
                }
                a_scaled.clear();
                for (row, fr) in a[r0 * d..r1 * d].chunks(d).zip(&f) {
                    a_scaled.extend(row.iter().map(|v| fr * v));
                }
                at_b_into(&buf, &a_scaled, m, d, rows, inv_tau, &mut dall, true);
            }
        }
        for r in 0..b {
            let pos: f32 = a[r * d..(r + 1) * d]
                .iter()
                .zip(&p[r * d..(r + 1) * d])
                .map(|(x, y)| x * y)
                .sum();
            total -= (pos * inv_tau * self.row_weight(r)) as f64;
        }
        let grads = grads.then(|| {
            let dp: Vec<f32> = a
                .iter()
                .enumerate()
                .map(|(i, x)| -inv_tau * w(i) * x)
                .collect();
            [da, dp, dall]
        });
        (total, grads)
    }
}

/// Rows of the big matrix processed at a time: the block buffer (`BLOCK x m` f32) stays
/// small and warm instead of allocating, page-faulting and streaming an `n x m` matrix.
const BLOCK: usize = 256;

fn blocks(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n.div_ceil(BLOCK)).map(move |k| (k * BLOCK, ((k + 1) * BLOCK).min(n)))
}

/// Row-wise log-sum-exp of `logits` (`[rows, m]`) and the row sums `s` of the exponentials;
/// each row is overwritten with `exp(logit - row max)`, so that its softmax is `row / s`.
fn row_lse(logits: &mut [f32], m: usize) -> Vec<(f64, f64)> {
    logits
        .par_chunks_mut(m)
        .map(|row| {
            vectorized(
                #[inline(always)]
                || {
                    let mx = lane_max(row);
                    let s = exp_shifted_sum_in_place(row, mx);
                    (mx as f64 + s.ln(), s)
                },
            )
        })
        .collect()
}

/// `out[rows, n] = scale * A[r0..r1] B^T` into a reused buffer.
fn block_a_bt(
    a: &[f32],
    b: &[f32],
    r0: usize,
    r1: usize,
    n: usize,
    k: usize,
    scale: f32,
    buf: &mut Vec<f32>,
) {
    buf.resize((r1 - r0) * n, 0.0);
    a_bt_into(&a[r0 * k..r1 * k], b, r1 - r0, n, k, scale, buf);
}

impl CustomOp3 for InfoNce {
    fn name(&self) -> &'static str {
        "info-nce"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, d) = l1.shape().dims2()?;
        let (m, d3) = l3.shape().dims2()?;
        if l2.shape().dims2()? != (b, d) || d3 != d {
            candle_core::bail!(
                "info-nce: shapes {:?} {:?} {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let (a, p, all) = (
            super::cpu_slice(s1, l1, "info-nce")?,
            super::cpu_slice(s2, l2, "info-nce")?,
            super::cpu_slice(s3, l3, "info-nce")?,
        );
        let (total, grads) = self.pass(a, p, all, b, m, d, self.grads_in_forward);
        *self.cache.lock().expect("info-nce cache") = grads;
        Ok(scalar_out(total))
    }

    fn bwd(
        &self,
        a: &Tensor,
        p: &Tensor,
        all: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = scalar(grad)?;
        let (b, d) = a.dims2()?;
        let m = all.dim(0)?;
        let cached = self.cache.lock().expect("info-nce cache").take();
        let [mut da, mut dp, mut dall] = match cached {
            Some(grads) => grads,
            None => {
                let (av, pv, allv) = (host(a)?, host(p)?, host(all)?);
                self.pass(&av, &pv, &allv, b, m, d, true).1.expect("asked")
            }
        };
        if g != 1.0 {
            for v in [&mut da, &mut dp, &mut dall] {
                v.iter_mut().for_each(|x| *x *= g);
            }
        }
        let dev = a.device();
        Ok((
            Some(Tensor::from_vec(da, (b, d), dev)?),
            Some(Tensor::from_vec(dp, (b, d), dev)?),
            Some(Tensor::from_vec(dall, (m, d), dev)?),
        ))
    }
}

// ---------------------------------------------------------------- structure MSE

/// `mean((A A^T - B B^T)^2)` for `A: [n, d]`, `B: [n, e]`.
pub fn gram_mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !a.device().is_cpu() {
        return gram_mse_reference(a, b);
    }
    let op = GramMse {
        grads_in_forward: a.track_op() || b.track_op(),
        cache: Mutex::new(None),
    };
    a.contiguous()?.apply_op2(&b.contiguous()?, op)
}

pub fn gram_mse_reference(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let sa = a.matmul(&a.t()?)?;
    let sb = b.matmul(&b.t()?)?;
    (sa - sb)?.sqr()?.mean_all()
}

struct GramMse {
    /// Compute the gradients in the forward pass, while each block of `D = AA^T - BB^T`
    /// is in cache, instead of recomputing `D` in the backward pass.
    grads_in_forward: bool,
    /// Gradients for `A` and `B` (upstream gradient 1), left by the forward.
    cache: Mutex<Option<[Vec<f32>; 2]>>,
}

impl GramMse {
    /// The loss and, when asked, its gradients: `d/dA mean D^2 = 4 D A / n^2` (D symmetric)
    /// and `d/dB = -4 D B / n^2`.
    fn pass(
        &self,
        a: &[f32],
        b: &[f32],
        n: usize,
        d: usize,
        e: usize,
        grads: bool,
    ) -> (f64, Option<[Vec<f32>; 2]>) {
        let c = 4.0 / (n * n) as f32;
        let (mut da, mut db) = if grads {
            (vec![0f32; n * d], vec![0f32; n * e])
        } else {
            (Vec::new(), Vec::new())
        };
        let (mut diff, mut sb) = (Vec::new(), Vec::new());
        let mut total = 0f64;
        for (r0, r1) in blocks(n) {
            block_a_bt(a, a, r0, r1, n, d, 1.0, &mut diff);
            block_a_bt(b, b, r0, r1, n, e, 1.0, &mut sb);
            total += diff
                .par_chunks_mut(n)
                .zip(sb.par_chunks(n))
                .map(|(x, y)| {
                    x.iter_mut().zip(y).for_each(|(u, v)| *u -= v);
                    let sq: Vec<f32> = x.iter().map(|u| u * u).collect();
                    lane_sum(&sq)
                })
                .collect::<Vec<f64>>() // added in row order: the same bits on every run
                .iter()
                .sum::<f64>();
            if grads {
                let rows = r1 - r0;
                a_b_into(&diff, a, rows, d, n, c, &mut da[r0 * d..r1 * d], false);
                a_b_into(&diff, b, rows, e, n, -c, &mut db[r0 * e..r1 * e], false);
            }
        }
        (total / (n * n) as f64, grads.then_some([da, db]))
    }
}

impl CustomOp2 for GramMse {
    fn name(&self) -> &'static str {
        "gram-mse"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        let (n2, e) = l2.shape().dims2()?;
        if n != n2 || n == 0 {
            candle_core::bail!("gram-mse: row counts {n} and {n2} differ or are zero");
        }
        let (a, b) = (
            super::cpu_slice(s1, l1, "gram-mse")?,
            super::cpu_slice(s2, l2, "gram-mse")?,
        );
        let (loss, grads) = self.pass(a, b, n, d, e, self.grads_in_forward);
        *self.cache.lock().expect("gram-mse cache") = grads;
        Ok(scalar_out(loss))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = scalar(grad)?;
        let (n, d) = a.dims2()?;
        let e = b.dim(1)?;
        let cached = self.cache.lock().expect("gram-mse cache").take();
        let [mut da, mut db] = match cached {
            Some(grads) => grads,
            None => self
                .pass(&host(a)?, &host(b)?, n, d, e, true)
                .1
                .expect("asked"),
        };
        if g != 1.0 {
            for v in [&mut da, &mut db] {
                v.iter_mut().for_each(|x| *x *= g);
            }
        }
        Ok((
            Some(Tensor::from_vec(da, (n, d), a.device())?),
            Some(Tensor::from_vec(db, (n, e), a.device())?),
        ))
    }
}

// ---------------------------------------------------------------- uniformity

/// `log mean_{i != j} exp(-t ||x_i - x_j||^2)` over the rows of `x` (`[n, d]`, n >= 2).
pub fn uniformity(x: &Tensor, t: f64) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return uniformity_reference(x, t);
    }
    let op = Uniformity {
        t,
        grads_in_forward: x.track_op(),
        cache: Mutex::new(None),
    };
    x.contiguous()?.apply_op1(op)
}

pub fn uniformity_reference(x: &Tensor, t: f64) -> Result<Tensor> {
    let n = x.dim(0)?;
    let sq = x.sqr()?.sum_keepdim(1)?;
    let g = x.matmul(&x.t()?)?;
    let dist = (sq.broadcast_add(&sq.t()?)? - (g * 2.0)?)?.relu()?;
    let e = (dist * (-t))?.exp()?;
    let eye = Tensor::eye(n, e.dtype(), e.device())?;
    let off_diag = (e * (1.0 - eye)?)?.sum_all()?;
    (off_diag / (n * (n - 1)) as f64)?.log()
}

struct Uniformity {
    t: f64,
    /// Compute the gradient in the forward pass, while each kernel block is in cache,
    /// instead of recomputing the kernel in the backward pass.
    grads_in_forward: bool,
    /// Gradient for `x` (upstream gradient 1), left by the forward.
    cache: Mutex<Option<Vec<f32>>>,
}

/// Rows `r0..r1` of `E_ij = exp(-t max(0, |x_i|^2 + |x_j|^2 - 2 x_i.x_j))` with a zero
/// diagonal, into `buf`.
#[allow(clippy::too_many_arguments)]
fn kernel_block(
    x: &[f32],
    sq: &[f32],
    r0: usize,
    r1: usize,
    n: usize,
    d: usize,
    t: f32,
    buf: &mut Vec<f32>,
) {
    block_a_bt(x, x, r0, r1, n, d, 1.0, buf);
    buf.par_chunks_mut(n).enumerate().for_each(|(k, row)| {
        let i = r0 + k;
        let si = sq[i];
        vectorized(
            #[inline(always)]
            || {
                for (v, &sj) in row.iter_mut().zip(sq) {
                    *v = fast_exp(-t * (si + sj - 2.0 * *v).max(0.0));
                }
            },
        );
        row[i] = 0.0;
    });
}

fn squared_norms(x: &[f32], n: usize, d: usize) -> Vec<f32> {
    (0..n)
        .map(|i| x[i * d..(i + 1) * d].iter().map(|v| v * v).sum())
        .collect()
}

impl Uniformity {
    /// The loss and, when asked, its gradient
    /// `dL/dx_i = (-4t/Q) [ rowsum_i(E) x_i - (E X)_i ]` with `Q = sum_ij E_ij`: the
    /// bracket is accumulated block by block and scaled once `Q` is known.
    fn pass(&self, x: &[f32], n: usize, d: usize, grads: bool) -> (f64, Option<Vec<f32>>) {
        let sq = squared_norms(x, n, d);
        let mut buf = Vec::new();
        let mut q = 0f64;
        let mut dx = if grads { vec![0f32; n * d] } else { Vec::new() };
        for (r0, r1) in blocks(n) {
            kernel_block(x, &sq, r0, r1, n, d, self.t as f32, &mut buf);
            // collected, then added in row order: the same bits however rayon splits
            let rows: Vec<f64> = buf.par_chunks(n).map(lane_sum).collect();
            q += rows.iter().sum::<f64>();
            if grads {
                let out = &mut dx[r0 * d..r1 * d];
                a_b_into(&buf, x, r1 - r0, d, n, -1.0, out, false);
                for (k, rs) in rows.iter().enumerate() {
                    let (ri, xi) = (*rs as f32, &x[(r0 + k) * d..(r0 + k + 1) * d]);
                    for (o, v) in out[k * d..(k + 1) * d].iter_mut().zip(xi) {
                        *o += ri * v;
                    }
                }
            }
        }
        let c = (-4.0 * self.t / q) as f32;
        dx.iter_mut().for_each(|v| *v *= c);
        ((q / (n * (n - 1)) as f64).ln(), grads.then_some(dx))
    }
}

impl CustomOp1 for Uniformity {
    fn name(&self) -> &'static str {
        "uniformity"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l.shape().dims2()?;
        if n < 2 {
            candle_core::bail!("uniformity: needs at least 2 rows, got {n}");
        }
        let x = super::cpu_slice(s, l, "uniformity")?;
        let (loss, grads) = self.pass(x, n, d, self.grads_in_forward);
        *self.cache.lock().expect("uniformity cache") = grads;
        Ok(scalar_out(loss))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = scalar(grad)?;
        let (n, d) = x.dims2()?;
        let cached = self.cache.lock().expect("uniformity cache").take();
        let mut dx = match cached {
            Some(dx) => dx,
            None => self.pass(&host(x)?, n, d, true).1.expect("asked"),
        };
        if g != 1.0 {
            dx.iter_mut().for_each(|v| *v *= g);
        }
        Ok(Some(Tensor::from_vec(dx, (n, d), x.device())?))
    }
}

// ---------------------------------------------------------------- variance floor

/// VICReg's variance term (Bardes et al., ICLR 2022): `mean_j max(0, gamma - std_j)` with
/// `std_j = sqrt(var_j + 1e-4)` the population standard deviation of column `j` of `x`
/// (`[n, d]`). Zero while every dimension spreads at least `gamma`; it rises as the rows
/// collapse onto one point (issue 13, item 3). Gradients by autograd (the centring is the
/// fused [`super::rowwise::centre`]).
pub fn variance_floor(x: &Tensor, gamma: f64) -> Result<Tensor> {
    let centred = super::rowwise::centre(x)?;
    let std = (centred.sqr()?.mean(0)? + 1e-4)?.sqrt()?;
    (std.neg()? + gamma)?.relu()?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::assert_finite_differences;
    use candle_core::{Device, Var};

    fn var(rows: usize, cols: usize, seed: usize) -> Var {
        crate::ops::testing::var(rows, cols, seed, 1.0)
    }

    /// Fused op and reference agree in value and in every input's gradient.
    fn check_against_reference(vars: &[&Var], fused: &Tensor, reference: &Tensor) {
        let (f, r) = (
            fused.to_scalar::<f32>().unwrap(),
            reference.to_scalar::<f32>().unwrap(),
        );
        assert!((f - r).abs() < 1e-4 * (1.0 + r.abs()), "value {f} vs {r}");
        let gf = fused.backward().unwrap();
        let gr = reference.backward().unwrap();
        crate::ops::testing::assert_same_gradients(&gf, &gr, vars, 1e-4);
    }

    /// The gradients left by the forward (first backward) and the recomputed ones (a
    /// second backward of the same graph finds the cache taken) both match the reference,
    /// under an upstream gradient other than 1.
    #[test]
    fn info_nce_gradients_from_forward_and_recomputed_agree() {
        let (a, p, all) = (var(6, 4, 1), var(6, 4, 5), var(9, 4, 9));
        let rows = Some(Arc::new(vec![1.0, 2.0, 1.0, 3.0, 1.0, 1.0]));
        let fused = (info_nce_weighted(
            a.as_tensor(),
            p.as_tensor(),
            all.as_tensor(),
            0.3,
            rows.clone(),
            None,
        )
        .unwrap()
            * 2.5)
            .unwrap();
        let reference = (info_nce_weighted_reference(
            a.as_tensor(),
            p.as_tensor(),
            all.as_tensor(),
            0.3,
            rows.as_deref(),
            None,
        )
        .unwrap()
            * 2.5)
            .unwrap();
        let gr = reference.backward().unwrap();
        for _ in 0..2 {
            let gf = fused.backward().unwrap();
            crate::ops::testing::assert_same_gradients(&gf, &gr, &[&a, &p, &all], 1e-4);
        }
    }

    #[test]
    fn info_nce_matches_reference_and_hand_value() {
        let (a, p, all) = (var(5, 3, 0), var(5, 3, 11), var(7, 3, 23));
        let f = info_nce(a.as_tensor(), p.as_tensor(), all.as_tensor(), 0.5).unwrap();
        let r = info_nce_reference(a.as_tensor(), p.as_tensor(), all.as_tensor(), 0.5).unwrap();
        check_against_reference(&[&a, &p, &all], &f, &r);
        // one anchor a=(1,0), positive (1,0), candidates (1,0),(0,1), tau=1:
        // -1 + log(e^1 + e^0) = -1 + 1.3132617 = 0.3132617
        let dev = Device::Cpu;
        let a1 = Tensor::new(&[[1f32, 0.]], &dev).unwrap();
        let all1 = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
        let v = info_nce(&a1, &a1, &all1, 1.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((v - 0.3132617).abs() < 1e-6, "{v}");
    }

    #[test]
    fn info_nce_accumulates_when_positive_and_candidates_are_one_tensor() {
        let (a, p) = (var(4, 3, 1), var(4, 3, 5));
        let f = info_nce(a.as_tensor(), p.as_tensor(), p.as_tensor(), 0.2).unwrap();
        let r = info_nce_reference(a.as_tensor(), p.as_tensor(), p.as_tensor(), 0.2).unwrap();
        check_against_reference(&[&a, &p], &f, &r);
    }

    /// Weighted distinct rows equal the loss on the rows actually repeated, in value and in
    /// gradient (the repeated rows' gradients summed), across row blocks.
    #[test]
    fn weighted_info_nce_equals_repeated_rows() {
        let (a, p, all) = (var(300, 3, 2), var(300, 3, 4), var(9, 3, 6));
        let row_counts: Vec<f32> = (0..300).map(|i| (i % 3 + 1) as f32).collect();
        let col_counts: Vec<f32> = (0..9).map(|i| (i % 4 + 1) as f32).collect();
        let rep = |t: &Tensor, counts: &[f32]| {
            let idx: Vec<u32> = counts
                .iter()
                .enumerate()
                .flat_map(|(i, &c)| std::iter::repeat_n(i as u32, c as usize))
                .collect();
            t.index_select(&Tensor::new(idx.as_slice(), &Device::Cpu).unwrap(), 0)
                .unwrap()
        };
        let (ra, rp) = (
            rep(a.as_tensor(), &row_counts),
            rep(p.as_tensor(), &row_counts),
        );
        let rall = rep(all.as_tensor(), &col_counts);
        let repeated = info_nce(&ra, &rp, &rall, 0.4).unwrap();
        let (rows, cols) = (Arc::new(row_counts.clone()), Arc::new(col_counts.clone()));
        let w = info_nce_weighted(
            a.as_tensor(),
            p.as_tensor(),
            all.as_tensor(),
            0.4,
            Some(rows.clone()),
            Some(cols.clone()),
        )
        .unwrap();
        check_against_reference(&[&a, &p, &all], &w, &repeated);
        let wr = info_nce_weighted_reference(
            a.as_tensor(),
            p.as_tensor(),
            all.as_tensor(),
            0.4,
            Some(&rows),
            Some(&cols),
        )
        .unwrap();
        let (x, y) = (
            w.to_scalar::<f32>().unwrap(),
            wr.to_scalar::<f32>().unwrap(),
        );
        assert!(
            (x - y).abs() < 1e-4 * (1.0 + y.abs()),
            "{x} vs reference {y}"
        );
    }

    /// Sizes above one row block (`BLOCK` = 256) exercise the blocked loops.
    #[test]
    fn multi_block_sizes_match_the_reference() {
        let (a, p, all) = (var(600, 4, 7), var(600, 4, 8), var(530, 4, 9));
        let f = info_nce(a.as_tensor(), p.as_tensor(), all.as_tensor(), 0.3).unwrap();
        let r = info_nce_reference(a.as_tensor(), p.as_tensor(), all.as_tensor(), 0.3).unwrap();
        check_against_reference(&[&a, &p, &all], &f, &r);
        let (x, y) = (var(520, 3, 10), var(520, 5, 11));
        let f = gram_mse(x.as_tensor(), y.as_tensor()).unwrap();
        let r = gram_mse_reference(x.as_tensor(), y.as_tensor()).unwrap();
        check_against_reference(&[&x, &y], &f, &r);
        let f = uniformity(x.as_tensor(), 2.0).unwrap();
        let r = uniformity_reference(x.as_tensor(), 2.0).unwrap();
        check_against_reference(&[&x], &f, &r);
    }

    /// The first backward hands over the gradients the forward computed, a second one
    /// recomputes them (the cache is taken): both equal the reference's, scaled.
    #[test]
    fn structure_and_uniformity_gradients_from_forward_and_recomputed_agree() {
        let (a, b) = (var(300, 3, 2), var(300, 5, 9)); // more rows than one block
        let fused = (gram_mse(a.as_tensor(), b.as_tensor()).unwrap() * 2.5).unwrap();
        let reference = (gram_mse_reference(a.as_tensor(), b.as_tensor()).unwrap() * 2.5).unwrap();
        let x = var(300, 4, 3);
        let fused_u = (uniformity(x.as_tensor(), 2.0).unwrap() * 0.7).unwrap();
        let reference_u = (uniformity_reference(x.as_tensor(), 2.0).unwrap() * 0.7).unwrap();
        for (fused, reference, vars) in [
            (&fused, &reference, vec![&a, &b]),
            (&fused_u, &reference_u, vec![&x]),
        ] {
            let gr = reference.backward().unwrap();
            for _ in 0..2 {
                let gf = fused.backward().unwrap();
                for v in &vars {
                    let d = crate::ops::max_abs_diff(
                        gf.get(v.as_tensor()).unwrap(),
                        gr.get(v.as_tensor()).unwrap(),
                    );
                    assert!(d < 1e-5, "gradient differs by {d}");
                }
            }
        }
    }

    #[test]
    fn gram_mse_matches_reference_and_hand_value() {
        let (a, b) = (var(6, 3, 2), var(6, 5, 9));
        let f = gram_mse(a.as_tensor(), b.as_tensor()).unwrap();
        let r = gram_mse_reference(a.as_tensor(), b.as_tensor()).unwrap();
        check_against_reference(&[&a, &b], &f, &r);
        // A = [[1,0],[0,1]] -> I ; B = [[1,0],[1,0]] -> all ones ; diff = [[0,-1],[-1,0]] ; mean sq = 2/4
        let dev = Device::Cpu;
        let a1 = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
        let b1 = Tensor::new(&[[1f32, 0.], [1., 0.]], &dev).unwrap();
        assert!((gram_mse(&a1, &b1).unwrap().to_scalar::<f32>().unwrap() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn uniformity_matches_reference_hand_value_and_finite_differences() {
        let x = var(6, 4, 3);
        let f = uniformity(x.as_tensor(), 2.0).unwrap();
        let r = uniformity_reference(x.as_tensor(), 2.0).unwrap();
        check_against_reference(&[&x], &f, &r);
        // two orthogonal unit vectors: ||x1-x2||^2 = 2 -> log(exp(-4)) = -4
        let dev = Device::Cpu;
        let o = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
        assert!((uniformity(&o, 2.0).unwrap().to_scalar::<f32>().unwrap() + 4.0).abs() < 1e-5);
        // finite differences on the fused op alone
        assert_finite_differences(|t| uniformity(t, 2.0).unwrap(), &x, &[0, 5, 13, 23], 2e-3);
    }

    /// Hand value: columns with variance 1 and 0 against gamma 0.5 give
    /// `(max(0, 0.5 - 1.00005) + max(0, 0.5 - 0.01)) / 2 = 0.245`; gradient against finite
    /// differences where the hinge is active.
    #[test]
    fn variance_floor_hand_value_and_finite_differences() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 0.], [-1., 0.]], &dev).unwrap();
        let v = variance_floor(&x, 0.5).unwrap().to_scalar::<f32>().unwrap();
        assert!((v - 0.245).abs() < 1e-5, "{v}");
        // every column spread beyond gamma: no cost
        assert_eq!(
            variance_floor(&x, 0.005)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let y = var(9, 3, 2);
        let small = Var::from_tensor(&(y.as_tensor() * 0.1).unwrap()).unwrap();
        assert_finite_differences(
            |t| variance_floor(t, 1.0).unwrap(),
            &small,
            &[0, 7, 13, 26],
            2e-3,
        );
    }
}
