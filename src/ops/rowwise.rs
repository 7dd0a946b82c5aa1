//! Row- and column-wise maps of a `[n, d]` block as single candle ops with hand-written
//! backward passes: the views DaRec's terms take of the shared and specific parts
//! (SPEC.md section 1.3-1.4), and the row normalisation of every contrastive term.
//!
//! Built from plain candle ops, each of these is four to six ops with broadcasts, and
//! their backward passes meet transposed or broadcast gradients that candle's CPU backend
//! walks element by element: at DaRec's `N_hat = 4096`, `d = 32` the orthogonality term
//! took ~8 ms and the normalised global term ~13 ms a step, against ~0.5 ms of
//! arithmetic (`examples/darec_term_ops.rs`).
//!
//! - [`l2_normalize`]: `x_i / sqrt(eps + |x_i|^2)` (RLMRec's form, eps 1e-8).
//! - [`centre`]: `x_i - mean_j x_j` (issue 13's `centred` view).
//! - [`mean_cos_sq`]: `mean_i cos(a_i, b_i)^2`, DaRec's orthogonality term between the
//!   shared and the specific part of each node.
//! - [`softmax_rows`]: the softmax of each row, DCCF's intent weights `softmax(E W)` over
//!   128 intents for every node of every layer (candle's `softmax_last_dim` has no
//!   backward, and the composed form is five ops with broadcasts).
//!
//! Each has a plain-candle reference (`*_reference`), used on non-CPU devices and in tests.

use super::fastmath::{exp_shifted_sum_in_place, lane_max, vectorized};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// The normalisation's `eps` under the square root (RLMRec's `F.normalize` analogue).
const EPS: f32 = 1e-8;

/// Rows handled by one parallel task.
const ROWS_PER_TASK: usize = 256;

/// `1 / sqrt(eps + |row|^2)`.
fn inv_norm(row: &[f32]) -> f32 {
    1.0 / (EPS + row.iter().map(|v| v * v).sum::<f32>()).sqrt()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The f32 data of `t` (a copy when it is not a contiguous CPU tensor).
fn host(t: &Tensor) -> Result<Vec<f32>> {
    super::with_host_slice(t, |s| s.to_vec())
}

// ---------------------------------------------------------------- L2 normalisation

/// Rows scaled to unit L2 norm, `x / sqrt(eps + |x|^2)`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.rank() != 2 {
        return l2_normalize_reference(x);
    }
    x.contiguous()?.apply_op1(L2Normalize)
}

pub fn l2_normalize_reference(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + EPS as f64)?.sqrt()?)
}

struct L2Normalize;

impl CustomOp1 for L2Normalize {
    fn name(&self) -> &'static str {
        "l2-normalize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, d) = l.shape().dims2()?;
        let x = super::cpu_slice(s, l, "l2-normalize")?;
        let mut y = x.to_vec();
        if d > 0 {
            y.par_chunks_mut(d * ROWS_PER_TASK).for_each(|rows| {
                for row in rows.chunks_mut(d) {
                    let inv = inv_norm(row);
                    row.iter_mut().for_each(|v| *v *= inv);
                }
            });
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// `dx = (g - y (g . y)) / sqrt(eps + |x|^2)` row by row.
    fn bwd(&self, x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, d) = x.dims2()?;
        let (xv, yv, mut g) = (host(x)?, host(y)?, host(grad)?);
        if d > 0 {
            g.par_chunks_mut(d * ROWS_PER_TASK)
                .zip(xv.par_chunks(d * ROWS_PER_TASK))
                .zip(yv.par_chunks(d * ROWS_PER_TASK))
                .for_each(|((gs, xs), ys)| {
                    for ((g, x), y) in gs.chunks_mut(d).zip(xs.chunks(d)).zip(ys.chunks(d)) {
                        let (inv, gy) = (inv_norm(x), dot(g, y));
                        g.iter_mut()
                            .zip(y)
                            .for_each(|(g, y)| *g = (*g - y * gy) * inv);
                    }
                });
        }
        Ok(Some(Tensor::from_vec(g, x.shape(), x.device())?))
    }
}

// ---------------------------------------------------------------- centring

