//! Full-ranking evaluation (SPEC section 2) against hand-computed rankings, plus the
//! MostPop sanity floor on the real amazon split when the data is present.
//!
//! Notation in comments: d(r) = 1/log2(r+1): d(1) = 1, d(2) = 0.630930, d(3) = 0.5,
//! d(4) = 0.430677.

#[path = "support/inputs.rs"]
mod inputs;

use candle_core::{Device, Tensor};
use darec::data::UserItems;
use darec::eval::{
    evaluate, markdown_table, EmbeddingScorer, EvalOptions, Metrics, MostPop, Scorer,
};
use std::path::Path;

/// A fixed score matrix, one row per user.
struct Fixed {
    rows: Vec<Vec<f32>>,
}

impl Scorer for Fixed {
    fn n_items(&self) -> usize {
        self.rows[0].len()
    }
    fn score(&self, users: &[u32], out: &mut Vec<f32>) -> anyhow::Result<()> {
        out.clear();
        for &u in users {
            out.extend_from_slice(&self.rows[u as usize]);
        }
        Ok(())
    }
}

/// Per-user item lists from `lists[u]`.
fn ui(lists: &[&[u32]]) -> UserItems {
    let pairs: Vec<(u32, u32)> = lists
        .iter()
        .enumerate()
        .flat_map(|(u, l)| l.iter().map(move |&i| (u as u32, i)))
        .collect();
    UserItems::from_pairs(lists.len(), &pairs)
}

fn opts(ks: &[usize]) -> EvalOptions {
    EvalOptions {
        ks: ks.to_vec(),
        batch_users: 1024,
        ..Default::default()
    }
}

fn close(m: &Metrics, key: &str, want: f64) {
    let got = m.get(key).unwrap_or_else(|| panic!("missing {key}"));
    assert!((got - want).abs() < 1e-6, "{key}: got {got}, want {want}");
}

#[test]
fn tiny_matrix_by_hand() {
    let s = Fixed {
        rows: vec![
            // user 0 ranking: 1 (.9), 3 (.8), 5 (.5), 2 (.3), 4 (.2), 0 (.1)
            vec![0.1, 0.9, 0.3, 0.8, 0.2, 0.5],
            // user 1 ranking (ties by id): 5 (.9), 0, 1, 2 (.7), 3, 4 (.1)
            vec![0.7, 0.7, 0.7, 0.1, 0.1, 0.9],
            // user 2 has no test items: not averaged
            vec![0.0; 6],
        ],
    };
    let truth = ui(&[&[3, 4], &[1], &[]]);
    let m = evaluate(&s, &truth, &[], &opts(&[1, 3])).unwrap();
    assert_eq!(m.n_users, 2);
    // K=1: top [1] and [5]: no hit for either user
    for name in ["recall@1", "ndcg@1", "precision@1", "hit@1"] {
        close(&m, name, 0.0);
    }
    // K=3, user 0: [1,3,5], hit at rank 2 -> recall 1/2, P 1/3,
    //   NDCG = d(2) / (d(1)+d(2)) (IDCG over min(3,2)=2) = 0.630930/1.630930 = 0.386853
    // K=3, user 1: [5,0,1], hit at rank 3 -> recall 1/1, P 1/3,
    //   NDCG = d(3) / d(1) (IDCG over min(3,1)=1) = 0.5
    close(&m, "recall@3", (0.5 + 1.0) / 2.0); // 0.75
    close(&m, "ndcg@3", (0.386853 + 0.5) / 2.0); // 0.4434265
    close(&m, "precision@3", 1.0 / 3.0);
    close(&m, "hit@3", 1.0);
}

