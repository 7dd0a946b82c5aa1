//! BPR triple sampling (SPEC.md section 2): every epoch visits every training interaction
//! once in a shuffled order, each with one negative item drawn uniformly and redrawn until
//! it is not one of the user's training items.

use crate::data::UserItems;
use crate::rng::Rng;

pub struct BprSampler {
    pairs: Vec<(u32, u32)>,
    train: UserItems,
    n_items: usize,
}

impl BprSampler {
    /// `train` must contain every pair of `pairs`. Users who interacted with every item
    /// would loop forever; they are rejected here.
    pub fn new(pairs: Vec<(u32, u32)>, train: UserItems, n_items: usize) -> anyhow::Result<Self> {
        for u in 0..train.n_users() {
            if train.row(u as u32).len() >= n_items && n_items > 0 {
                anyhow::bail!(
                    "user {u} has interacted with all {n_items} items: no negative can be sampled"
                );
            }
        }
        Ok(Self {
            pairs,
            train,
            n_items,
        })
    }

    pub fn n_pairs(&self) -> usize {
        self.pairs.len()
    }

    /// All triples of one epoch, drawn on every core (`train.sampler = "parallel"`;
    /// see `parallel_sampler.rs`).
    pub fn epoch_parallel(&self, rng: &mut Rng) -> Vec<(u32, u32, u32)> {
        super::parallel_sampler::epoch(&self.pairs, &self.train, self.n_items, rng)
    }

    /// All triples of one epoch, shuffled.
    pub fn epoch(&self, rng: &mut Rng) -> Vec<(u32, u32, u32)> {
        // the shuffle's swaps depend on the length alone: shuffling the pairs themselves
        // gives `pairs[order[k]]` of a shuffled index list, one indirection fewer
        let mut shuffled = self.pairs.clone();
        rng.shuffle(&mut shuffled);
        shuffled
            .into_iter()
            .map(|(u, i)| {
                let row = self.train.row(u);
                let neg = loop {
                    let j = rng.uniform_usize(self.n_items) as u32;
                    if row.binary_search(&j).is_err() {
                        break j;
                    }
                };
                (u, i, neg)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_visits_each_pair_once_with_valid_negatives() {
        let pairs = vec![(0, 0), (0, 1), (1, 2), (2, 0), (2, 3), (2, 1)];
        let ui = UserItems::from_pairs(3, &pairs);
        let s = BprSampler::new(pairs.clone(), ui.clone(), 5).unwrap();
        let mut rng = Rng::new(1);
        let e = s.epoch(&mut rng);
        let mut seen: Vec<(u32, u32)> = e.iter().map(|t| (t.0, t.1)).collect();
        seen.sort();
        let mut want = pairs.clone();
        want.sort();
        assert_eq!(seen, want);
        for _ in 0..50 {
            for (u, _, n) in s.epoch(&mut rng) {
                assert!(!ui.contains(u, n));
                assert!(n < 5);
            }
        }
        // shuffling the pairs is shuffling indices into them (the order the published runs
        // were trained in): the same triples from the same generator state
        let mut a = Rng::new(9);
        let mut b = Rng::new(9);
        let mut order: Vec<u32> = (0..pairs.len() as u32).collect();
        b.shuffle(&mut order);
        let by_index: Vec<(u32, u32)> = order.iter().map(|&k| pairs[k as usize]).collect();
        let got: Vec<(u32, u32)> = s.epoch(&mut a).iter().map(|t| (t.0, t.1)).collect();
        assert_eq!(got, by_index);
        let full = UserItems::from_pairs(1, &[(0, 0), (0, 1)]);
        assert!(BprSampler::new(vec![(0, 0), (0, 1)], full, 2).is_err());
    }
}
