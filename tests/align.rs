//! Alignment plug-ins: finite-difference gradients of every loss term, the contract every
//! alignment meets on every backbone, and an end-to-end run with semantic vectors.

#[path = "support/clustered.rs"]
mod clustered;
#[path = "support/gradients.rs"]
mod gradients;
use clustered::write_clustered;
use gradients::assert_every_param_has_a_gradient;

use candle_core::{Device, Tensor, Var};
use darec::align::{AlignKind, SemanticTables};
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::ops::rowwise::l2_normalize;
use darec::ops::rowwise::mean_cos_sq;
use darec::ops::similarity::{gram_mse, info_nce, uniformity};
use darec::rng::Rng;
use darec::step::Batch;
use darec::train::Model;

/// Central finite differences of a scalar function of one tensor against autograd.
fn check_fd(shape: (usize, usize), seed: u64, f: &dyn Fn(&Tensor) -> Tensor) {
    let dev = Device::Cpu;
    let mut rng = Rng::new(seed);
    let x0: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.f32() * 2.0 - 1.0)
        .collect();
    let x = Var::from_vec(x0.clone(), shape, &dev).unwrap();
    let g = f(x.as_tensor()).backward().unwrap();
    let gv = g
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let at = |v: &[f32]| {
        f(&Tensor::from_vec(v.to_vec(), shape, &dev).unwrap())
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let h = 1e-2f32;
    for k in 0..x0.len() {
        let (mut p, mut m) = (x0.clone(), x0.clone());
        p[k] += h;
        m[k] -= h;
        let fd = (at(&p) - at(&m)) / (2.0 * h as f64);
        assert!(
            (fd - gv[k] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
            "element {k}: finite difference {fd} vs gradient {}",
            gv[k]
        );
    }
}

#[test]
fn every_loss_term_matches_finite_differences() {
    let dev = Device::Cpu;
    let other = Tensor::from_vec(
        (0..6 * 3)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
            .collect::<Vec<_>>(),
        (6, 3),
        &dev,
    )
    .unwrap();
    // InfoNCE of RLMRec-Con/Gen on normalised rows (anchor side and candidate side)
    check_fd((6, 3), 1, &|x| {
        info_nce(
            &l2_normalize(x).unwrap(),
            &l2_normalize(&other).unwrap(),
            &l2_normalize(&other).unwrap(),
            0.2,
        )
        .unwrap()
    });
    check_fd((6, 3), 2, &|x| {
        let n = l2_normalize(x).unwrap();
        info_nce(&l2_normalize(&other).unwrap(), &n, &n, 0.5).unwrap()
    });
    // DaRec: orthogonality, uniformity, global structure
    check_fd((6, 3), 3, &|x| mean_cos_sq(x, &other).unwrap());
    check_fd((6, 3), 4, &|x| {
        uniformity(&l2_normalize(x).unwrap(), 2.0).unwrap()
    });
    check_fd((6, 3), 5, &|x| {
        gram_mse(&l2_normalize(x).unwrap(), &l2_normalize(&other).unwrap()).unwrap()
    });
}

/// Semantic vectors that know the taste groups (plus noise), 12-dimensional.
fn write_vectors(ds: &darec::data::Dataset, path: &std::path::Path) {
    let mut rng = Rng::new(5);
    let mut rows = |ids: &darec::data::IdMap, group_of: &dyn Fn(&str) -> usize| -> Vec<f32> {
        let mut v = Vec::new();
        for ext in &ids.external {
            let g = group_of(ext);
            for j in 0..12 {
                v.push(if j / 3 == g { 1.0 } else { 0.0 } + 0.3 * (rng.f32() - 0.5));
            }
        }
        v
    };
    let users = rows(&ds.user_ids, &|e| e[1..].parse::<usize>().unwrap() % 4);
    let items = rows(&ds.item_ids, &|e| e[1..].parse::<usize>().unwrap() / 20);
    let dev = Device::Cpu;
    let map = std::collections::HashMap::from([
        (
            "users".to_string(),
            Tensor::from_vec(users, (ds.n_users(), 12), &dev).unwrap(),
        ),
        (
            "items".to_string(),
            Tensor::from_vec(items, (ds.n_items(), 12), &dev).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&map, path).unwrap();
}

fn setup(name: &str) -> (std::path::PathBuf, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("darec-align-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = write_clustered(&dir, 0, false);
    let base = vec![
        "data.name=\"clustered\"".to_string(),
        "data.format=\"delimited\"".into(),
        format!("data.path=\"{}\"", data.display()),
        "model.dim=16".into(),
        "model.layers=2".into(),
        "train.batch_size=256".into(),
        "train.lr=0.01".into(),
        "train.progress=false".into(),
        "align.darec.n_hat=64".into(),
        "align.darec.k=4".into(),
        "align.rlmrec_gen.mask_ratio=0.2".into(),
    ];
    let cfg = Config::load(None, &base).unwrap();
    let ds = load_dataset(&cfg.data).unwrap();
    let vec_path = dir.join("vectors.safetensors");
    write_vectors(&ds, &vec_path);
    let mut with_vectors = base;
    with_vectors.push(format!("align.vectors=\"{}\"", vec_path.display()));
    (dir, with_vectors)
}

#[test]
fn alignment_contract_on_every_backbone() {
    let (dir, base) = setup("contract");
    let expected: [(&str, &[&str], &[&str]); 11] = [
        ("none", &[], &[]),
        ("rlmrec_con", &[], &["kd"]),
        ("rlmrec_gen", &[], &["recon"]),
        ("darec", &[], &["or", "uni", "global", "local"]),
        (
            "darec",
            &["align.darec.shared_uni=true"],
            &["or", "uni", "shared_uni", "global", "local"],
        ),
        (
            "darec",
            &["align.darec.centred=true", "align.darec.global_all=true"],
            &["or", "uni", "global", "local"],
        ),
        (
            "darec",
            &["align.darec.shared_bias=false"],
            &["or", "uni", "global", "local"],
        ),
        (
            "darec",
            &[
                "align.darec.var_floor=0.2",
                "align.darec.split_nodes=true",
                "align.darec.uni_rows=16",
                "align.darec.warmup_epochs=3",
            ],
            &["or", "uni", "var_floor", "global", "local"],
        ),
        (
            "darec",
            &["align.darec.plus_con=true", "align.darec.centred=true"],
            &["or", "uni", "global", "local", "kd"],
        ),
        (
            "darec",
            &["align.darec.score_shared=true"],
            &["or", "uni", "global", "local"],
        ),
        (
            "darec",
            &["align.darec.l_heads=\"linear\""],
            &["or", "uni", "global", "local"],
        ),
    ];
    let expected: Vec<_> = expected.to_vec();
    // every trainable backbone: a new one joins by its name in `BACKBONES`
    for &backbone in darec::backbone::config::BACKBONES
        .iter()
        .filter(|b| **b != "mostpop")
    {
        for &(kind, extra, terms) in &expected {
            let mut o = base.clone();
            o.push(format!("model.backbone=\"{backbone}\""));
            o.push(format!("align.kind=\"{kind}\""));
            // 100 seeds, two hops, would mask every edge of a 200-node graph
            o.push("model.autocf.seeds=2".into());
            o.extend(extra.iter().map(|s| s.to_string()));
            let cfg = Config::load(None, &o).unwrap();
            let ds = load_dataset(&cfg.data).unwrap();
            let mut model = Model::from_config(&cfg, &ds, &Device::Cpu).unwrap();
            let batch = Batch::new(
                &[(0, 1, 2), (5, 3, 7), (9, 4, 1), (17, 30, 60)],
                ds.n_users(),
                &Device::Cpu,
            )
            .unwrap();
            // a warm-up starts from epoch 1 (epoch 0 would weigh the terms 0)
            model.align.start_epoch(1);
            let losses = model.step_losses(&batch, &mut Rng::new(3)).unwrap();
            let names: Vec<&str> = losses.iter().map(|t| t.name.as_str()).collect();
            // the ranking loss (BPR; AutoCF's `rec`), then the backbone's own terms (`cl`;
            // AutoCF's `cl` and `infomax`), then the alignment's
            let rank = if backbone == "autocf" { "rec" } else { "bpr" };
            assert_eq!(names[0], rank);
            assert!(
                names.ends_with(terms) && names.len() <= 3 + terms.len(),
                "{backbone}+{kind} {extra:?}: {names:?}"
            );
            let mut total = losses[0].value.clone();
            for t in &losses[1..] {
                let v = t.value.to_scalar::<f32>().unwrap();
                assert!(v.is_finite(), "{backbone}+{kind}: {} = {v}", t.name);
                total = (total + &t.value).unwrap();
            }
            let grads = total.backward().unwrap();
            assert_every_param_has_a_gradient(&model, &grads, &format!("{backbone}+{kind}"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// With every node sampled (`n_hat` = users + items), the sampled global term covers the
/// same rows as `global_all` in another order: the two values agree, centred or not.
#[test]
fn global_structure_over_all_nodes_equals_the_full_sample() {
    let (dir, base) = setup("global-all");
    let n_nodes = 120 + 80;
    for centred in [false, true] {
        let mut values = Vec::new();
        for global_all in [false, true] {
            let mut o = base.clone();
            o.push("align.kind=\"darec\"".into());
            o.push(format!("align.darec.n_hat={n_nodes}"));
            o.push(format!("align.darec.centred={centred}"));
            o.push(format!("align.darec.global_all={global_all}"));
            let cfg = Config::load(None, &o).unwrap();
            let ds = load_dataset(&cfg.data).unwrap();
            assert_eq!(ds.n_users() + ds.n_items(), n_nodes);
            let mut model = Model::from_config(&cfg, &ds, &Device::Cpu).unwrap();
            let batch = Batch::new(&[(0, 1, 2), (5, 3, 7)], ds.n_users(), &Device::Cpu).unwrap();
            let losses = model.step_losses(&batch, &mut Rng::new(3)).unwrap();
            let g = losses.iter().find(|t| t.name == "global").unwrap();
            values.push(g.value.to_scalar::<f32>().unwrap());
        }
        assert!(
            (values[0] - values[1]).abs() <= 1e-5 * values[0].abs().max(1e-6),
            "centred {centred}: {values:?}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `shared_bias = false`: the shared heads' biases are no parameters (not trained, not
/// saved), the specific heads keep theirs.
#[test]
fn shared_heads_without_bias_have_no_bias_parameters() {
    let (dir, base) = setup("no-bias");
    let mut o = base.clone();
    o.push("align.kind=\"darec\"".into());
    o.push("align.darec.shared_bias=false".into());
    let cfg = Config::load(None, &o).unwrap();
    let ds = load_dataset(&cfg.data).unwrap();
    let model = Model::from_config(&cfg, &ds, &Device::Cpu).unwrap();
    let names: Vec<String> = model.params().into_iter().map(|p| p.0).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("_shared") && n.ends_with(".bias")),
        "{names:?}"
    );
    assert!(names
        .iter()
        .any(|n| n.contains("c_specific") && n.ends_with(".bias")));
    assert!(names
        .iter()
        .any(|n| n.contains("l_shared") && n.ends_with(".weight")));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn aligned_models_train_end_to_end_and_reload() {
    let (dir, base) = setup("e2e");
    for kind in [AlignKind::RlmrecCon, AlignKind::RlmrecGen, AlignKind::Darec] {
        let mut o = base.clone();
        o.push("model.backbone=\"lightgcn\"".into());
        o.push(format!("align.kind=\"{}\"", kind.as_str()));
        o.push("train.max_epochs=9".into());
        let cfg = Config::load(None, &o).unwrap();
        let ds = load_dataset(&cfg.data).unwrap();
        let out = dir.join(kind.as_str());
        let r = darec::pipeline::train_on(&cfg, &ds, Some(out.clone())).unwrap();
        assert_eq!(r.label, format!("lightgcn+{}", kind.as_str()));
        let (_, again) = darec::pipeline::eval_run(&out, "test").unwrap();
        assert_eq!(again.values, r.test.values);
        let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert!(log.contains("loss_"), "alignment losses are logged");
        let map = darec::pipeline::map_run(&out, 100, None, darec::plot::Projection::Tsne);
        if kind == AlignKind::Darec {
            let map = map.unwrap();
            let (c, l) = map.mean_cosine;
            assert!(
                (-1.0..=1.0).contains(&c) && (-1.0..=1.0).contains(&l),
                "{c} {l}"
            );
            let png = map.png;
            assert!(
                std::fs::metadata(&png).unwrap().len() > 1000,
                "a real PNG was written"
            );
            assert!(png.with_extension("svg").exists());
        } else {
            let e = map.err().unwrap();
            assert!(format!("{e:#}").contains("no shared space"), "{e:#}");
        }
    }
    // a missing vectors setting is a clear error
    let e = Config::load(None, &["align.kind=\"darec\"".into()]).unwrap_err();
    assert!(format!("{e:#}").contains("align.vectors"), "{e:#}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The large-data mode (`train.steps_per_epoch`, issue 34) with the alignments it applies
/// to: RLMRec-Gen and DaRec train (their losses logged, the main loss falling) and resume
/// to the bits of an uninterrupted run; RLMRec-Con, whose in-batch term grows with the
/// square of the batch, is refused before anything runs.
#[test]
fn the_large_data_mode_trains_with_the_alignments_it_applies_to() {
    let (dir, base) = setup("large");
    for kind in [AlignKind::RlmrecGen, AlignKind::Darec] {
        let mut o = base.clone();
        o.push("model.backbone=\"lightgcn\"".into());
        o.push(format!("align.kind=\"{}\"", kind.as_str()));
        o.push("train.steps_per_epoch=2".into());
        o.push("train.batch_size=64".into());
        o.push("train.max_epochs=12".into());
        let mut cfg = Config::load(None, &o).unwrap();
        let ds = load_dataset(&cfg.data).unwrap();
        let straight = dir.join(format!("{}-straight", kind.as_str()));
        let r = darec::pipeline::train_on(&cfg, &ds, Some(straight.clone())).unwrap();
        let log = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
        let bpr: Vec<f64> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["split"] == "valid")
            .map(|v| v["loss_bpr"].as_f64().unwrap())
            .collect();
        assert!(bpr.len() == 4 && bpr[3] < bpr[0], "{kind:?}: {bpr:?}");
        let terms = log.lines().next().unwrap();
        assert!(
            terms.matches("\"loss_").count() >= 2,
            "{kind:?}: the alignment's terms are logged: {terms}"
        );
        cfg.train.max_epochs = 6;
        let part = dir.join(format!("{}-part", kind.as_str()));
        darec::pipeline::train_on(&cfg, &ds, Some(part.clone())).unwrap();
        let text = std::fs::read_to_string(part.join("config.toml")).unwrap();
        std::fs::write(
            part.join("config.toml"),
            text.replace("max_epochs = 6", "max_epochs = 12"),
        )
        .unwrap();
        let resumed = darec::pipeline::resume_run(&part).unwrap();
        assert_eq!(resumed.test.values, r.test.values, "{kind:?}");
    }
    let mut o = base.clone();
    o.push("align.kind=\"rlmrec_con\"".into());
    o.push("train.steps_per_epoch=2".into());
    let e = format!("{:#}", Config::load(None, &o).unwrap_err());
    assert!(
        e.contains("steps_per_epoch") && e.contains("rlmrec_con"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `score_shared`: BPR, evaluation and serving all score with `[e_C ; P_C^sh(e_C)]`: the
/// served vectors are twice the backbone's width, a fold-in and an explanation work, and
/// evaluation after reloading gives the training run's numbers.
#[test]
fn scoring_with_the_shared_part_runs_everywhere() {
    let (dir, base) = setup("score-shared");
    let mut o = base.clone();
    o.push("model.backbone=\"lightgcn\"".into());
    o.push("align.kind=\"darec\"".into());
    o.push("align.darec.score_shared=true".into());
    o.push("train.max_epochs=6".into());
    let cfg = Config::load(None, &o).unwrap();
    let ds = load_dataset(&cfg.data).unwrap();
    let out = dir.join("run");
    let r = darec::pipeline::train_on(&cfg, &ds, Some(out.clone())).unwrap();
    let (_, again) = darec::pipeline::eval_run(&out, "test").unwrap();
    assert_eq!(again.values, r.test.values);
    let model = Model::from_config(&cfg, &ds, &Device::Cpu).unwrap();
    model.load(&out.join("model.safetensors")).unwrap();
    let (u, i) = model.final_embeddings().unwrap();
    assert_eq!(
        (u.dim(1).unwrap(), i.dim(1).unwrap()),
        (32, 32),
        "[e ; P(e)] of d = 16"
    );
    let rec = darec::serve::recommender::Recommender::load(&out, Default::default()).unwrap();
    let (_, items) = rec.ids();
    let liked = vec![items[0].clone(), items[3].clone()];
    for method in [
        darec::serve::recommender::FoldMethod::Closed,
        darec::serve::recommender::FoldMethod::Auto,
    ] {
        let got = rec.recommend_for_items(&liked, 5, method).unwrap();
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|s| s.score.is_finite()));
    }
    let (users, _) = rec.ids();
    let ex = darec::serve::explain::explain(&rec, &users[0], 3, 2).unwrap();
    assert_eq!(ex.recommendations.len(), 3);
    assert!(!ex.centres.is_empty(), "DaRec's centres over e_C");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn semantic_tables_reject_mismatched_rows() {
    let dev = Device::Cpu;
    let dir = std::env::temp_dir().join(format!("darec-sem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("v.safetensors");
    let map = std::collections::HashMap::from([
        (
            "users".to_string(),
            Tensor::zeros((3, 4), candle_core::DType::F32, &dev).unwrap(),
        ),
        (
            "items".to_string(),
            Tensor::zeros((5, 4), candle_core::DType::F32, &dev).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&map, &p).unwrap();
    assert!(SemanticTables::load(&p, 3, 5, &dev).is_ok());
    let e = SemanticTables::load(&p, 4, 5, &dev).err().unwrap();
    assert!(format!("{e:#}").contains("4 users"), "{e:#}");
    std::fs::remove_dir_all(&dir).ok();
}
