//! Inverse of a small square matrix (Gauss-Jordan elimination with partial pivoting, in
//! f64), for mapping DaRec's shared space back through its collaborative head at cold
//! start (`d x d`, d = 32: a few microseconds, no linear-algebra crate needed).

use candle_core::{Result, Tensor};

/// The inverse of the square matrix `a`; an error when it is singular (a pivot below
/// 1e-12 times the largest entry) or not finite.
pub fn inverse(a: &Tensor) -> Result<Tensor> {
    let (n, m) = a.dims2()?;
    if n != m {
        candle_core::bail!("inverse: matrix is {n} x {m}, not square");
    }
    let v: Vec<f64> = a
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    let out = inverse_f64(&v, n).map_err(candle_core::Error::msg)?;
    Tensor::from_vec(
        out.into_iter().map(|x| x as f32).collect::<Vec<_>>(),
        (n, n),
        a.device(),
    )
}

/// Row-major `n x n` inverse.
pub fn inverse_f64(a: &[f64], n: usize) -> std::result::Result<Vec<f64>, String> {
    if a.iter().any(|x| !x.is_finite()) {
        return Err("inverse: matrix has non-finite entries".into());
    }
    let scale = a.iter().fold(0f64, |m, x| m.max(x.abs()));
    if scale == 0.0 {
        return Err("inverse: matrix is zero".into());
    }
    // [A | I], reduced to [I | A^-1]
    let w = 2 * n;
    let mut m = vec![0f64; n * w];
    for r in 0..n {
        m[r * w..r * w + n].copy_from_slice(&a[r * n..(r + 1) * n]);
        m[r * w + n + r] = 1.0;
    }
    for c in 0..n {
        let p = (c..n)
            .max_by(|&x, &y| m[x * w + c].abs().total_cmp(&m[y * w + c].abs()))
            .expect("rows remain");
        if m[p * w + c].abs() <= 1e-12 * scale {
            return Err("inverse: matrix is singular".into());
        }
        if p != c {
            for k in 0..w {
                m.swap(c * w + k, p * w + k);
            }
        }
        let pivot = m[c * w + c];
        for k in 0..w {
            m[c * w + k] /= pivot;
        }
        for r in 0..n {
            if r != c {
                let f = m[r * w + c];
                if f != 0.0 {
                    for k in 0..w {
                        m[r * w + k] -= f * m[c * w + k];
                    }
                }
            }
        }
    }
    Ok((0..n)
        .flat_map(|r| m[r * w + n..(r + 1) * w].to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn inverse_by_hand_and_times_matrix_is_identity() {
        // [[4, 7], [2, 6]]^-1 = [[0.6, -0.7], [-0.2, 0.4]]
        let inv = inverse_f64(&[4.0, 7.0, 2.0, 6.0], 2).unwrap();
        for (a, b) in inv.iter().zip([0.6, -0.7, -0.2, 0.4]) {
            assert!((a - b).abs() < 1e-12, "{inv:?}");
        }
        let mut rng = Rng::new(5);
        let n = 12;
        let a: Vec<f64> = (0..n * n).map(|_| rng.f64() - 0.5).collect();
        let inv = inverse_f64(&a, n).unwrap();
        for r in 0..n {
            for c in 0..n {
                let v: f64 = (0..n).map(|k| a[r * n + k] * inv[k * n + c]).sum();
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn singular_or_non_finite_matrices_are_errors() {
        assert!(inverse_f64(&[1.0, 2.0, 2.0, 4.0], 2).is_err());
        assert!(inverse_f64(&[f64::NAN, 0.0, 0.0, 1.0], 2).is_err());
        assert!(inverse_f64(&[0.0; 4], 2).is_err());
    }
}
