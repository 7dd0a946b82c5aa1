//! End-to-end: a small synthetic interaction file with clustered preferences goes through
//! the config, reader, split, training, evaluation, saving and re-evaluation; and every
//! backbone passes the same API contract (RecBole-style smoke test, implicit-style
//! contract tests).

#[path = "support/clustered.rs"]
mod clustered;
#[path = "support/gradients.rs"]
mod gradients;
use clustered::write_clustered;
use gradients::assert_every_param_has_a_gradient;

use darec::align::NoAlignment;
use darec::backbone::Mode;
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::pipeline::{eval_run, train_on};
use darec::rng::Rng;
use darec::step::Batch;
use darec::train::Model;
use std::path::PathBuf;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("darec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(data: &std::path::Path, backbone: &str) -> Config {
    Config::load(
        None,
        &[
            "data.name=\"clustered\"".into(),
            "data.format=\"delimited\"".into(),
            format!("data.path=\"{}\"", data.display()),
            "data.delimited.rating_col=2".into(),
            "data.prepare.split=\"random\"".into(),
            format!("model.backbone=\"{backbone}\""),
            "model.dim=16".into(),
            "model.layers=2".into(),
            "train.batch_size=256".into(),
            "train.max_epochs=60".into(),
            "train.lr=0.01".into(),
            "train.patience=100".into(),
            "train.progress=false".into(),
        ],
    )
    .unwrap()
}

