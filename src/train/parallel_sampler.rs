//! BPR triples drawn on every core (`train.sampler = "parallel"`): the same distribution
//! as the protocol's sampler (`sampler.rs`: every training interaction once per epoch in
//! a uniformly random order, one uniform negative each, redrawn while it is a training
//! item of the user), from other random streams, so the triples differ from the
//! protocol's. At scale the protocol's one-core shuffle and draws took 9 s of a 31 s MF
//! epoch (64M interactions).
//!
//! The order is a bucket shuffle: every pair goes to one of `B` buckets drawn uniformly,
//! the buckets are concatenated in order and each is shuffled by Fisher-Yates. Given the
//! bucket sizes, every order within and across buckets is equally likely, so the whole is
//! a uniform random permutation. Pairs are assigned in fixed chunks, and buckets shuffled
//! and given negatives, each from its own generator derived from one draw of the epoch's
//! generator: the triples depend on the seed alone, not on the number of threads.

use crate::data::UserItems;
use crate::rng::Rng;
use rayon::prelude::*;

/// Pairs per assignment chunk (each with its own generator).
const CHUNK: usize = 1 << 16;
/// Target pairs per bucket: small enough to shuffle inside the caches.
const BUCKET: usize = 1 << 15;

fn stream(seed: u64, k: usize, purpose: &str) -> Rng {
    Rng::derive(
        seed ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        purpose,
    )
}

/// One epoch's triples `(user, positive, negative)` (see the module documentation); one
/// value is drawn from `rng`.
pub fn epoch(
    pairs: &[(u32, u32)],
    train: &UserItems,
    n_items: usize,
    rng: &mut Rng,
) -> Vec<(u32, u32, u32)> {
    epoch_with(pairs, train, n_items, rng, CHUNK, BUCKET)
}

/// [`epoch`] with its chunk and bucket sizes given (tests use tiny ones).
fn epoch_with(
    pairs: &[(u32, u32)],
    train: &UserItems,
    n_items: usize,
    rng: &mut Rng,
    chunk: usize,
    bucket_size: usize,
) -> Vec<(u32, u32, u32)> {
    let seed = rng.next_u64();
    let n = pairs.len();
    let n_buckets = n.div_ceil(bucket_size).max(1);
    // 1. a bucket for every pair, chunk by chunk
    let mut bucket = vec![0u32; n];
    bucket
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(c, out)| {
            let mut r = stream(seed, c, "sampler-assign");
            for b in out {
                *b = r.uniform_usize(n_buckets) as u32;
            }
        });
    // 2. where each (bucket, chunk) part starts: buckets in order, chunks in order inside
    let n_chunks = n.div_ceil(chunk);
    let counts: Vec<Vec<usize>> = bucket
        .par_chunks(chunk)
        .map(|ch| {
            let mut c = vec![0usize; n_buckets];
            for &b in ch {
                c[b as usize] += 1;
            }
            c
        })
        .collect();
    let mut start = vec![vec![0usize; n_buckets]; n_chunks];
    let mut bucket_start = vec![0usize; n_buckets + 1];
    let mut at = 0usize;
    for b in 0..n_buckets {
        bucket_start[b] = at;
        for c in 0..n_chunks {
            start[c][b] = at;
            at += counts[c][b];
        }
    }
    bucket_start[n_buckets] = at;
    // 3. scatter the pairs into their parts (disjoint ranges, one writer each)
    let mut order = vec![(0u32, 0u32); n];
    {
        let out = SharedOut(order.as_mut_ptr());
        let out = &out;
        pairs
            .par_chunks(chunk)
            .zip(bucket.par_chunks(chunk))
            .zip(start.par_iter())
            .for_each(|((ps, bs), st)| {
                let mut next = st.clone();
                for (&p, &b) in ps.iter().zip(bs) {
                    // SAFETY: `next[b]` runs over this chunk's own part of bucket `b`,
                    // which no other task writes, and stays below `n`.
                    unsafe { out.write(next[b as usize], p) };
                    next[b as usize] += 1;
                }
            });
    }
    drop(bucket);
    // 4. shuffle each bucket and draw its negatives, each from its own generator
    let mut triples = vec![(0u32, 0u32, 0u32); n];
    let mut parts: Vec<(usize, &mut [(u32, u32)], &mut [(u32, u32, u32)])> = Vec::new();
    let (mut o_rest, mut t_rest) = (&mut order[..], &mut triples[..]);
    for b in 0..n_buckets {
        let len = bucket_start[b + 1] - bucket_start[b];
        let (o, or) = std::mem::take(&mut o_rest).split_at_mut(len);
        let (t, tr) = std::mem::take(&mut t_rest).split_at_mut(len);
        (o_rest, t_rest) = (or, tr);
        parts.push((b, o, t));
    }
    parts.into_par_iter().for_each(|(b, o, t)| {
        let mut r = stream(seed, b, "sampler-bucket");
        r.shuffle(o);
        for (&(u, i), out) in o.iter().zip(t.iter_mut()) {
            let row = train.row(u);
            let neg = loop {
                let j = r.uniform_usize(n_items) as u32;
                if row.binary_search(&j).is_err() {
                    break j;
                }
            };
            *out = (u, i, neg);
        }
    });
    triples
}