/// `x` minus its mean row (`[n, d]`).
pub fn centre(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.rank() != 2 {
        return centre_reference(x);
    }
    x.contiguous()?.apply_op1(Centre)
}

pub fn centre_reference(x: &Tensor) -> Result<Tensor> {
    x.broadcast_sub(&x.mean_keepdim(0)?)
}

/// `v` minus the mean of its rows, in place (sums in f64, rows in order: the same bits on
/// every run).
fn subtract_mean_row(v: &mut [f32], d: usize) {
    let n = v.len().checked_div(d).unwrap_or(0);
    if n == 0 {
        return;
    }
    let mut mean = vec![0f64; d];
    for row in v.chunks(d) {
        mean.iter_mut().zip(row).for_each(|(m, x)| *m += *x as f64);
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
    v.par_chunks_mut(d * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_mut(d) {
            row.iter_mut().zip(&mean).for_each(|(x, m)| *x -= m);
        }
    });
}

struct Centre;

impl CustomOp1 for Centre {
    fn name(&self) -> &'static str {
        "centre"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, d) = l.shape().dims2()?;
        let mut y = super::cpu_slice(s, l, "centre")?.to_vec();
        subtract_mean_row(&mut y, d);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// Centring is a symmetric projection: `dx = g - mean_row(g)`.
    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, d) = x.dims2()?;
        let mut g = host(grad)?;
        subtract_mean_row(&mut g, d);
        Ok(Some(Tensor::from_vec(g, x.shape(), x.device())?))
    }
}

// ---------------------------------------------------------------- softmax

/// The softmax of each row of `x` (`[n, k]`).
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.rank() != 2 {
        return softmax_rows_reference(x);
    }
    x.contiguous()?.apply_op1(SoftmaxRows)
}

