//! Full-ranking evaluation (SPEC section 2, protocol) and the MostPop baseline.
//!
//! For every user with at least one ground-truth item, all items are scored, the items of
//! every `exclude` set (the user's training items) are removed from the candidates, the top
//! max(K) items are selected (ties: lower item id first; NaN ranks as -inf) and Recall@K,
//! NDCG@K, Precision@K and Hit@K are computed, then averaged over those users in f64.
//!
//! Users are streamed in batches of `batch_users`: one score buffer of
//! `batch_users x n_items` floats is reused, so memory does not grow with users x items.
//! Scoring (a candle matmul that parallelises itself through rayon) runs on the calling
//! thread; only the per-row top-K selection runs in a rayon parallel loop afterwards.
//! Per-user results are summed in user order, so the result does not depend on the batch
//! size or the number of threads.
//!
//! At scale (`sample_users`), only a fixed random sample of the users is ranked, each
//! still against every item, and every metric comes with its standard error as an
//! estimate of the full-ranking value.
//!
//! Layout: `scorer` (the [`Scorer`] trait, [`EmbeddingScorer`], [`MostPop`]), `topk`
//! (partial selection), `metrics` (per-user metrics, [`Metrics`]), `table`
//! ([`markdown_table`]).

mod metrics;
mod scorer;
mod table;
pub(crate) mod topk;

pub use metrics::{Metrics, NAMES as METRIC_NAMES};
pub use scorer::{EmbeddingScorer, MostPop, Scorer};
pub use table::markdown_table;

use crate::data::UserItems;
use metrics::UserMetrics;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use topk::TopK;

/// Which cut-offs and how many users per scoring batch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalOptions {
    /// Cut-offs K (default `[5, 10, 20]`); each must be >= 1. Duplicates are ignored.
    pub ks: Vec<usize>,
    /// Users scored per batch (default 1024): memory is `batch_users x n_items` f32, at
    /// most [`MAX_SCORE_BYTES`] (fewer users a batch in a large catalogue).
    pub batch_users: usize,
    /// Rank all items for only this many users of the split, a random sample fixed by
    /// `sample_seed` (the same users at every validation, for every model), and report
    /// each metric with its standard error (`Metrics::se`). 0 (the default): every user,
    /// exactly (RLMRec's protocol); so is a sample at least as large as the split's users.
    pub sample_users: usize,
    /// Seed of the user sample (independent of `train.seed`, so that every seed of a
    /// model is ranked on the same users).
    pub sample_seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            ks: vec![5, 10, 20],
            batch_users: 1024,
            sample_users: 0,
            sample_seed: 1,
        }
    }
}

/// The users an evaluation ranks: every one of `users` (ascending), or the fixed random
/// sample of `opts.sample_users` of them (ascending) when that is fewer.
pub fn sampled_users(users: Vec<u32>, opts: &EvalOptions) -> (Vec<u32>, Option<usize>) {
    let n = users.len();
    if opts.sample_users == 0 || opts.sample_users >= n {
        return (users, None);
    }
    let mut rng = crate::rng::Rng::derive(opts.sample_seed, "eval-users");
    let mut picked: Vec<u32> = rng
        .sample_distinct(n, opts.sample_users)
        .into_iter()
        .map(|k| users[k])
        .collect();
    picked.sort_unstable();
    (picked, Some(n))
}

/// Why an evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("evaluation options: {0}")]
    Options(String),
    #[error(
        "{what} has {got} users but the ground truth has {expected}: all splits must share one user id space"
    )]
    UserCount {
        what: String,
        got: usize,
        expected: usize,
    },
    #[error(
        "{what}: user {user} has item {item}, but the scorer only scores {n_items} items (ids 0..{n_items})"
    )]
    ItemOutOfRange {
        what: String,
        user: usize,
        item: u32,
        n_items: usize,
    },
    #[error("the scorer returned {got} scores for {users} users x {n_items} items (expected {expected})")]
    ScoreLength {
        got: usize,
        users: usize,
        n_items: usize,
        expected: usize,
    },
}

/// Most bytes of scores one batch holds (the scorer's product may hold as many again):
/// with a large catalogue, fewer users are scored at once than `batch_users` asks.
pub const MAX_SCORE_BYTES: usize = 128 << 20;

/// Users scored per batch: `batch_users`, or fewer so that a batch's scores fit in
/// [`MAX_SCORE_BYTES`] (at least one user). The results do not depend on it.
pub fn users_per_batch(batch_users: usize, n_items: usize) -> usize {
    let fit = MAX_SCORE_BYTES / (n_items.max(1) * std::mem::size_of::<f32>());
    batch_users.min(fit).max(1)
}

