//! The large-data switches (issue 34) through the real pipeline: `train.optimizer =
//! "lazy_adam"` (MF), `train.steps_per_epoch` with its learning-rate rule and warm-up
//! (every trainable backbone), `train.sampler = "parallel"`, `eval.sample_users`, and
//! `darec data synth` data read by
//! the `synth` preset. Each is resumable, and refused with a clear message where it does
//! not apply.

#[path = "support/clustered.rs"]
mod clustered;
use clustered::write_clustered;

use darec::config::Config;
use darec::data::load::load_dataset;
use darec::pipeline::{eval_run, resume_run, train_on};
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("darec-scale-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(data: &Path, backbone: &str, extra: &[&str]) -> Config {
    let mut set: Vec<String> = vec![
        "data.name=\"clustered\"".into(),
        "data.format=\"delimited\"".into(),
        format!("data.path=\"{}\"", data.display()),
        "data.delimited.rating_col=2".into(),
        format!("model.backbone=\"{backbone}\""),
        "model.dim=16".into(),
        "model.layers=2".into(),
        "train.batch_size=256".into(),
        "train.max_epochs=60".into(),
        "train.lr=0.01".into(),
        "train.patience=100".into(),
        "train.progress=false".into(),
    ];
    set.extend(extra.iter().map(|s| s.to_string()));
    Config::load(None, &set).unwrap()
}