#[test]
fn train_save_and_reevaluate_every_backbone() {
    let dir = tmpdir("pipeline");
    let data = write_clustered(&dir, 2, true);
    let mut recall = std::collections::BTreeMap::new();
    for backbone in ["mostpop", "mf", "lightgcn"] {
        let cfg = config(&data, backbone);
        let ds = load_dataset(&cfg.data).unwrap();
        assert_eq!(ds.n_users(), 120);
        let out = dir.join(backbone);
        let r = train_on(&cfg, &ds, Some(out.clone())).unwrap();
        for f in [
            "config.toml",
            "metrics.jsonl",
            "metrics.json",
            "metrics.md",
            "users.json",
            "items.json",
        ] {
            assert!(out.join(f).exists(), "{backbone}: {f} missing");
        }
        // re-evaluation from the saved run gives exactly the same numbers
        let (_, again) = eval_run(&out, "test").unwrap();
        assert_eq!(
            again.values, r.test.values,
            "{backbone}: re-evaluation differs"
        );
        recall.insert(backbone, r.test.get("recall@20").unwrap());
        if backbone != "mostpop" {
            let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
            assert_eq!(
                log.lines().count(),
                60 / 3 + 1,
                "{backbone}: one line per validation + test"
            );
        }
    }
    // learning the taste groups must clearly beat popularity
    assert!(recall["mf"] > 1.5 * recall["mostpop"], "{recall:?}");
    assert!(recall["lightgcn"] > 1.5 * recall["mostpop"], "{recall:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn same_seed_same_result_and_other_seed_differs() {
    let dir = tmpdir("seeds");
    let data = write_clustered(&dir, 2, true);
    let mut cfg = config(&data, "lightgcn");
    cfg.train.max_epochs = 6;
    let ds = load_dataset(&cfg.data).unwrap();
    let a = train_on(&cfg, &ds, Some(dir.join("a"))).unwrap();
    let b = train_on(&cfg, &ds, Some(dir.join("b"))).unwrap();
    assert_eq!(a.test.values, b.test.values);
    cfg.train.seed += 1;
    let c = train_on(&cfg, &ds, Some(dir.join("c"))).unwrap();
    assert_ne!(a.test.values, c.test.values);
    std::fs::remove_dir_all(&dir).ok();
}

/// The contract every trainable backbone meets.
#[test]
fn backbone_api_contract() {
    let dir = tmpdir("contract");
    let data = write_clustered(&dir, 2, true);
    // every trainable backbone: a new one joins by its name in `BACKBONES`
    for &backbone in darec::backbone::config::BACKBONES
        .iter()
        .filter(|b| **b != "mostpop")
    {
        let mut cfg = config(&data, backbone);
        // 100 seeds, two hops, would mask every edge of a graph this small
        cfg.model.autocf.seeds = 2;
        let ds = load_dataset(&cfg.data).unwrap();
        let dev = candle_core::Device::Cpu;
        let mut model = Model::build(&cfg, &ds, Box::new(NoAlignment), &dev).unwrap();
        let n = ds.n_users() + ds.n_items();
        let ego = model.backbone.ego().unwrap();
        assert_eq!(ego.dims2().unwrap(), (n, 16), "{backbone}: ego shape");
        // eval-mode encoding is deterministic and has one row per node
        let e1 = model.backbone.encode(&ego, &mut Mode::Eval).unwrap();
        let e2 = model.backbone.encode(&ego, &mut Mode::Eval).unwrap();
        assert_eq!(e1.dim(0).unwrap(), n);
        assert_eq!(e1.to_vec2::<f32>().unwrap(), e2.to_vec2::<f32>().unwrap());
        // every parameter receives a finite, non-zero gradient from the training losses
        let batch = Batch::new(&[(0, 1, 2), (5, 3, 7), (9, 4, 1)], ds.n_users(), &dev).unwrap();
        let terms = model.step_losses(&batch, &mut Rng::new(1)).unwrap();
        assert_eq!(
            terms[0].name,
            if backbone == "autocf" { "rec" } else { "bpr" }
        );
        let grads = terms[0].value.backward().unwrap();
        assert_every_param_has_a_gradient(&model, &grads, backbone);
        // save / load round trip restores the exact parameters
        let path = dir.join(format!("{backbone}.safetensors"));
        model.save(&path).unwrap();
        let before = model.snapshot().unwrap();
        let other = {
            let mut c = cfg.clone();
            c.train.seed = 99;
            Model::build(&c, &ds, Box::new(NoAlignment), &dev).unwrap()
        };
        other.load(&path).unwrap();
        for (a, b) in before.iter().zip(other.snapshot().unwrap()) {
            assert_eq!(
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The training half of the contract, through the real pipeline, for every trainable
/// backbone: the same seed gives the same bits (model file and metrics), the main loss
/// falls on a tiny graph, and the saved run scores exactly as the trained model did.
#[test]
fn backbone_training_contract() {
    let dir = tmpdir("training-contract");
    let data = write_clustered(&dir, 2, true);
    for &backbone in darec::backbone::config::BACKBONES
        .iter()
        .filter(|b| **b != "mostpop")
    {
        let mut cfg = config(&data, backbone);
        cfg.train.max_epochs = 9;
        cfg.model.autocf.seeds = 2;
        let ds = load_dataset(&cfg.data).unwrap();
        let (da, db) = (
            dir.join(format!("{backbone}-a")),
            dir.join(format!("{backbone}-b")),
        );
        let a = train_on(&cfg, &ds, Some(da.clone())).unwrap();
        let b = train_on(&cfg, &ds, Some(db.clone())).unwrap();
        assert_eq!(
            a.test.values, b.test.values,
            "{backbone}: same seed, other metrics"
        );
        assert_eq!(a.valid.values, b.valid.values, "{backbone}");
        assert!(
            std::fs::read(da.join("model.safetensors")).unwrap()
                == std::fs::read(db.join("model.safetensors")).unwrap(),
            "{backbone}: same seed, other parameters"
        );
        // the main loss (BPR, AutoCF's reconstruction) at validations 3, 6, 9
        let main = if backbone == "autocf" {
            "loss_rec"
        } else {
            "loss_bpr"
        };
        let log = std::fs::read_to_string(da.join("metrics.jsonl")).unwrap();
        let losses: Vec<f64> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["split"] == "valid")
            .map(|v| {
                v[main]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{backbone}: no {main} in {v}"))
            })
            .collect();
        assert_eq!(losses.len(), 3, "{backbone}: {log}");
        assert!(
            losses[2] < losses[0] && losses.iter().all(|l| l.is_finite()),
            "{backbone}: {main} does not fall: {losses:?}"
        );
        // save, load and score: the saved run ranks exactly as the trained model did
        let (_, again) = eval_run(&da, "test").unwrap();
        assert_eq!(
            again.values, a.test.values,
            "{backbone}: re-evaluation differs"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_config_and_missing_data_give_clear_errors() {
    let e = Config::load(None, &["train.batch_size=0".into()]).unwrap_err();
    assert!(format!("{e:#}").contains("batch_size"), "{e:#}");
    let cfg = Config::load(
        None,
        &[
            "data.name=\"x\"".into(),
            "data.path=\"/nonexistent/dir\"".into(),
        ],
    )
    .unwrap();
    let e = load_dataset(&cfg.data).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/dir"), "{e:#}");
    let e = Config::load(None, &["train.lr".into()]).unwrap_err();
    assert!(format!("{e:#}").contains("key=value"), "{e:#}");
}

#[test]
fn an_interrupted_run_resumes_to_the_same_result() {
    let dir = tmpdir("resume");
    let data = write_clustered(&dir, 2, true);
    let mut cfg = config(&data, "lightgcn");
    cfg.train.max_epochs = 12;
    let ds = load_dataset(&cfg.data).unwrap();
    let straight = train_on(&cfg, &ds, Some(dir.join("straight"))).unwrap();
    // the same run stopped after 6 epochs, then continued to 12 from its checkpoint
    cfg.train.max_epochs = 6;
    let part = dir.join("part");
    train_on(&cfg, &ds, Some(part.clone())).unwrap();
    assert!(part.join("checkpoint.json").exists());
    let text = std::fs::read_to_string(part.join("config.toml")).unwrap();
    std::fs::write(
        part.join("config.toml"),
        text.replace("max_epochs = 6", "max_epochs = 12"),
    )
    .unwrap();
    let resumed = darec::pipeline::resume_run(&part).unwrap();
    assert_eq!(resumed.test.values, straight.test.values);
    assert_eq!(resumed.valid.values, straight.valid.values);
    let log = std::fs::read_to_string(part.join("metrics.jsonl")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.contains("\"valid\"")).count(),
        4,
        "validations 3, 6, 9, 12"
    );
    std::fs::remove_dir_all(&dir).ok();
}
