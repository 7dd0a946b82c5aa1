//! Ranking metrics of one user and their average (SPEC section 2, protocol).
//!
//! For a ranked list (best first) and the user's ground-truth set `GT`:
//! - Recall@K = hits@K / |GT|
//! - NDCG@K = DCG@K / IDCG@K with DCG@K = sum over ranks r = 1..K of rel_r / log2(r + 1)
//!   and IDCG@K the same sum over min(K, |GT|) relevant positions
//! - Precision@K = hits@K / K
//! - Hit@K = 1 when hits@K > 0
//!
//! Averages are over users with at least one ground-truth item; sums are in f64.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Averaged metrics of one evaluation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Number of users averaged over (those with at least one ground-truth item).
    pub n_users: usize,
    /// `"recall@K"`, `"ndcg@K"`, `"precision@K"`, `"hit@K"` for every cut-off K.
    pub values: BTreeMap<String, f64>,
    /// Set when only a random sample of the split's users was ranked
    /// (`eval.sample_users`): how many users the split has (`n_users` were ranked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_from: Option<usize>,
    /// For a sampled evaluation, the standard error of every value as an estimate of the
    /// value over all the split's users (`s / sqrt(n) * sqrt((N - n) / (N - 1))`: the
    /// sample was drawn without replacement). Empty for a full evaluation, which is exact.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub se: BTreeMap<String, f64>,
}

impl Metrics {
    /// Value of a metric by key, e.g. `"recall@20"`.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }
}

/// Names of the metrics, in the order [`UserMetrics::compute`] writes them for each K.
pub const NAMES: [&str; 4] = ["recall", "ndcg", "precision", "hit"];

/// Computes the per-user metric vector: for each K in `ks` (in order) the four values of
/// [`NAMES`]; `out` has length `4 * ks.len()`.
pub(crate) struct UserMetrics<'a> {
    pub ks: &'a [usize],
    /// `idcg[n]` = sum_{r=1..n} 1/log2(r+1), for n = 0..=max K.
    idcg: Vec<f64>,
}

impl<'a> UserMetrics<'a> {
    pub fn new(ks: &'a [usize]) -> Self {
        let kmax = ks.iter().copied().max().unwrap_or(0);
        let mut idcg = Vec::with_capacity(kmax + 1);
        idcg.push(0.0);
        for r in 1..=kmax {
            idcg.push(idcg[r - 1] + discount(r));
        }
        Self { ks, idcg }
    }

    /// Width of one user's metric vector.
    pub fn width(&self) -> usize {
        NAMES.len() * self.ks.len()
    }

    /// Metrics of one user: `ranked` are item ids best first (at most max K of them),
    /// `truth` the user's sorted, non-empty ground-truth items.
    pub fn compute(&self, ranked: &[u32], truth: &[u32], out: &mut [f64]) {
        debug_assert_eq!(out.len(), self.width());
        let n_truth = truth.len();
        for (j, &k) in self.ks.iter().enumerate() {
            let mut hits = 0usize;
            let mut dcg = 0.0f64;
            for (r, item) in ranked.iter().take(k).enumerate() {
                if truth.binary_search(item).is_ok() {
                    hits += 1;
                    dcg += discount(r + 1);
                }
            }
            let idcg = self.idcg[k.min(n_truth)];
            let o = &mut out[NAMES.len() * j..NAMES.len() * (j + 1)];
            o[0] = if n_truth > 0 {
                hits as f64 / n_truth as f64
            } else {
                0.0
            };
            o[1] = if idcg > 0.0 { dcg / idcg } else { 0.0 };
            o[2] = hits as f64 / k as f64;
            o[3] = if hits > 0 { 1.0 } else { 0.0 };
        }
    }

    /// Turns column sums over `n_users` users into averaged [`Metrics`].
    pub fn finish(&self, sums: &[f64], n_users: usize) -> Metrics {
        let mut values = BTreeMap::new();
        for (j, &k) in self.ks.iter().enumerate() {
            for (m, name) in NAMES.iter().enumerate() {
                let s = sums[NAMES.len() * j + m];
                let v = if n_users > 0 { s / n_users as f64 } else { 0.0 };
                values.insert(format!("{name}@{k}"), v);
            }
        }
        Metrics {
            n_users,
            values,
            ..Default::default()
        }
    }

