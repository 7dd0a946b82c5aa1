//! Cold start: a collaborative vector for an item (or user) that has only text, so it can
//! be recommended without retraining. The text is embedded by the model that made the
//! run's semantic vectors, then mapped into the collaborative space by one of:
//!
//! - **alignment**: the trained alignment's language-side projection
//!   ([`crate::align::Alignment::text_to_collaborative`]): RLMRec-Con's MLP `f(e_L)`, or
//!   DaRec's shared head mapped back through the collaborative shared head. RLMRec-Gen
//!   maps the other way (collaborative to language) and has none. The projection aligns
//!   directions (cosine), not norms, so the vector is rescaled to the mean norm of the
//!   trained item vectors;
//! - **text-kNN**: the similarity-weighted mean of the collaborative vectors of the `k`
//!   trained items whose semantic vectors are closest (cosine) to the new text's. Any run
//!   whose semantic vectors are known can use it, with or without an alignment.

use crate::text::TextEmbedder;
use serde::{Deserialize, Serialize};

/// How a cold vector is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ColdMethod {
    /// The trained alignment's projection (RLMRec-Con, DaRec).
    Alignment,
    /// Similarity-weighted neighbours in the semantic space.
    TextKnn,
}

impl ColdMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            ColdMethod::Alignment => "alignment",
            ColdMethod::TextKnn => "text-knn",
        }
    }
}

/// Neighbours used by text-kNN.
pub const KNN: usize = 20;

/// What cold start needs besides the model: the embedder of the run's vectors and the
/// trained users' and items' semantic vectors, L2-normalised, row-major `[n, dim]`.
pub struct TextSide {
    pub embedder: Box<dyn TextEmbedder>,
    pub user_sem: Vec<f32>,
    pub item_sem: Vec<f32>,
    pub dim: usize,
}

/// Whether a text describes an item or a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    User,
    Item,
}

/// L2-normalises each `d`-row in place (zero rows stay zero).
pub fn normalize_rows(x: &mut [f32], d: usize) {
    for row in x.chunks_exact_mut(d.max(1)) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 && n.is_finite() {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
}

/// Text-kNN: weights `max(cos, 0)` of the `k` nearest rows of `item_sem` (normalised) to
/// `query` (normalised), applied to the matching rows of `item_cf` (`[n, d_cf]`). Falls back
/// to the plain mean of the neighbours when no similarity is positive.
pub fn text_knn(
    query: &[f32],
    item_sem: &[f32],
    dim: usize,
    item_cf: &[f32],
    d_cf: usize,
    k: usize,
) -> Vec<f32> {
    let n = item_sem.len() / dim.max(1);
    let mut sims: Vec<(f32, usize)> = (0..n)
        .map(|i| {
            let row = &item_sem[i * dim..(i + 1) * dim];
            let s: f32 = row.iter().zip(query).map(|(a, b)| a * b).sum();
            (if s.is_finite() { s } else { f32::NEG_INFINITY }, i)
        })
        .collect();
    let k = k.min(n);
    if k == 0 {
        return vec![0.0; d_cf];
    }
    sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let near = &sims[..k];
    let total: f32 = near.iter().map(|s| s.0.max(0.0)).sum();
    let mut out = vec![0f32; d_cf];
    for &(s, i) in near {
        let w = if total > 0.0 {
            s.max(0.0) / total
        } else {
            1.0 / k as f32
        };
        let row = &item_cf[i * d_cf..(i + 1) * d_cf];
        out.iter_mut().zip(row).for_each(|(o, x)| *o += w * x);
    }
    out
}

/// Rescales `v` to norm `target` (zero vectors stay zero).
pub fn rescale(v: &mut [f32], target: f32) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x *= target / n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_by_hand() {
        // semantic rows e1, e2, -e1; query e1: neighbours 0 (cos 1), 1 (cos 0) for k = 2
        let sem = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0];
        let cf = [2.0, 4.0, 10.0];
        assert_eq!(text_knn(&[1.0, 0.0], &sem, 2, &cf, 1, 2), vec![2.0]);
        // k = 1 takes the nearest only; k larger than n is capped
        assert_eq!(text_knn(&[0.0, 1.0], &sem, 2, &cf, 1, 1), vec![4.0]);
        assert_eq!(text_knn(&[1.0, 0.0], &sem, 2, &cf, 1, 9), vec![2.0]);
        // no positive similarity: plain mean of the neighbours
        assert_eq!(text_knn(&[0.0, -1.0], &sem, 2, &cf, 1, 1).len(), 1);
    }

    #[test]
    fn rescale_and_normalize() {
        let mut v = vec![3.0, 4.0];
        rescale(&mut v, 10.0);
        assert_eq!(v, vec![6.0, 8.0]);
        let mut x = vec![3.0, 4.0, 0.0, 0.0];
        normalize_rows(&mut x, 2);
        assert_eq!(x, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
