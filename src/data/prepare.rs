//! Preparation of raw interactions into a [`Dataset`] (SPEC.md section 2 uses RLMRec's
//! splits; for the other data sets we reproduce RLMRec's kind of split).
//!
//! Steps, in this order:
//! 1. **Rating threshold**: keep rows with `rating >= rating_threshold` (needs ratings).
//! 2. **Dedupe**: keep the first row of each (user, item) pair, in input order. Readers of
//!    pre-split data emit train, then validation, then test rows, so a pair present in two
//!    given splits stays in the earlier one.
//! 3. **Iterative k-core**: drop rows whose user has fewer than `user_core` rows or whose
//!    item has fewer than `item_core` rows, and repeat until nothing changes (0 or 1 = off).
//! 4. **Compact ids**: users and items left without rows are dropped and the rest renumbered
//!    densely in their old order ([`IdMap::compact`]); feature rows follow their ids.
//! 5. **Split** ([`SplitKind`]):
//!    - `random`: interaction-level random split that keeps every user and every item in
//!      training (as RLMRec's data). With `n` rows and ratios `r`, the targets are
//!      `n_valid = round(n r1 / sum r)`, `n_test = round(n r2 / sum r)`,
//!      `n_train = n - n_valid - n_test`. The rows are shuffled with
//!      `Rng::derive(seed, "split")`; a pass over the shuffled rows puts a row in the
//!      *cover* when its user or its item has no cover row yet (a greedy edge cover), and a
//!      backward pass drops cover rows whose user and item both have another cover row (so
//!      the cover is minimal: fewer than users + items rows). Cover rows go to training;
//!      the remaining rows, in shuffled order, fill training up to `n_train`, then
//!      validation with `n_valid`, then test.
//!      So the ratios hold exactly (up to rounding) whenever the cover fits in `n_train`;
//!      when it does not (very sparse data), training is the cover and the rest is shared
//!      between validation and test in the ratio `r1 : r2`.
//!    - `temporal`: per user, rows sorted by timestamp (ties by input order); the last goes
//!      to test, the second-to-last to validation, the rest to training. Users with fewer
//!      than 3 rows keep all of them in training (use `user_core = 3` to drop them instead).
//!      Items are not guaranteed to appear in training. Needs timestamps; ignores `ratios`.
//!    - `given`: the split recorded by the reader (RLMRec data).
//!
//! Each split is sorted by (user, item). An empty split is an error.

use super::error::{DataError, Result};
use super::{Dataset, Features, Pairs, RawInteractions};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// How interactions are divided into train / validation / test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitKind {
    /// Random interaction-level split keeping every user and item in training.
    #[default]
    Random,
    /// Per user: last interaction -> test, second-to-last -> validation.
    #[serde(rename = "temporal")]
    TemporalLeaveOut,
    /// The split that came with the data.
    Given,
}

/// Options of [`prepare`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareOptions {
    /// Keep only rows with `rating >= threshold` (e.g. 4 for MovieLens "liked").
    pub rating_threshold: Option<f32>,
    /// Minimum number of interactions per user (iterative k-core; 0 = off).
    pub user_core: usize,
    /// Minimum number of interactions per item (iterative k-core; 0 = off).
    pub item_core: usize,
    /// How to split.
    pub split: SplitKind,
    /// Train : validation : test proportions for the random split (default 3:1:1).
    pub ratios: [f64; 3],
    /// Seed of the random split.
    pub seed: u64,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            rating_threshold: None,
            user_core: 0,
            item_core: 0,
            split: SplitKind::Random,
            ratios: [3.0, 1.0, 1.0],
            seed: 42,
        }
    }
}

impl PrepareOptions {
    /// Checks the options on their own: ratios finite and positive, threshold finite.
    pub fn validate(&self) -> Result<()> {
        if self.ratios.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            return Err(DataError::Invalid(format!(
                "prepare: ratios must be three positive numbers (train, valid, test), got {:?}",
                self.ratios
            )));
        }
        if let Some(t) = self.rating_threshold {
            if !t.is_finite() {
                return Err(DataError::Invalid(format!(
                    "prepare: rating_threshold must be a finite number, got {t}"
                )));
            }
        }
        Ok(())
    }
}

