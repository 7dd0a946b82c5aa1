//! Row kernels of the fused BERT encoder ([`super::FastBert`]): bias + activation (GELU with
//! erf, as candle and PyTorch compute it), bias + residual + LayerNorm, and softmax.
//!
//! Each kernel is written once as plain loops that LLVM can vectorise (no libm calls inside:
//! erf and exp are polynomial approximations accurate to about 1e-7; reductions use eight
//! accumulators) and compiled twice: for the baseline target and, chosen at run time when
//! the CPU has them, with AVX2 and FMA enabled.

use candle_transformers::models::bert::HiddenAct;

/// Defines `pub fn $name` that runs `$body` compiled with AVX2+FMA when the CPU has them,
/// else the baseline build of the same body.
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features `avx2` was compiled for.
                return unsafe { avx2($($arg),*) };
            }
            generic($($arg),*)
        }
    };
}

const LANES: usize = 8;

/// Sum with eight partial sums (vectorisable; rounding differs from a sequential sum only
/// in the last bits).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..LANES {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Largest value (eight partial maxima; NaN-free input assumed).
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    for c in chunks {
        for k in 0..LANES {
            acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
        }
    }
    acc.iter().fold(tail, |a, &b| if b > a { b } else { a })
}

/// `e^x` for `x` in about [-87, 88] (clamped outside), relative error about 1e-7: range
/// reduction `x = n ln 2 + r` and the Cephes `expf` polynomial for `e^r`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // round x / ln 2 to the nearest integer with the 1.5 * 2^23 trick (no libm call)
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    er * f32::from_bits(((ni + 127) as u32) << 23)
}

/// erf in single precision: a rational approximation on [-4, 4] (beyond it erf is +-1 in
/// f32), absolute error below 1e-6 (tested against an f64 reference).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

/// `0.5 x (1 + erf(x / sqrt 2))`.
#[inline(always)]
pub fn gelu_erf(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// The hidden activation, as candle computes it.
#[inline(always)]
pub fn activation(v: f32, act: HiddenAct) -> f32 {
    match act {
        HiddenAct::Gelu => gelu_erf(v),
        HiddenAct::GeluApproximate => {
            // tanh approximation, as torch's gelu(approximate="tanh")
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
        }
        HiddenAct::Relu => v.max(0.0),
    }
}

dispatch! {
    /// `r = act(r + b)`, one loop per activation so that each vectorises.
    pub fn bias_act(r: &mut [f32], b: &[f32], act: HiddenAct) {
        match act {
            HiddenAct::Gelu => r.iter_mut().zip(b).for_each(|(v, bb)| *v = gelu_erf(*v + bb)),
            _ => r.iter_mut().zip(b).for_each(|(v, bb)| *v = activation(*v + bb, act)),
        }
    }
}

#[inline(always)]
fn layer_norm_generic(x: &mut [f32], g: &[f32], b: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    x.iter_mut().for_each(|v| *v -= mean);
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for k in 0..LANES {
            acc[k] += c[k] * c[k];
        }
    }
    let var = (acc.iter().sum::<f32>() + tail) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, gg), bb) in x.iter_mut().zip(g).zip(b) {
        *v = *v * inv * gg + bb;
    }
}

dispatch! {
    /// In-place LayerNorm of one row: `(x - mean) / sqrt(var + eps) * g + b` (biased
    /// variance).
    pub fn layer_norm_row(x: &mut [f32], g: &[f32], b: &[f32], eps: f32) {
        layer_norm_generic(x, g, b, eps)
    }
}

dispatch! {
    /// `r = LayerNorm(r + b + residual)` of one row.
    pub fn bias_residual_norm(
        r: &mut [f32],
        b: &[f32],
        residual: &[f32],
        g: &[f32],
        beta: &[f32],
        eps: f32
    ) {
        for ((v, bb), rr) in r.iter_mut().zip(b).zip(residual) {
            *v += bb + rr;
        }
        layer_norm_generic(r, g, beta, eps)
    }
}

dispatch! {
    /// In-place softmax of one row (max subtracted first).
    pub fn softmax_row(x: &mut [f32]) {
        let m = max(x);
        x.iter_mut().for_each(|v| *v = exp(*v - m));
        let inv = 1.0 / sum(x);
        x.iter_mut().for_each(|v| *v *= inv);
    }
}
