//! Held-out variants of a prepared data set, for measuring what a model does with users
//! and items it never saw: [`without_user_history`] keeps the users but drops their
//! training and validation interactions (fold-in studies); [`without_items`] removes items
//! from every split and renumbers the rest (cold-start studies).

use super::{Dataset, Features, IdMap};
use crate::rng::Rng;

/// `fraction` of `0..n`, drawn without replacement with `seed` (sorted).
pub fn sample_fraction(n: usize, fraction: f64, seed: u64, what: &str) -> Vec<u32> {
    let k = ((n as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let mut rng = Rng::derive(seed, what);
    let mut ids: Vec<u32> = rng
        .sample_distinct(n, k)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    ids.sort_unstable();
    ids
}

/// `ds` with the training and validation interactions of `users` removed (their test
/// interactions stay, to be ranked after fold-in). Ids are unchanged.
pub fn without_user_history(ds: &Dataset, users: &[u32]) -> Dataset {
    let mut held = vec![false; ds.n_users()];
    users.iter().for_each(|&u| held[u as usize] = true);
    let keep = |p: &Vec<(u32, u32)>| -> Vec<(u32, u32)> {
        p.iter()
            .copied()
            .filter(|(u, _)| !held[*u as usize])
            .collect()
    };
    Dataset {
        train: keep(&ds.train),
        valid: keep(&ds.valid),
        ..ds.clone()
    }
}

/// `ds` without `items` in any split; the remaining items are renumbered in order.
/// Returns the data set and, for each new item id, its id in `ds`.
pub fn without_items(ds: &Dataset, items: &[u32]) -> (Dataset, Vec<u32>) {
    let mut held = vec![false; ds.n_items()];
    items.iter().for_each(|&i| held[i as usize] = true);
    let kept: Vec<u32> = (0..ds.n_items() as u32)
        .filter(|&i| !held[i as usize])
        .collect();
    let mut new_of_old = vec![u32::MAX; ds.n_items()];
    for (new, &old) in kept.iter().enumerate() {
        new_of_old[old as usize] = new as u32;
    }
    let remap = |p: &Vec<(u32, u32)>| -> Vec<(u32, u32)> {
        p.iter()
            .filter(|(_, i)| !held[*i as usize])
            .map(|&(u, i)| (u, new_of_old[i as usize]))
            .collect()
    };
    let item_ids = IdMap::from_external(
        kept.iter()
            .map(|&i| ds.item_ids.external(i).to_string())
            .collect(),
    );
    let item_features = ds.item_features.as_ref().map(|f| Features {
        columns: f.columns.clone(),
        rows: kept.iter().map(|&i| f.rows[i as usize].clone()).collect(),
    });
    (
        Dataset {
            name: ds.name.clone(),
            user_ids: ds.user_ids.clone(),
            item_ids,
            user_features: ds.user_features.clone(),
            item_features,
            train: remap(&ds.train),
            valid: remap(&ds.valid),
            test: remap(&ds.test),
        },
        kept,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        Dataset {
            name: "toy".into(),
            user_ids: IdMap::identity(2),
            item_ids: IdMap::from_external(vec!["a".into(), "b".into(), "c".into()]),
            user_features: None,
            item_features: None,
            train: vec![(0, 0), (0, 1), (1, 2)],
            valid: vec![(1, 0)],
            test: vec![(0, 2), (1, 1)],
        }
    }

    #[test]
    fn items_are_removed_everywhere_and_renumbered() {
        let (d, kept) = without_items(&toy(), &[1]);
        assert_eq!(kept, vec![0, 2]);
        assert_eq!(d.item_ids.external, vec!["a", "c"]);
        assert_eq!(d.train, vec![(0, 0), (1, 1)]);
        assert_eq!(d.valid, vec![(1, 0)]);
        assert_eq!(d.test, vec![(0, 1)]);
    }

    #[test]
    fn held_out_users_keep_only_their_test_items() {
        let d = without_user_history(&toy(), &[0]);
        assert_eq!(d.train, vec![(1, 2)]);
        assert_eq!(d.valid, vec![(1, 0)]);
        assert_eq!(d.test, toy().test);
        let s = sample_fraction(100, 0.1, 1, "x");
        assert_eq!(s.len(), 10);
        assert_eq!(s, sample_fraction(100, 0.1, 1, "x"));
    }
}