/// Filters, compacts and splits `raw` into a [`Dataset`] called `name` (see the module
/// documentation for the steps).
pub fn prepare(raw: RawInteractions, name: &str, opts: &PrepareOptions) -> Result<Dataset> {
    opts.validate()?;
    check_consistent(&raw)?;
    let n_raw = raw.len();
    if n_raw == 0 {
        return Err(DataError::Invalid(format!(
            "prepare {name}: no interactions"
        )));
    }
    match opts.split {
        SplitKind::Given if raw.given_split.is_none() => {
            return Err(DataError::Invalid(format!(
                "prepare {name}: split `given` needs data that comes split (e.g. RLMRec's)"
            )))
        }
        SplitKind::TemporalLeaveOut if raw.timestamps.is_none() => {
            return Err(DataError::Invalid(format!(
                "prepare {name}: split `temporal` needs timestamps, and the data has none"
            )))
        }
        _ => {}
    }

    // 1. rating threshold
    let mut rows: Vec<usize> = match opts.rating_threshold {
        None => (0..n_raw).collect(),
        Some(t) => {
            let Some(r) = &raw.ratings else {
                return Err(DataError::Invalid(format!(
                    "prepare {name}: rating_threshold is set but the data has no ratings"
                )));
            };
            (0..n_raw).filter(|&k| r[k] >= t).collect()
        }
    };
    let n_threshold = rows.len();

    // 2. dedupe (user, item), first row wins
    let mut seen: HashSet<u64> = HashSet::with_capacity(rows.len());
    rows.retain(|&k| seen.insert(((raw.users[k] as u64) << 32) | raw.items[k] as u64));
    drop(seen);
    let n_dedupe = rows.len();

    // 3. iterative k-core
    let (nu, ni) = (raw.user_ids.len(), raw.item_ids.len());
    let (du, di) = k_core(&raw, &mut rows, nu, ni, opts.user_core, opts.item_core);
    tracing::info!(
        "prepare {name}: {n_raw} rows, {n_threshold} after threshold, {n_dedupe} after dedupe, {} after k-core",
        rows.len()
    );
    if rows.is_empty() {
        return Err(DataError::Invalid(format!(
            "prepare {name}: no interactions left after filtering ({n_raw} read, {n_threshold} \
             after the rating threshold, {n_dedupe} distinct, 0 after the {}-user/{}-item core)",
            opts.user_core, opts.item_core
        )));
    }

    // 4. compact ids
    let keep_u: Vec<bool> = du.iter().map(|&d| d > 0).collect();
    let keep_i: Vec<bool> = di.iter().map(|&d| d > 0).collect();
    let (user_ids, remap_u) = raw.user_ids.compact(&keep_u);
    let (item_ids, remap_i) = raw.item_ids.compact(&keep_i);
    let user_features = raw
        .user_features
        .as_ref()
        .map(|f| remap_features(f, &keep_u));
    let item_features = raw
        .item_features
        .as_ref()
        .map(|f| remap_features(f, &keep_i));
    let pairs: Vec<(u32, u32)> = rows
        .iter()
        .map(|&k| {
            (
                remap_u[raw.users[k] as usize],
                remap_i[raw.items[k] as usize],
            )
        })
        .collect();

    // 5. split
    let mut parts = match opts.split {
        SplitKind::Random => random_split(&pairs, user_ids.len(), item_ids.len(), opts),
        SplitKind::TemporalLeaveOut => {
            let ts = raw.timestamps.as_ref().unwrap();
            let t: Vec<f64> = rows.iter().map(|&k| ts[k]).collect();
            temporal_split(&pairs, &t, user_ids.len())
        }
        SplitKind::Given => {
            let g = raw.given_split.as_ref().unwrap();
            let mut parts: [Pairs; 3] = Default::default();
            for (p, &k) in pairs.iter().zip(&rows) {
                parts[g[k] as usize].push(*p);
            }
            parts
        }
    };
    for (p, what) in parts.iter_mut().zip(["training", "validation", "test"]) {
        if p.is_empty() {
            return Err(DataError::Invalid(format!(
                "prepare {name}: the {what} split is empty ({} interactions after filtering, \
                 split {:?}); use more data or weaker filters",
                pairs.len(),
                opts.split
            )));
        }
        p.sort_unstable();
    }
    let [train, valid, test] = parts;
    Ok(Dataset {
        name: name.to_string(),
        user_ids,
        item_ids,
        user_features,
        item_features,
        train,
        valid,
        test,
    })
}

/// Checks that the parallel columns of `raw` agree in length and ids are in range.
fn check_consistent(raw: &RawInteractions) -> Result<()> {
    let n = raw.users.len();
    let bad = |what: &str, len: usize| {
        DataError::Invalid(format!(
            "raw interactions: {what} has {len} entries, users has {n}"
        ))
    };
    if raw.items.len() != n {
        return Err(bad("items", raw.items.len()));
    }
    if let Some(v) = &raw.ratings {
        if v.len() != n {
            return Err(bad("ratings", v.len()));
        }
    }
    if let Some(v) = &raw.timestamps {
        if v.len() != n {
            return Err(bad("timestamps", v.len()));
        }
    }
    if let Some(v) = &raw.given_split {
        if v.len() != n {
            return Err(bad("given_split", v.len()));
        }
        if let Some(s) = v.iter().find(|&&s| s > 2) {
            return Err(DataError::Invalid(format!(
                "raw interactions: split index {s} (expected 0, 1 or 2)"
            )));
        }
    }
    let (nu, ni) = (raw.user_ids.len(), raw.item_ids.len());
    if let Some(u) = raw.users.iter().find(|&&u| u as usize >= nu) {
        return Err(DataError::Invalid(format!(
            "raw interactions: user id {u} >= {nu} users"
        )));
    }
    if let Some(i) = raw.items.iter().find(|&&i| i as usize >= ni) {
        return Err(DataError::Invalid(format!(
            "raw interactions: item id {i} >= {ni} items"
        )));
    }
    Ok(())
}