    /// Like [`finish`](Self::finish) for a sample of `n_users` users drawn without
    /// replacement from `population`, with `squares` the column sums of squares: adds the
    /// standard error of every mean (see [`Metrics::se`]).
    pub fn finish_sampled(
        &self,
        sums: &[f64],
        squares: &[f64],
        n_users: usize,
        population: usize,
    ) -> Metrics {
        let mut m = self.finish(sums, n_users);
        m.sampled_from = Some(population);
        let n = n_users as f64;
        let fpc = if population > 1 {
            ((population - n_users) as f64 / (population - 1) as f64).max(0.0)
        } else {
            0.0
        };
        for (j, &k) in self.ks.iter().enumerate() {
            for (c, name) in NAMES.iter().enumerate() {
                let col = NAMES.len() * j + c;
                let se = if n_users > 1 {
                    let mean = sums[col] / n;
                    let var = ((squares[col] - n * mean * mean) / (n - 1.0)).max(0.0);
                    (var / n * fpc).sqrt()
                } else {
                    f64::NAN
                };
                m.se.insert(format!("{name}@{k}"), se);
            }
        }
        m
    }
}

/// 1 / log2(r + 1) for a 1-based rank `r`.
#[inline]
fn discount(r: usize) -> f64 {
    1.0 / ((r + 1) as f64).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_by_hand() {
        // ranked [7, 3, 9, 1], truth {1, 3, 5}
        // ranks: 7 miss (r1), 3 hit (r2), 9 miss (r3), 1 hit (r4)
        let ks = [1, 2, 4];
        let um = UserMetrics::new(&ks);
        let mut out = vec![0.0; um.width()];
        um.compute(&[7, 3, 9, 1], &[1, 3, 5], &mut out);
        // K=1: no hit -> recall 0, ndcg 0, precision 0, hit 0
        assert_eq!(&out[0..4], &[0.0, 0.0, 0.0, 0.0]);
        // K=2: hits 1 -> recall 1/3, precision 1/2, hit 1
        //   DCG = 1/log2(3) = 0.63093; IDCG over min(2,3)=2: 1 + 1/log2(3) = 1.63093
        //   NDCG = 0.63093 / 1.63093 = 0.386853
        assert!((out[4] - 1.0 / 3.0).abs() < 1e-12);
        assert!((out[5] - 0.386853).abs() < 1e-6);
        assert_eq!(out[6], 0.5);
        assert_eq!(out[7], 1.0);
        // K=4: hits 2 -> recall 2/3, precision 2/4
        //   DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
        //   IDCG over min(4,3)=3: 1 + 0.630930 + 1/log2(4)=0.5 -> 2.130930
        //   NDCG = 1.061606 / 2.130930 = 0.498189
        assert!((out[8] - 2.0 / 3.0).abs() < 1e-12);
        assert!((out[9] - 0.498189).abs() < 1e-6);
        assert_eq!(out[10], 0.5);
        assert_eq!(out[11], 1.0);
    }

    #[test]
    fn finish_averages_and_names() {
        let ks = [2];
        let um = UserMetrics::new(&ks);
        let m = um.finish(&[1.0, 0.5, 0.25, 2.0], 2);
        assert_eq!(m.n_users, 2);
        assert_eq!(m.get("recall@2"), Some(0.5));
        assert_eq!(m.get("ndcg@2"), Some(0.25));
        assert_eq!(m.get("precision@2"), Some(0.125));
        assert_eq!(m.get("hit@2"), Some(1.0));
        assert_eq!(m.get("recall@5"), None);
        assert!(m.sampled_from.is_none() && m.se.is_empty());
    }

    /// Per-user recall@2 values 1, 0, 0.5, 0.5 (mean 0.5, sample variance 1/6) from a
    /// population of 10 users: se = sqrt(1/6 / 4 * 6/9) = sqrt(1/36) = 1/6.
    #[test]
    fn sampled_standard_errors_by_hand() {
        let ks = [2];
        let um = UserMetrics::new(&ks);
        let sums = [2.0, 0.0, 0.0, 0.0];
        let squares = [1.0 + 0.25 + 0.25, 0.0, 0.0, 0.0];
        let m = um.finish_sampled(&sums, &squares, 4, 10);
        assert_eq!(m.sampled_from, Some(10));
        assert_eq!(m.get("recall@2"), Some(0.5));
        assert!((m.se["recall@2"] - 1.0 / 6.0).abs() < 1e-12, "{:?}", m.se);
        assert_eq!(m.se["ndcg@2"], 0.0);
        // the whole population: no sampling error left
        let all = um.finish_sampled(&sums, &squares, 4, 4);
        assert_eq!(all.se["recall@2"], 0.0);
    }
}
