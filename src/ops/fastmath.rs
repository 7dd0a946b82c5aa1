//! A fast, branch-free `exp` for f32 (range reduction to `2^n * e^r`, `|r| <= ln2/2`, and a
//! degree-6 Taylor polynomial; relative error below 2.5e-7 on [-87, 88]). The similarity
//! losses evaluate tens of millions of exponentials per step, where libm's `expf` and
//! `f64::exp` dominated the profile; this form auto-vectorises.
//!
//! [`vectorized`] runs a loop compiled for the widest vector unit the CPU has (AVX-512 or
//! AVX2, detected at run time), so one portable binary still uses 16-lane registers where
//! they exist. No fused multiply-add is introduced (Rust never contracts `a * b + c`), so
//! every level gives the same bits.

use std::sync::OnceLock;

/// The vector instruction sets a hot loop may be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    Baseline,
    Avx2,
    Avx512,
}

/// The level [`vectorized`] uses: the best the CPU supports, capped by the environment
/// variable `DAREC_SIMD` (`baseline`, `avx2` or `avx512`) for comparisons.
pub fn simd_level() -> Simd {
    static LEVEL: OnceLock<Simd> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = detect_cached();
        let cap = match std::env::var("DAREC_SIMD").ok().as_deref() {
            Some("baseline") => Simd::Baseline,
            Some("avx2") => Simd::Avx2,
            _ => Simd::Avx512,
        };
        detected.min(cap)
    })
}

fn detect_cached() -> Simd {
    static DETECTED: OnceLock<Simd> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

fn detect() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Simd::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Simd::Avx2;
        }
    }
    Simd::Baseline
}

/// Runs `f` compiled for [`simd_level`]: `f` is inlined into a copy of this function built
/// with the wider instruction set, so its loops auto-vectorise to it.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    vectorized_at(simd_level(), f)
}

/// [`vectorized`] at a given level, which must not exceed what the CPU supports (checked:
/// an unsupported level runs the baseline code).
#[inline(always)]
pub fn vectorized_at<R>(level: Simd, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match level.min(detect_cached()) {
        // SAFETY: `simd_level` returns a level only when the CPU reports its features.
        Simd::Avx512 => return unsafe { with_avx512(f) },
        Simd::Avx2 => return unsafe { with_avx2(f) },
        Simd::Baseline => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `e^x` for f32, inputs clamped to [-87, 88].
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN; `max` sends it to -87 (exp ~ 0)
pub fn fast_exp(x: f32) -> f32 {
    let x = x.max(-87.0).min(88.0);
    // round to nearest without a libm call (keeps the loop vectorisable): adding and
    // subtracting 1.5 * 2^23 leaves the nearest integer for |v| < 2^22
    const MAGIC: f32 = 12_582_912.0;
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `n` as an integer, read from the bits of `t` (`t` lies in [2^23, 2^24), where one
    // unit is one step of the mantissa): the same value as `n as i32`, without the
    // saturating float-to-int conversion that slowed the vector loop 2x
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}

/// Sum of a slice in eight independent lanes (vectorisable), returned as f64.
#[inline(always)]
pub fn lane_sum(x: &[f32]) -> f64 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + rest
}

/// Dot product in eight independent lanes (vectorisable; a plain `sum` of f32 must keep
/// its order and does not vectorise).
#[inline(always)]
pub fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum_of(a, b, |x, y| x * y)
}

/// Squared Euclidean distance in eight independent lanes (vectorisable, as [`lane_dot`]).
#[inline(always)]
pub fn lane_sq_dist(a: &[f32], b: &[f32]) -> f32 {
    lane_sum_of(a, b, |x, y| (x - y) * (x - y))
}

/// `sum_i f(a_i, b_i)` in eight independent lanes.
#[inline(always)]
fn lane_sum_of(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += f(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out += c * v` (vectorisable).
#[inline(always)]
pub fn axpy(out: &mut [f32], c: f32, v: &[f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += c * x;
    }
}

/// The largest value of a slice in eight independent lanes (vectorisable; NaN entries are
/// passed over, as by `f32::max`); `-inf` for an empty slice.
#[inline(always)]
pub fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            if c[k] > acc[k] {
                acc[k] = c[k];
            }
        }
    }
    rest.iter()
        .chain(&acc)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `x[i] = exp(x[i] - shift)` in place (vectorisable; always inlined, so that it takes
/// the vector level of the [`vectorized`] caller).
#[inline(always)]
pub fn exp_shifted_in_place(x: &mut [f32], shift: f32) {
    for v in x.iter_mut() {
        *v = fast_exp(*v - shift);
    }
}

/// `x[i] = exp(x[i] - shift)` in place, returning the sum of the new values: one pass, the
/// same values and the same sum (bit for bit) as [`exp_shifted_in_place`] then
/// [`lane_sum`]. Always inlined, as [`exp_shifted_in_place`].
#[inline(always)]
pub fn exp_shifted_sum_in_place(x: &mut [f32], shift: f32) -> f64 {
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        for k in 0..8 {
            let e = fast_exp(c[k] - shift);
            c[k] = e;
            acc[k] += e;
        }
    }
    let rest: f64 = chunks
        .into_remainder()
        .iter_mut()
        .map(|v| {
            *v = fast_exp(*v - shift);
            *v as f64
        })
        .sum();
    acc.iter().map(|&v| v as f64).sum::<f64>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vector level the CPU has gives the same bits as the baseline loop.
    #[test]
    fn lane_sq_dist_is_the_squared_distance() {
        for len in [0, 3, 8, 32, 37] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i * i) as f32 * 0.1).collect();
            let want: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            let got = lane_sq_dist(&a, &b) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want),
                "{len}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn lane_max_is_the_maximum_passing_over_nan() {
        for len in [0, 5, 8, 37] {
            let mut xs: Vec<f32> = (0..len).map(|i| ((i * 37 % 11) as f32) - 4.0).collect();
            let want = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(lane_max(&xs), want, "{len}");
            if len > 0 {
                xs[len / 2] = f32::NAN;
                let want = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(lane_max(&xs), want, "{len} with NaN");
            }
        }
        assert_eq!(lane_max(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn vector_levels_give_the_same_bits() {
        let xs: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.0431).collect();
        let run = |level: Simd| {
            let mut v = xs.clone();
            let s = vectorized_at(level, || {
                exp_shifted_in_place(&mut v, 3.5);
                lane_sum(&v)
            });
            (v, s)
        };
        let base = run(Simd::Baseline);
        // the fused pass gives the same values and sum as the two passes
        let fused = |level: Simd| {
            let mut v = xs.clone();
            let s = vectorized_at(level, || exp_shifted_sum_in_place(&mut v, 3.5));
            (v, s)
        };
        for level in [Simd::Avx2, Simd::Avx512] {
            for got in [run(level), fused(level)] {
                assert_eq!(got.1.to_bits(), base.1.to_bits(), "{level:?} sum");
                assert!(
                    got.0
                        .iter()
                        .zip(&base.0)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{level:?} exp"
                );
            }
        }
        let got = fused(Simd::Baseline);
        assert_eq!(got.1.to_bits(), base.1.to_bits(), "fused sum");
        assert!(got
            .0
            .iter()
            .zip(&base.0)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn relative_error_is_tiny_over_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = fast_exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(-1000.0) > 0.0 && fast_exp(-1000.0) < 1e-37);
        let xs: Vec<f32> = (0..1003).map(|i| i as f32 * 0.5).collect();
        assert_eq!(
            lane_sum(&xs),
            (0..1003).map(|i| i as f64 * 0.5).sum::<f64>()
        );
    }
}
