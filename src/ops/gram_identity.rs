//! DaRec's global structure term (SPEC.md section 1.4, `L_g`) through the Gram identity
//! `||A A^T - B B^T||_F^2 = ||A^T A||_F^2 - 2 ||A^T B||_F^2 + ||B^T B||_F^2` (issue 13,
//! item 8), as one candle op with a hand-written backward:
//! `d/dA = 4 (A A^T A - B B^T A) / n^2 = 4 (A G_aa - B G_ab^T) / n^2` and
//! `d/dB = 4 (B G_bb - A G_ab) / n^2`, with `G_xy = X^T Y` (`d x e`, small).
//!
//! The value costs three `d x e` products over the `n` rows, `O(n d^2)` against the direct
//! form's `O(n^2 d)`, and the gradient two more. Written with candle's autograd the same
//! term took ~5.5 ms forward and backward at `n = 4096, d = 32` (its backward meets the
//! transposed products through strided element-wise passes), and ~13 ms behind two
//! normalisations; this op takes a fraction of a millisecond (`examples/darec_term_ops.rs`).

use super::dense::{a_b_into, a_bt_into, at_b_into};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `mean((A A^T - B B^T)^2)` for `A: [n, d]`, `B: [n, e]`, through the identity. The small
/// products are squared and summed in f64 (the three terms are of order `n^2 / d` and
/// their difference can be far smaller).
pub fn gram_mse_identity(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let n = a.dim(0)?;
    if b.dim(0)? != n {
        candle_core::bail!("gram_mse_identity: {n} rows against {}", b.dim(0)?);
    }
    if !a.device().is_cpu() {
        return gram_mse_identity_reference(a, b);
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, GramIdentity)
}

/// The same identity from plain candle ops, gradients by autograd (reference and non-CPU
/// devices).
pub fn gram_mse_identity_reference(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let n = a.dim(0)?;
    let sq = |x: &Tensor, y: &Tensor| -> Result<Tensor> {
        x.t()?
            .matmul(y)?
            .to_dtype(candle_core::DType::F64)?
            .sqr()?
            .sum_all()
    };
    let total = ((sq(a, a)? + sq(b, b)?)? - (sq(a, b)? * 2.0)?)?;
    (total / (n as f64 * n as f64).max(1.0))?.to_dtype(a.dtype())
}

struct GramIdentity;

/// `X^T Y` (`[d, e]`) for `X: [n, d]`, `Y: [n, e]`.
fn xt_y(x: &[f32], y: &[f32], n: usize, d: usize, e: usize) -> Vec<f32> {
    let mut out = vec![0f32; d * e];
    at_b_into(x, y, d, e, n, 1.0, &mut out, false);
    out
}

fn sum_sq(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64) * (*x as f64)).sum()
}

/// `1 / n^2`, and 1 for an empty block (the reference's `max(1)`).
fn inv_n2(n: usize) -> f64 {
    1.0 / (n as f64 * n as f64).max(1.0)
}

impl CustomOp2 for GramIdentity {
    fn name(&self) -> &'static str {
        "gram-identity"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        let (_, e) = l2.shape().dims2()?;
        let (a, b) = (
            super::cpu_slice(s1, l1, "gram-identity")?,
            super::cpu_slice(s2, l2, "gram-identity")?,
        );
        let total = sum_sq(&xt_y(a, a, n, d, d)) - 2.0 * sum_sq(&xt_y(a, b, n, d, e))
            + sum_sq(&xt_y(b, b, n, e, e));
        Ok((
            CpuStorage::F32(vec![(total * inv_n2(n)) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = a.dims2()?;
        let e = b.dim(1)?;
        let g = grad.to_dtype(candle_core::DType::F32)?.to_vec0::<f32>()?;
        let c = (4.0 * inv_n2(n)) as f32 * g;
        let (av, bv) = (
            super::with_host_slice(a, |s| s.to_vec())?,
            super::with_host_slice(b, |s| s.to_vec())?,
        );
        let (gaa, gab, gbb) = (
            xt_y(&av, &av, n, d, d),
            xt_y(&av, &bv, n, d, e),
            xt_y(&bv, &bv, n, e, e),
        );
        let mut da = vec![0f32; n * d];
        a_bt_into(&bv, &gab, n, d, e, -c, &mut da); // - c B G_ab^T
        a_b_into(&av, &gaa, n, d, d, c, &mut da, true); // + c A G_aa
        let mut db = vec![0f32; n * e];
        a_b_into(&bv, &gbb, n, e, e, c, &mut db, false); // c B G_bb
        a_b_into(&av, &gab, n, e, d, -c, &mut db, true); // - c A G_ab
        Ok((
            Some(Tensor::from_vec(da, (n, d), a.device())?),
            Some(Tensor::from_vec(db, (n, e), b.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::similarity::gram_mse_reference;
    use crate::ops::testing::{assert_finite_differences, assert_same_gradients, var};
    use candle_core::Device;

    /// The fused identity equals the direct form and the autograd identity in value and
    /// gradients (widths may differ, an upstream gradient other than 1), matches a hand
    /// value, and its gradient matches finite differences.
    #[test]
    fn matches_direct_form_autograd_identity_and_finite_differences() {
        let (x, y) = (var(300, 4, 3, 1.0), var(300, 6, 8, 1.0));
        let f = (gram_mse_identity(x.as_tensor(), y.as_tensor()).unwrap() * 1.3).unwrap();
        for r in [
            gram_mse_reference(x.as_tensor(), y.as_tensor()).unwrap(),
            gram_mse_identity_reference(x.as_tensor(), y.as_tensor()).unwrap(),
        ] {
            let r = (r * 1.3).unwrap();
            let (fv, rv) = (f.to_scalar::<f32>().unwrap(), r.to_scalar::<f32>().unwrap());
            assert!((fv - rv).abs() < 1e-4 * (1.0 + rv.abs()), "{fv} vs {rv}");
            assert_same_gradients(
                &f.backward().unwrap(),
                &r.backward().unwrap(),
                &[&x, &y],
                1e-5,
            );
        }
        // A = I -> A A^T = I ; B = [[1,0],[1,0]] -> all ones ; mean sq diff = 2/4
        let dev = Device::Cpu;
        let a1 = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
        let b1 = Tensor::new(&[[1f32, 0.], [1., 0.]], &dev).unwrap();
        let v = gram_mse_identity(&a1, &b1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((v - 0.5).abs() < 1e-6, "{v}");
        let (a, b) = (var(7, 3, 1, 1.0), var(7, 3, 4, 1.0));
        assert_finite_differences(
            |t| gram_mse_identity(t, b.as_tensor()).unwrap(),
            &a,
            &[0, 4, 11, 20],
            2e-3,
        );
    }

    #[test]
    fn rejects_blocks_of_different_lengths() {
        let (a, b) = (var(3, 2, 1, 1.0), var(4, 2, 1, 1.0));
        assert!(gram_mse_identity(a.as_tensor(), b.as_tensor()).is_err());
    }
}