pub fn softmax_rows_reference(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

struct SoftmaxRows;

impl CustomOp1 for SoftmaxRows {
    fn name(&self) -> &'static str {
        "softmax-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, k) = l.shape().dims2()?;
        let mut y = super::cpu_slice(s, l, "softmax-rows")?.to_vec();
        if k > 0 {
            y.par_chunks_mut(k * ROWS_PER_TASK).for_each(|rows| {
                for row in rows.chunks_mut(k) {
                    vectorized(
                        #[inline(always)]
                        || {
                            let mx = lane_max(row);
                            let inv = (1.0 / exp_shifted_sum_in_place(row, mx)) as f32;
                            row.iter_mut().for_each(|v| *v *= inv);
                        },
                    )
                }
            });
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// `dx = y (g - g . y)` row by row.
    fn bwd(&self, x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, k) = x.dims2()?;
        let (yv, mut g) = (host(y)?, host(grad)?);
        if k > 0 {
            g.par_chunks_mut(k * ROWS_PER_TASK)
                .zip(yv.par_chunks(k * ROWS_PER_TASK))
                .for_each(|(gs, ys)| {
                    for (g, y) in gs.chunks_mut(k).zip(ys.chunks(k)) {
                        let gy = dot(g, y);
                        g.iter_mut().zip(y).for_each(|(g, y)| *g = y * (*g - gy));
                    }
                });
        }
        Ok(Some(Tensor::from_vec(g, x.shape(), x.device())?))
    }
}

// ---------------------------------------------------------------- orthogonality

/// `mean_i cos(a_i, b_i)^2` over the rows of `a` and `b` (`[n, d]`, n >= 1), each row
/// normalised as [`l2_normalize`] does.
pub fn mean_cos_sq(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !a.device().is_cpu() {
        return mean_cos_sq_reference(a, b);
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, MeanCosSq)
}

pub fn mean_cos_sq_reference(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (l2_normalize_reference(a)? * l2_normalize_reference(b)?)?
        .sum(1)?
        .sqr()?
        .mean_all()
}

struct MeanCosSq;

/// Per row: `(cos, 1/|a|, 1/|b|)` with `cos = a.b / (|a| |b|)` (norms with eps).
fn cosines(a: &[f32], b: &[f32], d: usize) -> Vec<(f32, f32, f32)> {
    a.par_chunks(d)
        .zip(b.par_chunks(d))
        .map(|(x, y)| {
            let (ia, ib) = (inv_norm(x), inv_norm(y));
            (dot(x, y) * ia * ib, ia, ib)
        })
        .collect()
}

impl CustomOp2 for MeanCosSq {
    fn name(&self) -> &'static str {
        "mean-cos-sq"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        if l2.shape().dims2()? != (n, d) || n == 0 || d == 0 {
            candle_core::bail!(
                "mean-cos-sq: shapes {:?} and {:?} must be equal and non-empty",
                l1.shape(),
                l2.shape()
            );
        }
        let (a, b) = (
            super::cpu_slice(s1, l1, "mean-cos-sq")?,
            super::cpu_slice(s2, l2, "mean-cos-sq")?,
        );
        // summed in row order in f64: the same bits on every run
        let total: f64 = cosines(a, b, d).iter().map(|c| (c.0 as f64).powi(2)).sum();
        Ok((
            CpuStorage::F32(vec![(total / n as f64) as f32]),
            Shape::from(()),
        ))
    }

    /// With `c = a.b |a|^-1 |b|^-1`: `d c^2 / da = 2c (b / (|a||b|) - c a / |a|^2)`, and
    /// symmetrically for `b`; each row's gradient is divided by `n` (the mean).
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = a.dims2()?;
        let g = grad.to_dtype(candle_core::DType::F32)?.to_vec0::<f32>()?;
        let (av, bv) = (host(a)?, host(b)?);
        let cos = cosines(&av, &bv, d);
        let scale = 2.0 * g / n as f32;
        let mut da = vec![0f32; n * d];
        let mut db = vec![0f32; n * d];
        da.par_chunks_mut(d)
            .zip(db.par_chunks_mut(d))
            .zip(av.par_chunks(d).zip(bv.par_chunks(d)))
            .zip(cos.par_iter())
            .for_each(|(((ga, gb), (x, y)), &(c, ia, ib))| {
                let k = scale * c;
                for j in 0..d {
                    ga[j] = k * (y[j] * ia * ib - c * x[j] * ia * ia);
                    gb[j] = k * (x[j] * ia * ib - c * y[j] * ib * ib);
                }
            });
        Ok((
            Some(Tensor::from_vec(da, (n, d), a.device())?),
            Some(Tensor::from_vec(db, (n, d), b.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_finite_differences, assert_same_gradients, var};
    use candle_core::{Device, Var};

    /// The fused op and its reference agree in value and gradient under a non-uniform
    /// upstream gradient (`w`, so the backward's use of `g` is exercised).
    fn check_map(f: impl Fn(&Tensor) -> Tensor, r: impl Fn(&Tensor) -> Tensor, x: &Var) {
        let w = var(x.dim(0).unwrap(), x.dim(1).unwrap(), 17, 1.0);
        let (fy, ry) = (f(x.as_tensor()), r(x.as_tensor()));
        assert!(crate::ops::max_abs_diff(&fy, &ry) < 1e-6);
        let fl = (fy * w.as_tensor()).unwrap().sum_all().unwrap();
        let rl = (ry * w.as_tensor()).unwrap().sum_all().unwrap();
        assert_same_gradients(&fl.backward().unwrap(), &rl.backward().unwrap(), &[x], 1e-5);
    }

    #[test]
    fn l2_normalize_matches_reference_and_hand_value() {
        // more rows than one task
        let x = var(600, 5, 3, 1.0);
        check_map(
            |t| l2_normalize(t).unwrap(),
            |t| l2_normalize_reference(t).unwrap(),
            &x,
        );
        let y = l2_normalize(&Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((y[0][0] - 0.6).abs() < 1e-6 && (y[0][1] - 0.8).abs() < 1e-6);
        assert_eq!(y[1], vec![0.0, 0.0]);
        // a zero row stays zero and its gradient is finite
        let z = Var::from_vec(vec![0f32, 0.], (1, 2), &Device::Cpu).unwrap();
        let g = l2_normalize(z.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = g.get(z.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert!(g[0].iter().all(|v| v.is_finite()), "{g:?}");
    }

    #[test]
    fn centre_matches_reference_and_hand_value() {
        let x = var(600, 4, 5, 2.0);
        check_map(|t| centre(t).unwrap(), |t| centre_reference(t).unwrap(), &x);
        let y = centre(&Tensor::new(&[[1f32, 2.], [3., 6.]], &Device::Cpu).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(y, vec![vec![-1.0, -2.0], vec![1.0, 2.0]]);
    }

    #[test]
    fn mean_cos_sq_matches_reference_hand_value_and_finite_differences() {
        let (a, b) = (var(300, 6, 2, 1.0), var(300, 6, 11, 1.0));
        let f = (mean_cos_sq(a.as_tensor(), b.as_tensor()).unwrap() * 1.7).unwrap();
        let r = (mean_cos_sq_reference(a.as_tensor(), b.as_tensor()).unwrap() * 1.7).unwrap();
        let (fv, rv) = (f.to_scalar::<f32>().unwrap(), r.to_scalar::<f32>().unwrap());
        assert!((fv - rv).abs() < 1e-6, "{fv} vs {rv}");
        assert_same_gradients(
            &f.backward().unwrap(),
            &r.backward().unwrap(),
            &[&a, &b],
            1e-5,
        );
        // rows: (1,0)·(1,1)/sqrt2 -> cos^2 0.5 ; (0,2)·(3,0) -> 0 ; mean 0.25
        let dev = Device::Cpu;
        let h = mean_cos_sq(
            &Tensor::new(&[[1f32, 0.], [0., 2.]], &dev).unwrap(),
            &Tensor::new(&[[1f32, 1.], [3., 0.]], &dev).unwrap(),
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        assert!((h - 0.25).abs() < 1e-6, "{h}");
        let (a, b) = (var(5, 3, 1, 1.0), var(5, 3, 7, 1.0));
        assert_finite_differences(
            |t| mean_cos_sq(t, b.as_tensor()).unwrap(),
            &a,
            &[0, 4, 8, 14],
            2e-3,
        );
    }

    #[test]
    fn softmax_rows_matches_reference_hand_value_and_large_logits() {
        let x = var(600, 7, 4, 3.0);
        check_map(
            |t| softmax_rows(t).unwrap(),
            |t| softmax_rows_reference(t).unwrap(),
            &x,
        );
        let dev = Device::Cpu;
        let y = softmax_rows(&Tensor::new(&[[0f32, 3f32.ln()], [1000., 0.]], &dev).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!(
            (y[0][0] - 0.25).abs() < 1e-6 && (y[0][1] - 0.75).abs() < 1e-6,
            "{y:?}"
        );
        // no overflow; below e^-87 the exponential is clamped there
        assert!(y[1][0] == 1.0 && y[1][1] < 1e-37, "{y:?}");
        let w = var(5, 4, 9, 1.0);
        let x = var(5, 4, 2, 1.0);
        assert_finite_differences(
            |t| {
                (softmax_rows(t).unwrap() * w.as_tensor())
                    .unwrap()
                    .sum_all()
                    .unwrap()
            },
            &x,
            &[0, 3, 9, 18],
            2e-3,
        );
    }

    /// A NaN row gives a NaN value and gradient there, and the op returns.
    #[test]
    fn nan_rows_propagate_and_terminate() {
        let x = Var::from_vec(vec![f32::NAN, 1.0, 2.0, 3.0], (2, 2), &Device::Cpu).unwrap();
        let y = l2_normalize(x.as_tensor())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!(y[0][0].is_nan() && !y[1][0].is_nan());
        let l = mean_cos_sq(x.as_tensor(), &centre(x.as_tensor()).unwrap()).unwrap();
        assert!(l.to_scalar::<f32>().unwrap().is_nan());
        l.backward().unwrap();
        // the softmax returns too (`fast_exp` clamps, so a NaN logit gets a weight near 0;
        // the NaN still reaches the loss through the other terms of the step)
        let s = softmax_rows(x.as_tensor()).unwrap();
        let sv = s.to_vec2::<f32>().unwrap();
        assert!((sv[1][0] + sv[1][1] - 1.0).abs() < 1e-6, "{sv:?}");
        s.sum_all().unwrap().backward().unwrap();
    }
}
