//! Fused candle custom ops for the hot paths (see ../shared/STACK.md for the measurements
//! that motivated them): multi-layer sparse propagation with its backward, and an
//! in-place Adam update; for tables whose gradient reaches only a batch's rows, a
//! row-sparse BPR gradient and a row-wise lazy Adam.

pub mod adam;
pub mod adaptive;
pub mod bpr;
pub mod bpr_rows;
pub mod dense;
pub mod edge_attention;
pub mod fastmath;
pub mod gram_identity;
pub mod lazy_adam;
pub mod linear;
pub mod propagate;
pub mod rowwise;
pub mod similarity;
#[cfg(test)]
pub(crate) mod testing;

pub use adam::{Adam, AdamConfig};
pub use propagate::{propagate, Combine};

/// The f32 data of a contiguous CPU tensor storage, as seen through its layout.
pub(crate) fn cpu_slice<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input must be contiguous")))?;
    Ok(&s.as_slice::<f32>()?[a..b])
}

/// Runs `f` on the f32 data of a CPU tensor without copying it when it is contiguous (a
/// copy otherwise). Backward passes use it to read their inputs.
pub(crate) fn with_host_slice<R>(
    t: &candle_core::Tensor,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            if let Ok(s) = cpu.as_slice::<f32>() {
                return Ok(f(&s[a..b]));
            }
        }
    }
    let v = t
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    Ok(f(&v))
}

/// Largest absolute difference between two tensors of one shape (tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("tensors of one shape")
}

/// `buf`, holding `stride` values per stored entry of a row-major sparse structure with
/// row pointers `ptr` (`n + 1` of them), split at the entries of every `rows`-th row: one
/// mutable piece per parallel task of `rows` rows.
pub(crate) fn split_row_tasks<'a>(
    ptr: &[usize],
    rows: usize,
    stride: usize,
    mut buf: &'a mut [f32],
) -> Vec<&'a mut [f32]> {
    let n = ptr.len() - 1;
    let mut pieces = Vec::with_capacity(n.div_ceil(rows));
    for first in (0..n).step_by(rows) {
        let last = (first + rows).min(n);
        let (head, rest) = buf.split_at_mut((ptr[last] - ptr[first]) * stride);
        pieces.push(head);
        buf = rest;
    }
    pieces
}