fn losses(run: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["split"] == "valid")
        .map(|v| v[key].as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// Lazy Adam trains MF as well as dense Adam does (both clearly beat popularity), its
/// loss falls, and the saved run re-evaluates to the same numbers.
#[test]
fn lazy_adam_trains_mf() {
    let dir = tmpdir("lazy");
    let data = write_clustered(&dir, 2, true);
    let mut recall = std::collections::BTreeMap::new();
    for (name, extra) in [
        ("mostpop", vec![]),
        ("dense", vec![]),
        ("lazy", vec!["train.optimizer=\"lazy_adam\""]),
        (
            "lazy-parallel",
            vec![
                "train.optimizer=\"lazy_adam\"",
                "train.sampler=\"parallel\"",
            ],
        ),
    ] {
        let backbone = if name == "mostpop" { "mostpop" } else { "mf" };
        let cfg = config(&data, backbone, &extra);
        let ds = load_dataset(&cfg.data).unwrap();
        let out = dir.join(name);
        let r = train_on(&cfg, &ds, Some(out.clone())).unwrap();
        recall.insert(name, r.test.get("recall@20").unwrap());
        if name == "lazy" {
            let l = losses(&out, "loss_bpr");
            assert!(l.len() == 20 && l[19] < 0.5 * l[0], "{l:?}");
            let (_, again) = eval_run(&out, "test").unwrap();
            assert_eq!(again.values, r.test.values);
        }
    }
    assert!(recall["lazy"] > 1.5 * recall["mostpop"], "{recall:?}");
    assert!(recall["lazy"] > 0.9 * recall["dense"], "{recall:?}");
    // the parallel sampler: the same distribution of triples, other draws
    assert!(
        recall["lazy-parallel"] > 0.9 * recall["dense"],
        "{recall:?}"
    );
    assert_ne!(recall["lazy-parallel"], recall["lazy"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Where every step touches every row (one batch holds every training interaction, and
/// every user and item has one), lazy Adam is dense Adam: the same model, bit for bit.
#[test]
fn lazy_adam_is_dense_adam_when_every_row_is_touched() {
    let dir = tmpdir("lazy-dense");
    let data = write_clustered(&dir, 2, true);
    let base = [
        "train.batch_size=100000",
        "train.max_epochs=9",
        "model.reg=1e-3",
    ];
    let dense = config(&data, "mf", &base);
    let mut extra = base.to_vec();
    extra.push("train.optimizer=\"lazy_adam\"");
    let lazy = config(&data, "mf", &extra);
    let ds = load_dataset(&dense.data).unwrap();
    let a = train_on(&dense, &ds, Some(dir.join("dense"))).unwrap();
    let b = train_on(&lazy, &ds, Some(dir.join("lazy"))).unwrap();
    assert_eq!(a.test.values, b.test.values);
    assert_eq!(
        std::fs::read(dir.join("dense/model.safetensors")).unwrap(),
        std::fs::read(dir.join("lazy/model.safetensors")).unwrap()
    );
    assert_eq!(
        losses(&dir.join("dense"), "loss_bpr"),
        losses(&dir.join("lazy"), "loss_bpr")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs 6 epochs, raises `max_epochs` to 12 and resumes: the same result as 12 straight.
fn assert_resumes(cfg: &mut Config, dir: &Path, label: &str) {
    cfg.train.max_epochs = 12;
    let ds = load_dataset(&cfg.data).unwrap();
    let straight = train_on(cfg, &ds, Some(dir.join(format!("{label}-straight")))).unwrap();
    cfg.train.max_epochs = 6;
    let part = dir.join(format!("{label}-part"));
    train_on(cfg, &ds, Some(part.clone())).unwrap();
    let text = std::fs::read_to_string(part.join("config.toml")).unwrap();
    std::fs::write(
        part.join("config.toml"),
        text.replace("max_epochs = 6", "max_epochs = 12"),
    )
    .unwrap();
    let resumed = resume_run(&part).unwrap();
    assert_eq!(resumed.test.values, straight.test.values, "{label}");
    assert_eq!(
        std::fs::read(part.join("model.safetensors")).unwrap(),
        std::fs::read(dir.join(format!("{label}-straight/model.safetensors"))).unwrap(),
        "{label}: resumed parameters differ"
    );
}

#[test]
fn the_large_data_switches_resume_bit_identically() {
    let dir = tmpdir("resume");
    let data = write_clustered(&dir, 2, true);
    let mut lazy = config(&data, "mf", &["train.optimizer=\"lazy_adam\""]);
    assert_resumes(&mut lazy, &dir, "lazy");
    let mut steps = config(
        &data,
        "lightgcn",
        &[
            "train.steps_per_epoch=2",
            "train.warmup_steps=10",
            "eval.sample_users=50",
        ],
    );
    assert_resumes(&mut steps, &dir, "steps");
    let mut parallel = config(
        &data,
        "mf",
        &[
            "train.optimizer=\"lazy_adam\"",
            "train.sampler=\"parallel\"",
        ],
    );
    assert_resumes(&mut parallel, &dir, "parallel");
    std::fs::remove_dir_all(&dir).ok();
}

/// `steps_per_epoch` works with every trainable backbone: the batch grows to the training
/// interactions over the steps, the learning rate follows the rule, and the loss falls.
#[test]
fn steps_per_epoch_with_every_backbone() {
    let dir = tmpdir("steps");
    let data = write_clustered(&dir, 2, true);
    for &backbone in darec::backbone::config::BACKBONES
        .iter()
        .filter(|b| **b != "mostpop")
    {
        let mut cfg = config(
            &data,
            backbone,
            &[
                "train.steps_per_epoch=2",
                "train.batch_size=64",
                "train.max_epochs=9",
            ],
        );
        cfg.model.autocf.seeds = 2;
        let ds = load_dataset(&cfg.data).unwrap();
        let model = darec::train::Model::from_config(&cfg, &ds, &candle_core::Device::Cpu).unwrap();
        let runner = darec::train::EpochRunner::new(&model, &ds, &cfg).unwrap();
        assert_eq!(
            runner.batch_size(),
            ds.train.len().div_ceil(2),
            "{backbone}"
        );
        assert_eq!(runner.steps_per_epoch(), 2, "{backbone}");
        let out = dir.join(backbone);
        train_on(&cfg, &ds, Some(out.clone())).unwrap();
        let main = if backbone == "autocf" {
            "loss_rec"
        } else {
            "loss_bpr"
        };
        let l = losses(&out, main);
        assert!(l.len() == 3 && l[2] < l[0], "{backbone}: {main} {l:?}");
    }
    // the rule: lr at a batch 4x `batch_size` is 2x (sqrt), 4x (linear), 1x (none)
    let mut t = darec::config::TrainConfig {
        batch_size: 1000,
        steps_per_epoch: 10,
        lr: 1e-3,
        ..Default::default()
    };
    assert_eq!(t.effective_batch(40_000), 4000);
    assert_eq!(t.effective_batch(5_000), 1000, "never below batch_size");
    assert!((t.scaled_lr(4000) - 2e-3).abs() < 1e-15);
    t.lr_scaling = darec::config::LrScaling::Linear;
    assert!((t.scaled_lr(4000) - 4e-3).abs() < 1e-15);
    t.lr_scaling = darec::config::LrScaling::None;
    assert_eq!(t.scaled_lr(4000), 1e-3);
    t.steps_per_epoch = 0;
    assert_eq!(t.effective_batch(40_000), 1000, "0: the protocol's batches");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_switches_are_refused_where_they_do_not_apply() {
    for set in [
        vec![
            "model.backbone=\"lightgcn\"",
            "train.optimizer=\"lazy_adam\"",
        ],
        vec![
            "model.backbone=\"mf\"",
            "train.optimizer=\"lazy_adam\"",
            "align.kind=\"rlmrec_con\"",
            "align.vectors=\"x.safetensors\"",
        ],
    ] {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let e = format!("{:#}", Config::load(None, &set).unwrap_err());
        assert!(
            e.contains("lazy_adam") && e.contains("mf") && e.contains("steps_per_epoch"),
            "{e}"
        );
    }
    let set: Vec<String> = [
        "train.steps_per_epoch=16",
        "align.kind=\"rlmrec_con\"",
        "align.vectors=\"x.safetensors\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let e = format!("{:#}", Config::load(None, &set).unwrap_err());
    assert!(
        e.contains("steps_per_epoch") && e.contains("square of the batch"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Config::load(None, &["train.optimizer=\"sparse\"".into()]).unwrap_err()
    );
    assert!(
        e.contains("train.optimizer") && e.contains("lazy_adam"),
        "{e}"
    );
}

/// A run validated on a sample of users stops early on the sample, and its metrics carry
/// the sample size and standard errors.
#[test]
fn sampled_validation_drives_early_stopping() {
    let dir = tmpdir("sampled");
    let data = write_clustered(&dir, 2, true);
    let cfg = config(&data, "mf", &["eval.sample_users=40", "train.patience=2"]);
    let ds = load_dataset(&cfg.data).unwrap();
    let r = train_on(&cfg, &ds, Some(dir.join("run"))).unwrap();
    assert_eq!(r.valid.n_users, 40);
    assert_eq!(r.test.n_users, 40);
    assert!(r.valid.sampled_from.unwrap() > 40);
    assert!(r.test.se["recall@20"] > 0.0);
    let json = std::fs::read_to_string(dir.join("run/metrics.json")).unwrap();
    assert!(json.contains("\"sampled_from\"") && json.contains("\"se\""));
    std::fs::remove_dir_all(&dir).ok();
}

/// `darec data synth` writes data that the `synth` preset trains on.
#[test]
fn synthetic_data_trains_through_the_preset() {
    let dir = tmpdir("synth");
    let path = dir.join("s.tsv");
    let opts = darec::data::synth::SynthOptions {
        interactions: 20_000,
        ..Default::default()
    };
    darec::data::synth::generate(&opts, &path, false).unwrap();
    let cfg = Config::load(
        None,
        &[
            "data.name=\"synth\"".into(),
            format!("data.path=\"{}\"", path.display()),
            "model.backbone=\"mf\"".into(),
            "train.optimizer=\"lazy_adam\"".into(),
            "train.max_epochs=3".into(),
            "train.progress=false".into(),
        ],
    )
    .unwrap();
    let ds = load_dataset(&cfg.data).unwrap();
    assert_eq!(ds.train.len() + ds.valid.len() + ds.test.len(), 20_000);
    assert_eq!((ds.n_users(), ds.n_items()), (833, 208));
    let r = train_on(&cfg, &ds, Some(dir.join("run"))).unwrap();
    assert!(r.test.get("recall@20").unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).ok();
}
