//! Preparation (threshold, dedupe, k-core, compaction, splits) and dataset statistics.

use darec::data::prepare::{prepare, split_sizes, PrepareOptions, SplitKind};
use darec::data::stats::{stats, Quantiles};
use darec::data::{Dataset, Features, IdMap, RawInteractions};
use darec::rng::Rng;
use std::collections::HashSet;

/// Raw interactions from (user, item) pairs with external ids `u<n>` / `i<n>`.
fn raw_from(pairs: &[(u32, u32)]) -> RawInteractions {
    let nu = pairs.iter().map(|p| p.0 + 1).max().unwrap_or(0);
    let ni = pairs.iter().map(|p| p.1 + 1).max().unwrap_or(0);
    RawInteractions {
        users: pairs.iter().map(|p| p.0).collect(),
        items: pairs.iter().map(|p| p.1).collect(),
        user_ids: IdMap::from_external((0..nu).map(|u| format!("u{u}")).collect()),
        item_ids: IdMap::from_external((0..ni).map(|i| format!("i{i}")).collect()),
        ..Default::default()
    }
}

/// External (user, item) pairs of a split, sorted.
fn ext(ds: &Dataset, pairs: &[(u32, u32)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|&(u, i)| {
            (
                ds.user_ids.external(u).to_string(),
                ds.item_ids.external(i).to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn opts(split: SplitKind) -> PrepareOptions {
    PrepareOptions {
        split,
        ..Default::default()
    }
}

fn err(r: Result<Dataset, darec::data::DataError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Random sparse interactions: `nu` users, `ni` items, each user with 3..=`max_deg` items
/// drawn with a popularity skew; duplicates included on purpose.
fn random_raw(rng: &mut Rng, nu: u32, ni: u32, max_deg: usize) -> RawInteractions {
    let mut pairs = Vec::new();
    for u in 0..nu {
        let d = 3 + rng.uniform_usize(max_deg - 2);
        for _ in 0..d {
            // min of two uniforms: low ids are more popular
            let i = rng
                .uniform_usize(ni as usize)
                .min(rng.uniform_usize(ni as usize));
            pairs.push((u, i as u32));
        }
    }
    // make sure every item id occurs once
    for i in 0..ni {
        pairs.push((rng.uniform_usize(nu as usize) as u32, i));
    }
    raw_from(&pairs)
}

#[test]
fn split_sizes_by_hand() {
    assert_eq!(split_sizes(10, &[3.0, 1.0, 1.0]), [6, 2, 2]);
    assert_eq!(split_sizes(7, &[3.0, 1.0, 1.0]), [5, 1, 1]); // 1.4 -> 1, 1.4 -> 1
    assert_eq!(split_sizes(8, &[3.0, 1.0, 1.0]), [4, 2, 2]); // 1.6 -> 2
    assert_eq!(split_sizes(100, &[8.0, 1.0, 1.0]), [80, 10, 10]);
    assert_eq!(split_sizes(3, &[1.0, 1.0, 1.0]), [1, 1, 1]);
    assert_eq!(split_sizes(0, &[3.0, 1.0, 1.0]), [0, 0, 0]);
}

#[test]
fn random_split_properties_over_seeds() {
    let mut gen = Rng::new(7);
    for trial in 0..30u64 {
        let nu = 20 + gen.uniform_usize(60) as u32;
        let ni = 10 + gen.uniform_usize(40) as u32;
        let raw = random_raw(&mut gen, nu, ni, 25);
        let input: HashSet<(u32, u32)> = raw
            .users
            .iter()
            .copied()
            .zip(raw.items.iter().copied())
            .collect();
        let ratios = [[3.0, 1.0, 1.0], [8.0, 1.0, 1.0], [2.0, 1.0, 2.0]][trial as usize % 3];
        let o = PrepareOptions {
            seed: trial,
            ratios,
            ..Default::default()
        };
        let ds = prepare(raw, "synthetic", &o).unwrap();

        // compaction keeps every id (all have rows) and external ids line up
        assert_eq!((ds.n_users(), ds.n_items()), (nu as usize, ni as usize));
        let to_old = |(u, i): (u32, u32)| -> (u32, u32) {
            let u = ds.user_ids.external(u)[1..].parse().unwrap();
            let i = ds.item_ids.external(i)[1..].parse().unwrap();
            (u, i)
        };
        // every user and item in train
        let tu: HashSet<u32> = ds.train.iter().map(|p| p.0).collect();
        let ti: HashSet<u32> = ds.train.iter().map(|p| p.1).collect();
        assert_eq!(
            tu.len(),
            ds.n_users(),
            "trial {trial}: user missing from train"
        );
        assert_eq!(
            ti.len(),
            ds.n_items(),
            "trial {trial}: item missing from train"
        );
        // disjoint, no duplicates, union == deduplicated input
        let mut all: Vec<(u32, u32)> = Vec::new();
        for s in [&ds.train, &ds.valid, &ds.test] {
            all.extend(s.iter().map(|&p| to_old(p)));
        }
        let set: HashSet<(u32, u32)> = all.iter().copied().collect();
        assert_eq!(
            set.len(),
            all.len(),
            "trial {trial}: splits overlap or hold duplicates"
        );
        assert_eq!(set, input, "trial {trial}: union != input");
        // ratios hold to within rounding
        let n = all.len();
        let want = split_sizes(n, &ratios);
        assert_eq!(
            [ds.train.len(), ds.valid.len(), ds.test.len()],
            want,
            "trial {trial}"
        );
        let s: f64 = ratios.iter().sum();
        assert!((ds.valid.len() as f64 - n as f64 * ratios[1] / s).abs() <= 0.5);
        // sorted output
        assert!(ds.train.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn random_split_is_deterministic_in_the_seed() {
    let mut gen = Rng::new(1);
    let raw = random_raw(&mut gen, 50, 30, 20);
    let a = prepare(
        raw.clone(),
        "x",
        &PrepareOptions {
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let b = prepare(
        raw.clone(),
        "x",
        &PrepareOptions {
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let c = prepare(
        raw,
        "x",
        &PrepareOptions {
            seed: 6,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((&a.train, &a.valid, &a.test), (&b.train, &b.valid, &b.test));
    assert_ne!(a.test, c.test, "another seed gives another split");
}

#[test]
fn random_split_when_the_cover_exceeds_the_train_target() {
    // a perfect matching: every row is needed for coverage -> all in train -> valid/test empty
    let m: Vec<(u32, u32)> = (0..10).map(|k| (k, k)).collect();
    let e = err(prepare(raw_from(&m), "matching", &opts(SplitKind::Random)));
    assert!(e.contains("validation split is empty"), "{e}");

    // users 0..7 all rated item 0, users 0..3 also item 1 (10 rows, 9 ids). Users 3..7 need
    // their only row; item 1 needs one of its rows; users 0..3 need one row each: every
    // minimal cover has 7 rows, above the train target of 6. The other 3 rows are shared
    // 1:1 between valid and test: round(1.5) = 2 and 1.
    let mut p: Vec<(u32, u32)> = (0..7).map(|u| (u, 0)).collect();
    p.extend((0..3).map(|u| (u, 1)));
    let mut trains = HashSet::new();
    for seed in 0..20 {
        let o = PrepareOptions {
            seed,
            ..Default::default()
        };
        let ds = prepare(raw_from(&p), "star", &o).unwrap();
        let tu: HashSet<u32> = ds.train.iter().map(|p| p.0).collect();
        let ti: HashSet<u32> = ds.train.iter().map(|p| p.1).collect();
        assert_eq!((tu.len(), ti.len()), (7, 2), "seed {seed}");
        assert_eq!(
            [ds.train.len(), ds.valid.len(), ds.test.len()],
            [7, 2, 1],
            "seed {seed}"
        );
        trains.insert(ds.train.clone());
    }
    assert!(trains.len() > 1, "the cover is random too");
}

#[test]
fn threshold_dedupe_kcore_and_compaction_by_hand() {
    // users a..e, items p..t; ratings decide the threshold, (a,p) is duplicated
    let mut raw = RawInteractions::default();
    let rows = [
        ("a", "p", 5.0),
        ("a", "q", 4.0),
        ("a", "p", 1.0), // duplicate of row 0 (dropped by dedupe; below threshold anyway)
        ("b", "p", 4.5),
        ("b", "q", 4.0),
        ("c", "p", 4.0),
        ("c", "q", 5.0),
        ("c", "r", 4.0), // r has one row -> dropped by the 2-core, then c still has 2
        ("d", "s", 2.0), // below threshold: d and s vanish
        ("e", "t", 5.0), // e and t have one row each: dropped by the 2-core
        ("a", "p", 4.0), // duplicate kept out by dedupe
    ];
    let mut r = Vec::new();
    for (u, i, x) in rows {
        raw.users.push(raw.user_ids.intern(u));
        raw.items.push(raw.item_ids.intern(i));
        r.push(x as f32);
    }
    raw.ratings = Some(r);
    raw.item_features = Some(Features {
        columns: vec!["title".into()],
        rows: ["P", "Q", "R", "S", "T"]
            .iter()
            .map(|t| vec![t.to_string()])
            .collect(),
    });
    let o = PrepareOptions {
        rating_threshold: Some(4.0),
        user_core: 2,
        item_core: 2,
        split: SplitKind::Given,
        ..Default::default()
    };
    raw.given_split = Some(vec![0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0]);
    let ds = prepare(raw, "hand", &o).unwrap();
    assert_eq!(ds.user_ids.external, vec!["a", "b", "c"]);
    assert_eq!(ds.item_ids.external, vec!["p", "q"]);
    let f = ds.item_features.as_ref().unwrap();
    assert_eq!(
        f.rows,
        vec![vec!["P".to_string()], vec!["Q".to_string()]],
        "features follow ids"
    );
    assert_eq!(
        ext(&ds, &ds.train),
        vec![
            ("a".into(), "p".into()),
            ("a".into(), "q".into()),
            ("b".into(), "p".into()),
            ("c".into(), "p".into())
        ]
    );
    assert_eq!(ext(&ds, &ds.valid), vec![("b".into(), "q".into())]);
    assert_eq!(ext(&ds, &ds.test), vec![("c".into(), "q".into())]);
}

#[test]
fn kcore_is_iterative() {
    // 2-core needs four rounds: item 2 has one row -> drop (1,2); then user 1 has one row
    // -> drop (1,1); then item 1 -> drop (0,1); then user 0 -> drop (0,0). Left: users 2, 3
    // x items 0, 3.
    let p = [
        (0, 0),
        (0, 1),
        (1, 1),
        (1, 2),
        (2, 0),
        (2, 3),
        (3, 0),
        (3, 3),
    ];
    let mut raw = raw_from(&p);
    raw.given_split = Some(vec![0; 8]);
    let o = PrepareOptions {
        user_core: 2,
        item_core: 2,
        split: SplitKind::Given,
        ..Default::default()
    };
    let e = err(prepare(raw.clone(), "chain", &o)); // valid split empty, but filtering happened
    assert!(e.contains("validation split is empty"), "{e}");
    raw.given_split = Some(vec![0, 0, 0, 0, 0, 1, 0, 2]);
    let ds = prepare(raw, "chain", &o).unwrap();
    assert_eq!(ds.user_ids.external, vec!["u2", "u3"]);
    assert_eq!(ds.item_ids.external, vec!["i0", "i3"]);
    assert_eq!(ds.train, vec![(0, 0), (1, 0)]);
}

#[test]
fn temporal_leave_out_by_hand() {
    let p = [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
        (1, 1),
        (2, 2),
        (1, 3),
    ];
    let mut raw = raw_from(&p);
    // user 0: times 30, 10, 20, 20 -> order i1(10), i2(20), i3(20, later row), i0(30)
    // user 1: 3 rows at equal time -> input order i0, i1, i3; user 2: one row -> train
    raw.timestamps = Some(vec![30.0, 10.0, 20.0, 20.0, 5.0, 5.0, 1.0, 5.0]);
    let ds = prepare(raw.clone(), "t", &opts(SplitKind::TemporalLeaveOut)).unwrap();
    assert_eq!(ds.train, vec![(0, 1), (0, 2), (1, 0), (2, 2)]);
    assert_eq!(ds.valid, vec![(0, 3), (1, 1)]);
    assert_eq!(ds.test, vec![(0, 0), (1, 3)]);

    raw.timestamps = None;
    let e = err(prepare(raw, "t", &opts(SplitKind::TemporalLeaveOut)));
    assert!(e.contains("needs timestamps"), "{e}");
}

#[test]
fn option_errors_and_serde() {
    let raw = raw_from(&[(0, 0), (1, 1)]);
    let e = err(prepare(raw.clone(), "x", &opts(SplitKind::Given)));
    assert!(e.contains("given") && e.contains("comes split"), "{e}");
    let o = PrepareOptions {
        rating_threshold: Some(4.0),
        ..Default::default()
    };
    assert!(err(prepare(raw.clone(), "x", &o)).contains("no ratings"));
    let o = PrepareOptions {
        ratios: [3.0, 0.0, 1.0],
        ..Default::default()
    };
    assert!(o.validate().unwrap_err().to_string().contains("positive"));
    let o = PrepareOptions {
        ratios: [3.0, f64::NAN, 1.0],
        ..Default::default()
    };
    assert!(o.validate().is_err());
    assert!(PrepareOptions::default().validate().is_ok());
    assert!(err(prepare(
        RawInteractions::default(),
        "x",
        &PrepareOptions::default()
    ))
    .contains("no interactions"));
    let o = PrepareOptions {
        user_core: 5,
        ..Default::default()
    };
    assert!(err(prepare(raw.clone(), "x", &o)).contains("no interactions left"));
    let mut bad = raw.clone();
    bad.items.pop();
    assert!(err(prepare(bad, "x", &PrepareOptions::default())).contains("items has 1"));

    let o: PrepareOptions =
        serde_json::from_str(r#"{"split": "temporal", "user_core": 5, "rating_threshold": 4}"#)
            .unwrap();
    assert_eq!(o.split, SplitKind::TemporalLeaveOut);
    assert_eq!(
        (o.user_core, o.item_core, o.ratios),
        (5, 0, [3.0, 1.0, 1.0])
    );
    for (s, k) in [("random", SplitKind::Random), ("given", SplitKind::Given)] {
        let o: PrepareOptions = serde_json::from_str(&format!(r#"{{"split": "{s}"}}"#)).unwrap();
        assert_eq!(o.split, k);
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{s}\""));
    }
    assert!(serde_json::from_str::<PrepareOptions>(r#"{"split": "Temporal"}"#).is_err());
    assert!(serde_json::from_str::<PrepareOptions>(r#"{"splits": "random"}"#).is_err());
}

#[test]
fn quantiles_by_hand() {
    // sorted 1 2 3 4 10: p25 at pos 1 -> 2, p50 at 2 -> 3, p75 at 3 -> 4,
    // p90 at 3.6 -> 4 + 0.6 * 6 = 7.6, mean 20 / 5 = 4
    let q = Quantiles::of(&[10, 3, 1, 4, 2]);
    assert_eq!(
        (q.min, q.p25, q.p50, q.p75, q.max, q.mean),
        (1.0, 2.0, 3.0, 4.0, 10.0, 4.0)
    );
    assert!((q.p90 - 7.6).abs() < 1e-12, "{}", q.p90);
    // 0 0 1 5: p25 at 0.75 -> 0, p50 at 1.5 -> 0.5, p75 at 2.25 -> 1 + 0.25 * 4 = 2,
    // p90 at 2.7 -> 1 + 0.7 * 4 = 3.8
    let q = Quantiles::of(&[5, 0, 1, 0]);
    assert_eq!((q.p25, q.p50, q.p75), (0.0, 0.5, 2.0));
    assert!((q.p90 - 3.8).abs() < 1e-12);
    assert_eq!(Quantiles::of(&[7]).p90, 7.0);
    assert_eq!(Quantiles::of(&[]), Quantiles::default());
}

#[test]
fn stats_by_hand() {
    let ds = Dataset {
        name: "toy".into(),
        user_ids: IdMap::identity(3),
        item_ids: IdMap::identity(4),
        train: vec![(0, 0), (0, 1), (0, 2), (1, 0)],
        valid: vec![(1, 1)],
        test: vec![(2, 3), (1, 2)],
        ..Default::default()
    };
    let s = stats(&ds);
    assert_eq!(
        (s.users, s.items, s.train, s.valid, s.test),
        (3, 4, 4, 1, 2)
    );
    assert!((s.train_density - 4.0 / 12.0).abs() < 1e-12);
    // user degrees 3 1 0 -> sorted 0 1 3: p50 1, p25 0.5, p90 at 1.8 -> 1 + 0.8 * 2 = 2.6
    assert_eq!(
        (s.user_degree.min, s.user_degree.p25, s.user_degree.p50),
        (0.0, 0.5, 1.0)
    );
    assert!((s.user_degree.p90 - 2.6).abs() < 1e-12);
    // item degrees 2 1 1 0 -> sorted 0 1 1 2
    assert_eq!(
        (s.item_degree.min, s.item_degree.p50, s.item_degree.max),
        (0.0, 1.0, 2.0)
    );
    assert_eq!((s.users_without_train, s.items_without_train), (1, 1));
    let text = s.to_string();
    assert!(text.contains("dataset toy: 3 users x 4 items"), "{text}");
    let line = |w: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(w))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        line("train ").split_whitespace().collect::<Vec<_>>(),
        ["train", "4", "57.1%"]
    );
    assert_eq!(
        line("items").split_whitespace().collect::<Vec<_>>()[1..4],
        ["0", "0.8", "1"]
    );
    assert!(text.contains("1 users, 1 items"), "{text}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["user_degree"]["p90"], 2.6);
    assert_eq!(json["valid"], 1);
}