/// Iterative k-core over the row indices `rows`; returns the final user and item degrees.
fn k_core(
    raw: &RawInteractions,
    rows: &mut Vec<usize>,
    nu: usize,
    ni: usize,
    user_core: usize,
    item_core: usize,
) -> (Vec<usize>, Vec<usize>) {
    loop {
        let mut du = vec![0usize; nu];
        let mut di = vec![0usize; ni];
        for &k in rows.iter() {
            du[raw.users[k] as usize] += 1;
            di[raw.items[k] as usize] += 1;
        }
        let before = rows.len();
        rows.retain(|&k| {
            du[raw.users[k] as usize] >= user_core && di[raw.items[k] as usize] >= item_core
        });
        if rows.len() == before {
            return (du, di);
        }
    }
}

/// Keeps the feature rows of the kept ids, in order (missing rows become empty).
fn remap_features(f: &Features, keep: &[bool]) -> Features {
    let empty = vec![String::new(); f.columns.len()];
    let rows = keep
        .iter()
        .enumerate()
        .filter(|(_, &k)| k)
        .map(|(id, _)| f.rows.get(id).cloned().unwrap_or_else(|| empty.clone()))
        .collect();
    Features {
        columns: f.columns.clone(),
        rows,
    }
}

/// Target sizes (train, valid, test) of `n` rows under `ratios`.
pub fn split_sizes(n: usize, ratios: &[f64; 3]) -> [usize; 3] {
    let s: f64 = ratios.iter().sum();
    let n_valid = ((n as f64) * ratios[1] / s).round() as usize;
    let n_test = ((n as f64) * ratios[2] / s).round() as usize;
    let n_valid = n_valid.min(n);
    let n_test = n_test.min(n - n_valid);
    [n - n_valid - n_test, n_valid, n_test]
}

/// The random split described in the module documentation.
fn random_split(pairs: &[(u32, u32)], nu: usize, ni: usize, opts: &PrepareOptions) -> [Pairs; 3] {
    let n = pairs.len();
    let [n_train, n_valid, _] = split_sizes(n, &opts.ratios);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(opts.seed, "split").shuffle(&mut order);

    // greedy edge cover over the shuffled rows ...
    let mut cu = vec![0u32; nu];
    let mut ci = vec![0u32; ni];
    let mut in_cover = vec![false; n];
    for (pos, &k) in order.iter().enumerate() {
        let (u, i) = (pairs[k].0 as usize, pairs[k].1 as usize);
        if cu[u] == 0 || ci[i] == 0 {
            cu[u] += 1;
            ci[i] += 1;
            in_cover[pos] = true;
        }
    }
    // ... made minimal: drop cover rows whose user and item both have another cover row
    for pos in (0..n).rev() {
        let (u, i) = (pairs[order[pos]].0 as usize, pairs[order[pos]].1 as usize);
        if in_cover[pos] && cu[u] > 1 && ci[i] > 1 {
            cu[u] -= 1;
            ci[i] -= 1;
            in_cover[pos] = false;
        }
    }
    let mut train: Pairs = Vec::with_capacity(n_train);
    let mut rest: Pairs = Vec::with_capacity(n);
    for (pos, &k) in order.iter().enumerate() {
        if in_cover[pos] {
            train.push(pairs[k]);
        } else {
            rest.push(pairs[k]);
        }
    }
    let (n_more_train, n_valid) = if train.len() <= n_train {
        (n_train - train.len(), n_valid)
    } else {
        // cover larger than the target: share the rest between valid and test as r1 : r2
        let r = opts.ratios[1] / (opts.ratios[1] + opts.ratios[2]);
        (0, ((rest.len() as f64) * r).round() as usize)
    };
    let mut it = rest.into_iter();
    train.extend(it.by_ref().take(n_more_train));
    let valid: Pairs = it.by_ref().take(n_valid).collect();
    let test: Pairs = it.collect();
    [train, valid, test]
}

/// The temporal leave-one-out split described in the module documentation.
fn temporal_split(pairs: &[(u32, u32)], ts: &[f64], nu: usize) -> [Pairs; 3] {
    let mut by_user: Vec<Vec<usize>> = vec![Vec::new(); nu];
    for (k, &(u, _)) in pairs.iter().enumerate() {
        by_user[u as usize].push(k);
    }
    let mut parts: [Pairs; 3] = Default::default();
    for rows in &mut by_user {
        // stable: equal timestamps keep input order
        rows.sort_by(|&a, &b| ts[a].total_cmp(&ts[b]));
        let m = rows.len();
        for (j, &k) in rows.iter().enumerate() {
            let s = if m < 3 || j + 2 < m {
                0
            } else if j + 2 == m {
                1
            } else {
                2
            };
            parts[s].push(pairs[k]);
        }
    }
    parts
}