#[test]
fn ties_break_by_lower_item_id() {
    // all scores equal -> ranking 0,1,2,3,4,5
    let s = Fixed {
        rows: vec![vec![1.0; 6], vec![1.0; 6]],
    };
    // user 0: truth {0,2}, K=2 -> [0,1]: hit at rank 1 -> recall 1/2,
    //   NDCG = d(1) / (d(1)+d(2)) = 1/1.630930 = 0.613147
    // user 1: truth {5}, K=2 -> miss
    let truth = ui(&[&[0, 2], &[5]]);
    let m = evaluate(&s, &truth, &[], &opts(&[2])).unwrap();
    close(&m, "recall@2", (0.5 + 0.0) / 2.0);
    close(&m, "ndcg@2", (0.613147 + 0.0) / 2.0);
    close(&m, "precision@2", (0.5 + 0.0) / 2.0);
    close(&m, "hit@2", 0.5);
}

#[test]
fn more_positives_than_k() {
    // ranking [0, 5, 1, 2, 3, 4] (0.1 ties by id)
    let s = Fixed {
        rows: vec![vec![0.9, 0.5, 0.1, 0.1, 0.1, 0.8]],
    };
    let truth = ui(&[&[0, 1, 2, 3, 4]]);
    let m = evaluate(&s, &truth, &[], &opts(&[1, 3])).unwrap();
    // K=1: [0] hit -> recall 1/5, NDCG d(1)/d(1) = 1 (IDCG over min(1,5)=1), P 1
    close(&m, "recall@1", 0.2);
    close(&m, "ndcg@1", 1.0);
    close(&m, "precision@1", 1.0);
    // K=3: [0,5,1], hits at ranks 1 and 3 -> recall 2/5, P 2/3,
    //   NDCG = (d(1)+d(3)) / (d(1)+d(2)+d(3)) = 1.5/2.130930 = 0.703918
    close(&m, "recall@3", 0.4);
    close(&m, "ndcg@3", 0.703918);
    close(&m, "precision@3", 2.0 / 3.0);
    close(&m, "hit@3", 1.0);
}

#[test]
fn excluded_items_are_never_ranked() {
    let s = Fixed {
        rows: vec![vec![0.9, 0.8, 0.7, 0.6, 0.5, 0.4]],
    };
    let truth = ui(&[&[3]]);
    // without exclusion: top-2 [0,1] misses item 3
    let m = evaluate(&s, &truth, &[], &opts(&[2])).unwrap();
    close(&m, "recall@2", 0.0);
    // train {0,2} excluded -> candidates 1,3,4,5 -> [1,3]: hit at rank 2
    //   recall 1, NDCG d(2)/d(1) = 0.630930, P 1/2
    let train = ui(&[&[0, 2]]);
    let m = evaluate(&s, &truth, &[&train], &opts(&[2])).unwrap();
    close(&m, "recall@2", 1.0);
    close(&m, "ndcg@2", 0.630930);
    close(&m, "precision@2", 0.5);
    // the same exclusion spread over two sets (train {0}, valid {2})
    let (a, b) = (ui(&[&[0]]), ui(&[&[2]]));
    let m2 = evaluate(&s, &truth, &[&a, &b], &opts(&[2])).unwrap();
    assert_eq!(m, m2);
}

#[test]
fn user_with_every_item_excluded_scores_zero_but_counts() {
    let s = Fixed {
        rows: vec![vec![0.3, 0.2, 0.1], vec![0.3, 0.2, 0.1]],
    };
    // user 0: all 3 items excluded -> empty ranking -> 0 everywhere
    // user 1: nothing excluded, truth {0} at rank 1 -> 1 everywhere (P@1 = 1)
    let truth = ui(&[&[1], &[0]]);
    let train = ui(&[&[0, 1, 2], &[]]);
    let m = evaluate(&s, &truth, &[&train], &opts(&[1])).unwrap();
    assert_eq!(m.n_users, 2);
    close(&m, "recall@1", 0.5);
    close(&m, "ndcg@1", 0.5);
    close(&m, "precision@1", 0.5);
    close(&m, "hit@1", 0.5);
}

