//! Dense f32 products on row-major slices through the `gemm` crate (the kernel candle's CPU
//! matmul uses), for fused ops that must not round-trip through tensors. Parallel over the
//! global rayon pool: never call these from inside a rayon parallel loop.

/// `out[m,n] (+)= A[m,k] * B[k,n]` where `A` and `B` are given with explicit strides.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    out: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[f32],
    rhs_rs: isize,
    rhs_cs: isize,
    scale: f32,
) {
    assert_eq!(out.len(), m * n, "gemm: output size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let par = if m * n * k >= 1 << 16 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the slices cover every index addressed by the given shapes and strides (the
    // callers below derive strides from the same shapes and assert the slice lengths).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

/// `scale * A[m,k] B[n,k]^T`.
pub fn a_bt(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, scale: f32) -> Vec<f32> {
    assert!(a.len() == m * k && b.len() == n * k, "a_bt: shapes");
    let mut out = vec![0f32; m * n];
    gemm_strided(
        m, n, k, &mut out, false, a, k as isize, 1, b, 1, k as isize, scale,
    );
    out
}

/// `out[m,n] = scale * A[m,k] B[n,k]^T` into an existing buffer.
pub fn a_bt_into(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, scale: f32, out: &mut [f32]) {
    assert!(a.len() == m * k && b.len() == n * k, "a_bt: shapes");
    gemm_strided(
        m, n, k, out, false, a, k as isize, 1, b, 1, k as isize, scale,
    );
}

/// `out (+)= scale * A[m,k] B[k,n]`.
pub fn a_b_into(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    scale: f32,
    out: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() == m * k && b.len() == k * n, "a_b: shapes");
    gemm_strided(
        m, n, k, out, accumulate, a, k as isize, 1, b, n as isize, 1, scale,
    );
}

/// `out (+)= scale * A[k,m]^T B[k,n]`.
pub fn at_b_into(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    scale: f32,
    out: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() == k * m && b.len() == k * n, "at_b: shapes");
    gemm_strided(
        m, n, k, out, accumulate, a, 1, m as isize, b, n as isize, 1, scale,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_naive_loops() {
        let (m, n, k) = (3, 4, 2);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 - 2.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32) * 0.5).collect();
        let c = a_bt(&a, &b, m, n, k, 2.0);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f32>() * 2.0;
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
        // A[m,k] * B2[k,n]
        let b2: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32).collect();
        let mut d = vec![1f32; m * n];
        a_b_into(&a, &b2, m, n, k, 1.0, &mut d, true);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * b2[p * n + j]).sum::<f32>();
                assert!((d[i * n + j] - want).abs() < 1e-5);
            }
        }
        // A[k,m]^T * B3[k,n]
        let a3: Vec<f32> = (0..k * m).map(|i| (i as f32).sin()).collect();
        let mut e = vec![0f32; m * n];
        at_b_into(&a3, &b2, m, n, k, 1.0, &mut e, false);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a3[p * m + i] * b2[p * n + j]).sum();
                assert!((e[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
