//! Partial top-K selection over one row of scores (SPEC section 2: full ranking).
//!
//! Order: higher score first; equal scores by lower item id first, so rankings are
//! deterministic. NaN scores rank as `-inf`. Masked items (training items of the user) are
//! not candidates at all, so they never appear in the ranking. Cost O(n log K) worst case
//! with a bounded heap; the common case is one comparison per item.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One candidate item. Its `Ord` puts the *worse* candidate last-out first: the maximum of
/// a `BinaryHeap<Cand>` is the worst kept candidate, which is the one to evict.
#[derive(Clone, Copy, Debug)]
struct Cand {
    score: f32,
    id: u32,
}

impl Cand {
    /// `true` when `self` ranks after `other` (lower score, or equal score and higher id).
    #[inline]
    fn is_worse_than(&self, other: &Cand) -> bool {
        match self.score.partial_cmp(&other.score) {
            Some(Ordering::Less) => true,
            Some(Ordering::Greater) => false,
            // scores are NaN-free (mapped to -inf), so `None` cannot happen; treat as equal
            _ => self.id > other.id,
        }
    }
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.is_worse_than(other) {
            Ordering::Greater
        } else if other.is_worse_than(self) {
            Ordering::Less
        } else {
            Ordering::Equal
        }
    }
}

/// Reusable scratch for [`top_k`] (one per worker thread).
#[derive(Debug, Default)]
pub(crate) struct TopK {
    heap: BinaryHeap<Cand>,
}

impl TopK {
    /// Writes into `out` the ids of the best `k` items of `scores` (best first), skipping
    /// every item `i` with `masked[i]`. Fewer than `k` ids come out when fewer items are
    /// candidates. `masked` must have the length of `scores`.
    pub(crate) fn select(&mut self, scores: &[f32], masked: &[bool], k: usize, out: &mut Vec<u32>) {
        debug_assert_eq!(scores.len(), masked.len());
        out.clear();
        self.heap.clear();
        if k == 0 {
            return;
        }
        for (i, (&s, &m)) in scores.iter().zip(masked).enumerate() {
            if m {
                continue;
            }
            let score = if s.is_nan() { f32::NEG_INFINITY } else { s };
            let cand = Cand {
                score,
                id: i as u32,
            };
            if self.heap.len() < k {
                self.heap.push(cand);
            } else if let Some(mut worst) = self.heap.peek_mut() {
                // Items come in increasing id order, so an equal score never beats a kept
                // candidate (its id is larger): strict `>` is the tie rule.
                if score > worst.score {
                    *worst = cand;
                }
            }
        }
        // Drain worst-first, then reverse to best-first.
        while let Some(c) = self.heap.pop() {
            out.push(c.id);
        }
        out.reverse();
    }
}

#[cfg(test)]
/// Convenience wrapper (tests): the ranked ids of the best `k` unmasked items of `scores`.
pub(crate) fn top_k(scores: &[f32], masked: &[bool], k: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(k);
    TopK::default().select(scores, masked, k, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: full sort by (score desc, id asc) of the unmasked items.
    fn full_sort(scores: &[f32], masked: &[bool], k: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..scores.len() as u32)
            .filter(|&i| !masked[i as usize])
            .collect();
        let key = |i: u32| {
            let s = scores[i as usize];
            if s.is_nan() {
                f32::NEG_INFINITY
            } else {
                s
            }
        };
        ids.sort_by(|&a, &b| key(b).partial_cmp(&key(a)).unwrap().then(a.cmp(&b)));
        ids.truncate(k);
        ids
    }

    #[test]
    fn picks_best_with_id_tie_break() {
        // scores:    0    1    2    3    4    5
        let s = [0.5, 0.9, 0.5, 0.1, 0.9, 0.5];
        let m = [false; 6];
        // 0.9 (ids 1,4), then 0.5 (ids 0,2,5), then 0.1 (id 3)
        assert_eq!(top_k(&s, &m, 3), vec![1, 4, 0]);
        assert_eq!(top_k(&s, &m, 4), vec![1, 4, 0, 2]);
        assert_eq!(top_k(&s, &m, 10), vec![1, 4, 0, 2, 5, 3]);
        assert_eq!(top_k(&s, &m, 0), Vec::<u32>::new());
    }

    #[test]
    fn masks_and_nan() {
        let s = [f32::NAN, 0.2, 0.3, f32::NEG_INFINITY, 0.1];
        let m = [false, false, true, false, false];
        // 2 is masked; NaN (id 0) and -inf (id 3) tie at -inf, broken by id
        assert_eq!(top_k(&s, &m, 5), vec![1, 4, 0, 3]);
        assert_eq!(top_k(&s, &[true; 5], 3), Vec::<u32>::new());
    }

    #[test]
    fn matches_full_sort_on_ascending_and_random_rows() {
        let n = 500;
        let asc: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let m = vec![false; n];
        assert_eq!(top_k(&asc, &m, 7), full_sort(&asc, &m, 7));
        // pseudo-random scores with many ties (values in 0..16) and a sparse mask
        let mut x: u64 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for k in [1, 5, 20, 499, 500, 600] {
            let s: Vec<f32> = (0..n).map(|_| (next() % 16) as f32).collect();
            let m: Vec<bool> = (0..n).map(|_| next() % 5 == 0).collect();
            assert_eq!(top_k(&s, &m, k), full_sort(&s, &m, k), "k={k}");
        }
    }
}