#[test]
fn k_larger_than_n_items() {
    // 3 items, ranking [1,2,0]
    let s = Fixed {
        rows: vec![vec![0.1, 0.3, 0.2]],
    };
    let truth = ui(&[&[0, 2]]);
    let m = evaluate(&s, &truth, &[], &opts(&[5])).unwrap();
    // hits at ranks 2,3 -> recall 1, P 2/5 (divides by K),
    //   NDCG = (d(2)+d(3)) / (d(1)+d(2)) (IDCG over min(5,2)=2) = 1.130930/1.630930 = 0.693426
    close(&m, "recall@5", 1.0);
    close(&m, "ndcg@5", 0.693426);
    close(&m, "precision@5", 0.4);
    close(&m, "hit@5", 1.0);
    // excluding item 1 -> [2,0]: hits at ranks 1,2 -> NDCG 1
    let train = ui(&[&[1]]);
    let m = evaluate(&s, &truth, &[&train], &opts(&[5])).unwrap();
    close(&m, "ndcg@5", 1.0);
    close(&m, "precision@5", 0.4);
}

#[test]
fn nan_scores_rank_last_without_panic() {
    // NaN -> -inf: ranking [1 (.5), 3 (.1), 0 (NaN), 2 (NaN)]
    let s = Fixed {
        rows: vec![vec![f32::NAN, 0.5, f32::NAN, 0.1]],
    };
    let truth = ui(&[&[0]]);
    let m = evaluate(&s, &truth, &[], &opts(&[2, 3])).unwrap();
    close(&m, "recall@2", 0.0);
    // hit at rank 3: NDCG d(3)/d(1) = 0.5
    close(&m, "recall@3", 1.0);
    close(&m, "ndcg@3", 0.5);
}

#[test]
fn most_pop_by_hand() {
    // train: u0 {0,1}, u1 {1,2}, u2 {1} -> counts [1, 3, 1, 0]
    let train = ui(&[&[0, 1], &[1, 2], &[1]]);
    let mp = MostPop::fit(&train, 4);
    assert_eq!(mp.counts, vec![1.0, 3.0, 1.0, 0.0]);
    // global order 1, 0, 2, 3 (0 and 2 tie at 1: lower id first)
    // u0: truth {2}, train {0,1} excluded -> [2,3]: hit at rank 1
    // u1: truth {0}, train {1,2} excluded -> [0,3]: hit at rank 1
    // u2: truth {3}, train {1} excluded -> [0,2,3]: hit at rank 3
    let truth = ui(&[&[2], &[0], &[3]]);
    let m = evaluate(&mp, &truth, &[&train], &opts(&[2, 3])).unwrap();
    close(&m, "recall@2", 2.0 / 3.0); // (1+1+0)/3
    close(&m, "ndcg@2", 2.0 / 3.0);
    close(&m, "precision@2", 1.0 / 3.0); // (1/2+1/2+0)/3
    close(&m, "recall@3", 1.0);
    close(&m, "ndcg@3", 2.5 / 3.0); // (1 + 1 + d(3)=0.5)/3 = 0.833333
    close(&m, "precision@3", 1.0 / 3.0); // (1/3)*3/3
}

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[test]
fn batch_size_does_not_change_results() {
    let (n_users, n_items) = (50, 40);
    let mut rng = Rng(42);
    // coarse scores (16 levels) so many ties occur
    let rows: Vec<Vec<f32>> = (0..n_users)
        .map(|_| (0..n_items).map(|_| (rng.next() % 16) as f32).collect())
        .collect();
    let mut truth = Vec::new();
    let mut train = Vec::new();
    for u in 0..n_users as u32 {
        for i in 0..n_items as u32 {
            match rng.next() % 10 {
                0 => truth.push((u, i)),
                1 | 2 => train.push((u, i)),
                _ => {}
            }
        }
    }
    let truth = UserItems::from_pairs(n_users, &truth);
    let train = UserItems::from_pairs(n_users, &train);
    let s = Fixed { rows };
    let run = |b: usize| {
        let o = EvalOptions {
            ks: vec![5, 10, 20],
            batch_users: b,
            ..Default::default()
        };
        evaluate(&s, &truth, &[&train], &o).unwrap()
    };
    let big = run(4096);
    assert!(big.get("recall@20").unwrap() > 0.0);
    // a large catalogue scores fewer users at once: 128 MiB of scores at most
    assert_eq!(darec::eval::users_per_batch(1024, 667_000), 50);
    assert_eq!(darec::eval::users_per_batch(1024, 3_500), 1024);
    assert_eq!(darec::eval::users_per_batch(1024, usize::MAX / 8), 1);
    assert_eq!(run(1), big);
    assert_eq!(run(7), big);
}