/// The output of step 3, shared by the tasks that fill disjoint parts of it.
struct SharedOut(*mut (u32, u32));

// SAFETY: tasks write disjoint indices (see `epoch`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `k` is in bounds and written by no other task.
    unsafe fn write(&self, k: usize, v: (u32, u32)) {
        *self.0.add(k) = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n_users: u32, per_user: u32, n_items: u32) -> (Vec<(u32, u32)>, UserItems) {
        let pairs: Vec<(u32, u32)> = (0..n_users)
            .flat_map(|u| (0..per_user).map(move |k| (u, (u * 7 + k * 13) % n_items)))
            .collect();
        let ui = UserItems::from_pairs(n_users as usize, &pairs);
        let mut dedup = pairs.clone();
        dedup.sort_unstable();
        dedup.dedup();
        (dedup, ui)
    }

    /// Every pair once, valid negatives, the same triples whatever the thread count, new
    /// ones each epoch.
    #[test]
    fn a_permutation_with_valid_negatives_independent_of_threads() {
        let (pairs, ui) = data(3000, 40, 500); // 120k pairs: several chunks and buckets
        let mut r = Rng::new(3);
        let a = epoch(&pairs, &ui, 500, &mut r);
        let mut seen: Vec<(u32, u32)> = a.iter().map(|t| (t.0, t.1)).collect();
        seen.sort_unstable();
        assert_eq!(seen, pairs);
        assert!(a.iter().all(|&(u, _, n)| n < 500 && !ui.contains(u, n)));
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| epoch(&pairs, &ui, 500, &mut Rng::new(3)));
        assert_eq!(a, one);
        let b = epoch(&pairs, &ui, 500, &mut r);
        assert_ne!(a, b, "the next epoch is another order");
    }

    /// The order is uniform: over many epochs of 4 pairs in 2 chunks and 2 buckets, each
    /// of the 24 orders appears about 1/24 of the time.
    #[test]
    fn the_order_is_uniform() {
        let pairs = vec![(0, 1), (1, 1), (2, 1), (3, 1)];
        let ui = UserItems::from_pairs(4, &pairs);
        let mut r = Rng::new(11);
        let mut count = std::collections::HashMap::new();
        let trials = 24_000;
        for _ in 0..trials {
            let t = epoch_with(&pairs, &ui, 3, &mut r, 2, 2);
            let order: Vec<u32> = t.iter().map(|x| x.0).collect();
            *count.entry(order).or_insert(0usize) += 1;
        }
        assert_eq!(count.len(), 24);
        for (order, c) in &count {
            // expected 1000, sd ~31
            assert!((850..1150).contains(c), "{order:?}: {c}");
        }
    }
}