/// Number of user rows of a `UserItems` (0 for an empty default value).
fn rows(x: &UserItems) -> usize {
    x.offsets.len().saturating_sub(1)
}

/// Checks that every item id of `x` is below `n_items`.
fn check_items(x: &UserItems, what: &str, n_items: usize) -> Result<(), EvalError> {
    for u in 0..rows(x) {
        if let Some(&item) = x.row(u as u32).iter().find(|&&i| i as usize >= n_items) {
            return Err(EvalError::ItemOutOfRange {
                what: what.to_string(),
                user: u,
                item,
                n_items,
            });
        }
    }
    Ok(())
}

/// Sorted, deduplicated cut-offs, or an error when empty or containing 0.
fn checked_ks(opts: &EvalOptions) -> Result<Vec<usize>, EvalError> {
    let mut ks = opts.ks.clone();
    ks.sort_unstable();
    ks.dedup();
    if ks.is_empty() {
        return Err(EvalError::Options(
            "`ks` is empty: give at least one cut-off K".into(),
        ));
    }
    if ks[0] == 0 {
        return Err(EvalError::Options(
            "`ks` contains 0: every cut-off K must be >= 1".into(),
        ));
    }
    if opts.batch_users == 0 {
        return Err(EvalError::Options(
            "`batch_users` is 0: it must be >= 1".into(),
        ));
    }
    Ok(ks)
}

/// Full ranking: for every user with >= 1 item in `truth`, score all items, remove the items
/// of every `exclude` set from the candidates, take the top max(ks), compute metrics;
/// averages over those users.
///
/// Excluded items are never recommended; a ground-truth item that is also excluded can
/// therefore never be a hit (it still counts in |GT|). A user whose every item is excluded
/// gets an empty ranking and scores 0. Precision@K divides by K even when fewer than K
/// items are candidates (K > n_items).
pub fn evaluate(
    scorer: &dyn Scorer,
    truth: &UserItems,
    exclude: &[&UserItems],
    opts: &EvalOptions,
) -> anyhow::Result<Metrics> {
    crate::alloc::keep_freed_memory();
    let ks = checked_ks(opts)?;
    let kmax = *ks.last().expect("checked non-empty");
    let n_items = scorer.n_items();
    let n_users = rows(truth);
    check_items(truth, "ground truth", n_items)?;
    for (j, e) in exclude.iter().enumerate() {
        let what = format!("exclude set {j}");
        if rows(e) != n_users {
            return Err(EvalError::UserCount {
                what,
                got: rows(e),
                expected: n_users,
            }
            .into());
        }
        check_items(e, &what, n_items)?;
    }
    let um = UserMetrics::new(&ks);
    let width = um.width();
    let users: Vec<u32> = (0..n_users as u32)
        .filter(|&u| !truth.row(u).is_empty())
        .collect();
    let (users, population) = sampled_users(users, opts);
    let mut sums = vec![0f64; width];
    let mut squares = vec![0f64; width];
    if users.is_empty() {
        return Ok(um.finish(&sums, 0));
    }

    let mut scores: Vec<f32> = Vec::new();
    let mut per_user: Vec<f64> = Vec::new();
    for batch in users.chunks(users_per_batch(opts.batch_users, n_items)) {
        scorer.score(batch, &mut scores)?;
        let expected = batch.len() * n_items;
        if scores.len() != expected {
            let e = EvalError::ScoreLength {
                got: scores.len(),
                users: batch.len(),
                n_items,
                expected,
            };
            return Err(e.into());
        }
        per_user.clear();
        per_user.resize(batch.len() * width, 0.0);
        // n_items >= 1 here: users have ground-truth items, all checked < n_items.
        scores
            .par_chunks(n_items)
            .zip(per_user.par_chunks_mut(width))
            .zip(batch.par_iter())
            .for_each_init(
                || {
                    (
                        vec![false; n_items],
                        TopK::default(),
                        Vec::with_capacity(kmax),
                    )
                },
                |(mask, topk, ranked), ((row, out), &u)| {
                    for e in exclude {
                        for &i in e.row(u) {
                            mask[i as usize] = true;
                        }
                    }
                    topk.select(row, mask, kmax, ranked);
                    for e in exclude {
                        for &i in e.row(u) {
                            mask[i as usize] = false;
                        }
                    }
                    um.compute(ranked, truth.row(u), out);
                },
            );
        for row in per_user.chunks(width) {
            for ((s, q), v) in sums.iter_mut().zip(squares.iter_mut()).zip(row) {
                *s += v;
                *q += v * v;
            }
        }
    }
    Ok(match population {
        Some(all) => um.finish_sampled(&sums, &squares, users.len(), all),
        None => um.finish(&sums, users.len()),
    })
}