/// `eval.sample_users`: the sampled metrics are exactly the full metrics of the sampled
/// users (evaluated on their own), the sample is fixed by its seed and changes with it, a
/// sample as large as the split is the full evaluation, and the standard errors match the
/// per-user spread.
#[test]
fn sampled_users_are_the_full_evaluation_of_that_subset() {
    let (n_users, n_items) = (200, 30);
    let mut rng = Rng(7);
    let rows: Vec<Vec<f32>> = (0..n_users)
        .map(|_| (0..n_items).map(|_| (rng.next() % 64) as f32).collect())
        .collect();
    let mut truth = Vec::new();
    for u in 0..n_users as u32 {
        for i in 0..n_items as u32 {
            if rng.next().is_multiple_of(6) {
                truth.push((u, i));
            }
        }
    }
    let truth = UserItems::from_pairs(n_users, &truth);
    let s = Fixed { rows };
    let sampled = |n: usize, seed: u64| EvalOptions {
        ks: vec![5, 10],
        sample_users: n,
        sample_seed: seed,
        ..Default::default()
    };
    let full = evaluate(&s, &truth, &[], &opts(&[5, 10])).unwrap();
    assert!(full.sampled_from.is_none() && full.se.is_empty());
    let with_truth = (0..n_users as u32)
        .filter(|&u| !truth.row(u).is_empty())
        .count();
    let a = evaluate(&s, &truth, &[], &sampled(40, 3)).unwrap();
    assert_eq!((a.n_users, a.sampled_from), (40, Some(with_truth)));
    assert_eq!(
        evaluate(&s, &truth, &[], &sampled(40, 3)).unwrap(),
        a,
        "fixed by its seed"
    );
    assert_ne!(
        evaluate(&s, &truth, &[], &sampled(40, 4)).unwrap().values,
        a.values
    );
    // the same numbers from a ground truth that keeps only the sampled users' rows
    let (picked, _) = darec::eval::sampled_users(
        (0..n_users as u32)
            .filter(|&u| !truth.row(u).is_empty())
            .collect(),
        &sampled(40, 3),
    );
    let only: Vec<(u32, u32)> = picked
        .iter()
        .flat_map(|&u| truth.row(u).iter().map(move |&i| (u, i)))
        .collect();
    let sub = evaluate(
        &s,
        &UserItems::from_pairs(n_users, &only),
        &[],
        &opts(&[5, 10]),
    )
    .unwrap();
    assert_eq!(sub.values, a.values);
    // standard error by hand from the per-user recall@10 of the sampled users
    let per_user: Vec<f64> = picked
        .iter()
        .map(|&u| {
            let one = UserItems::from_pairs(
                n_users,
                &truth.row(u).iter().map(|&i| (u, i)).collect::<Vec<_>>(),
            );
            evaluate(&s, &one, &[], &opts(&[10]))
                .unwrap()
                .get("recall@10")
                .unwrap()
        })
        .collect();
    let n = per_user.len() as f64;
    let mean = per_user.iter().sum::<f64>() / n;
    let var = per_user.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let big_n = with_truth as f64;
    let want = (var / n * (big_n - n) / (big_n - 1.0)).sqrt();
    assert!(
        (a.se["recall@10"] - want).abs() < 1e-12,
        "{} vs {want}",
        a.se["recall@10"]
    );
    assert!((a.get("recall@10").unwrap() - mean).abs() < 1e-12);
    // a sample at least as large as the split is the full, exact evaluation
    assert_eq!(
        evaluate(&s, &truth, &[], &sampled(n_users, 3)).unwrap(),
        full
    );
}

#[test]
fn embedding_scorer_is_the_dot_product() {
    let users = Tensor::new(&[[1f32, 2.], [0., -1.]], &Device::Cpu).unwrap();
    let items = Tensor::new(&[[1f32, 0.], [0., 1.], [2., 3.]], &Device::Cpu).unwrap();
    let s = EmbeddingScorer { users, items };
    assert_eq!(s.n_items(), 3);
    let mut out = Vec::new();
    s.score(&[1, 0], &mut out).unwrap();
    // user 1 = (0,-1): (0,-1)·(1,0)=0, ·(0,1)=-1, ·(2,3)=-3
    // user 0 = (1, 2): 1, 2, 1*2+2*3=8
    assert_eq!(out, vec![0.0, -1.0, -3.0, 1.0, 2.0, 8.0]);
    // user 0 ranking [2,1,0]; truth {1}: hit at rank 2 -> NDCG d(2) = 0.630930
    let truth = ui(&[&[1], &[]]);
    let m = evaluate(&s, &truth, &[], &opts(&[2])).unwrap();
    close(&m, "ndcg@2", 0.630930);
    // out-of-range user is an error, not a panic
    assert!(s.score(&[2], &mut out).is_err());
    // mismatched widths are an error
    let bad = EmbeddingScorer {
        users: Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
        items: Tensor::zeros((4, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
    };
    assert!(bad.score(&[0], &mut out).is_err());
}

#[test]
fn bad_inputs_are_errors() {
    let s = Fixed {
        rows: vec![vec![0.1, 0.2]],
    };
    let truth = ui(&[&[1]]);
    let err = |o: &EvalOptions| evaluate(&s, &truth, &[], o).unwrap_err().to_string();
    assert!(err(&opts(&[])).contains("ks"));
    assert!(err(&opts(&[0, 5])).contains(">= 1"));
    assert!(err(&EvalOptions {
        ks: vec![5],
        batch_users: 0,
        ..Default::default()
    })
    .contains("batch_users"));
    // truth item 2 is outside the scorer's 2 items
    let e = evaluate(&s, &ui(&[&[2]]), &[], &opts(&[1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("item 2"), "{e}");
    // exclude set with a different number of users
    let train = ui(&[&[0], &[1]]);
    let e = evaluate(&s, &truth, &[&train], &opts(&[1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 2 users"), "{e}");
    // no user with test items: zero users, zero metrics
    let m = evaluate(&s, &ui(&[&[]]), &[], &opts(&[1])).unwrap();
    assert_eq!(m.n_users, 0);
    assert_eq!(m.get("recall@1"), Some(0.0));
}

#[test]
fn markdown_table_layout() {
    let truth = ui(&[&[0]]);
    let s = Fixed {
        rows: vec![vec![0.9, 0.1]],
    };
    let m = evaluate(&s, &truth, &[], &opts(&[1, 2])).unwrap();
    let t = markdown_table(&[("pop".to_string(), m)]);
    let want = "| model | R@1 | R@2 | N@1 | N@2 | P@1 | P@2 | H@1 | H@2 |\n\
                |---|---|---|---|---|---|---|---|---|\n\
                | pop | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 1.0000 | 0.5000 | 1.0000 | 1.0000 |\n";
    assert_eq!(t, want);
}

/// Reads an RLMRec TSV export: one `#` header line (with `shape=UxI`), then `user<TAB>item`.
fn read_tsv(path: &Path) -> (usize, usize, Vec<(u32, u32)>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let shape = header
        .split_whitespace()
        .find_map(|w| w.strip_prefix("shape="))
        .unwrap();
    let (u, i) = shape.split_once('x').unwrap();
    let pairs = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    (u.parse().unwrap(), i.parse().unwrap(), pairs)
}

fn amazon_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/rlmrec/amazon")
}

#[test]
fn most_pop_meets_spec_floor_on_amazon() {
    let dir = amazon_dir();
    if inputs::shared_rlmrec("amazon/trn.tsv").is_none()
        || inputs::shared_rlmrec("amazon/tst.tsv").is_none()
    {
        return;
    }
    let (nu, ni, trn) = read_tsv(&dir.join("trn.tsv"));
    let (nu2, ni2, tst) = read_tsv(&dir.join("tst.tsv"));
    assert_eq!((nu, ni), (11000, 9332));
    assert_eq!((nu2, ni2), (nu, ni));
    let train = UserItems::from_pairs(nu, &trn);
    let test = UserItems::from_pairs(nu, &tst);
    let mp = MostPop::fit(&train, ni);
    let m = evaluate(&mp, &test, &[&train], &EvalOptions::default()).unwrap();
    eprintln!(
        "{}",
        markdown_table(&[("MostPop amazon test".into(), m.clone())])
    );
    let (r, n) = (m.get("recall@20").unwrap(), m.get("ndcg@20").unwrap());
    assert_eq!(m.n_users, 9860); // users with >= 1 test item
                                 // SPEC section 2 floor: R@20 .0318, N@20 .0182, here to all 4 printed decimals. This is
                                 // tight enough to catch protocol slips (measured): ties by higher id give R@20 .03166;
                                 // no training mask .03077; also masking validation .03211; averaging over all 11,000
                                 // users .02851; IDCG over all |GT| positions N@20 .01807.
    assert!((r - 0.0318).abs() < 5e-5, "recall@20 {r}");
    assert!((n - 0.0182).abs() < 5e-5, "ndcg@20 {n}");
    // An independent plain-Python implementation of the same protocol gave these values.
    assert!((r - 0.031805892827984).abs() < 1e-9, "recall@20 {r}");
    assert!((n - 0.018187177975837).abs() < 1e-9, "ndcg@20 {n}");
}

/// Timing of evaluate on the amazon shape with random 32-d embeddings.
/// Run: cargo test --release --test eval_metrics -- --ignored --nocapture
#[test]
#[ignore]
fn timing_random_embeddings_amazon_shape() {
    let (nu, ni, d) = (11000usize, 9332usize, 32usize);
    let mut rng = Rng(7);
    let u: Vec<f32> = (0..nu * d).map(|_| rng.unit() - 0.5).collect();
    let i: Vec<f32> = (0..ni * d).map(|_| rng.unit() - 0.5).collect();
    let s = EmbeddingScorer {
        users: Tensor::from_vec(u, (nu, d), &Device::Cpu).unwrap(),
        items: Tensor::from_vec(i, (ni, d), &Device::Cpu).unwrap(),
    };
    let dir = amazon_dir();
    let (train, test) = if dir.join("trn.tsv").exists() {
        let (_, _, trn) = read_tsv(&dir.join("trn.tsv"));
        let (_, _, tst) = read_tsv(&dir.join("tst.tsv"));
        (
            UserItems::from_pairs(nu, &trn),
            UserItems::from_pairs(nu, &tst),
        )
    } else {
        let pairs = |k: u64| -> Vec<(u32, u32)> {
            let mut r = Rng(k);
            (0..nu as u32 * 11)
                .map(|x| (x / 11, (r.next() % ni as u64) as u32))
                .collect()
        };
        (
            UserItems::from_pairs(nu, &pairs(1)),
            UserItems::from_pairs(nu, &pairs(2)),
        )
    };
    for b in [256, 1024, 4096] {
        let o = EvalOptions {
            ks: vec![5, 10, 20],
            batch_users: b,
            ..Default::default()
        };
        let t = std::time::Instant::now();
        let m = evaluate(&s, &test, &[&train], &o).unwrap();
        let el = t.elapsed();
        // scoring alone, for the split between matmul and selection
        let t2 = std::time::Instant::now();
        let users: Vec<u32> = (0..nu as u32).collect();
        let mut buf = Vec::new();
        for c in users.chunks(b) {
            s.score(c, &mut buf).unwrap();
        }
        let sc = t2.elapsed();
        eprintln!(
            "batch_users {b}: evaluate {:.3} s (scoring alone {:.3} s), users {}, R@20 {:.4}",
            el.as_secs_f64(),
            sc.as_secs_f64(),
            m.n_users,
            m.get("recall@20").unwrap()
        );
    }
}
