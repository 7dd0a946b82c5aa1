//! Fold-in measured (issue 14): train LightGCN on ML-1M without 10% of the users'
//! histories, fold each of those users in from their training items (no retraining), and
//! rank their test items. Compared with the same users in the model trained with them
//! (the quickstart's run, same config and seed) and with MostPop.
//!
//! `cargo run --release --example fold_in_study [-- <config> <full run dir> <out dir>]`
//! (defaults: configs/ml-1m-lightgcn.toml, runs/quickstart-ml-1m-lightgcn,
//! runs/fold-in-study). Both trainings resume if interrupted.

use candle_core::{Device, Tensor};
use darec::config::Config;
use darec::data::holdout::{sample_fraction, without_user_history};
use darec::data::load::load_dataset;
use darec::eval::{evaluate, markdown_table, EmbeddingScorer, Metrics, MostPop};
use darec::serve::fold_in::{fit_user, fit_user_from, FitOptions};
use std::path::{Path, PathBuf};

fn trained(
    cfg: &Config,
    ds: &darec::data::Dataset,
    dir: &Path,
) -> anyhow::Result<darec::train::Model> {
    if !dir.join("metrics.json").exists() {
        if dir.join("config.toml").exists() {
            darec::pipeline::resume_run(dir)?;
        } else {
            darec::pipeline::train_on(cfg, ds, Some(dir.to_path_buf()))?;
        }
    }
    let model = darec::train::Model::from_config(cfg, ds, &Device::Cpu)?;
    model.load(&dir.join("model.safetensors"))?;
    Ok(model)
}

fn host(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1()?)
}

fn main() -> anyhow::Result<()> {
    darec::threads::configure(0)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = PathBuf::from(
        args.first()
            .map_or("configs/ml-1m-lightgcn.toml", |s| s.as_str()),
    );
    let full_dir = PathBuf::from(
        args.get(1)
            .map_or("runs/quickstart-ml-1m-lightgcn", |s| s.as_str()),
    );
    let out = PathBuf::from(args.get(2).map_or("runs/fold-in-study", |s| s.as_str()));
    let mut cfg = Config::load(Some(&config), &["train.progress=false".into()])?;
    cfg.output.runs_dir = out.clone();
    let ds = load_dataset(&cfg.data)?;
    let held = sample_fraction(ds.n_users(), 0.1, cfg.train.seed, "fold-in-study users");
    let reduced = without_user_history(&ds, &held);
    println!(
        "{} users held out ({} training interactions removed); their test items: {}",
        held.len(),
        ds.train.len() - reduced.train.len(),
        ds.test
            .iter()
            .filter(|(u, _)| held.binary_search(u).is_ok())
            .count()
    );

    let t0 = std::time::Instant::now();
    let without = trained(&cfg, &reduced, &out.join("without-held-out-users"))?;
    println!("model without them: {:.0} s", t0.elapsed().as_secs_f64());
    let with = trained(&cfg, &ds, &full_dir)?;

    let train_ui = ds.user_items(&ds.train);
    let held_test: Vec<(u32, u32)> = ds
        .test
        .iter()
        .copied()
        .filter(|(u, _)| held.binary_search(u).is_ok())
        .collect();
    let truth = ds.user_items(&held_test);
    let d = without.backbone.out_dim();
    let (_, items_t) = without.final_embeddings()?;
    let items = host(&items_t)?;
    let ego = without.backbone.ego()?;
    let closed = without.backbone.fold_in(&ego)?;
    let opts = FitOptions {
        seed: cfg.train.seed,
        ..Default::default()
    };
    let n_users = ds.n_users();
    let mut rows: Vec<(String, Metrics)> = Vec::new();
    let mut timings = Vec::new();
    type Method<'a> = Box<dyn Fn(&[u32]) -> Vec<f32> + 'a>;
    let mut methods: Vec<(&str, Method)> = vec![(
        "fold-in: BPR fit (items fixed)",
        Box::new(|l: &[u32]| fit_user(&items, d, l, &opts)),
    )];
    if let Some(f) = &closed {
        methods.insert(
            0,
            (
                "fold-in: LightGCN propagation (closed form)",
                Box::new(|l: &[u32]| f.user(l)),
            ),
        );
        methods.push((
            "fold-in: propagation, then BPR fit",
            Box::new(|l: &[u32]| fit_user_from(&items, d, l, Some(&f.user(l)), &opts)),
        ));
    }
    for (name, f) in &methods {
        let t = std::time::Instant::now();
        let mut users = vec![0f32; n_users * d];
        for &u in &held {
            let v = f(train_ui.row(u));
            users[u as usize * d..(u as usize + 1) * d].copy_from_slice(&v);
        }
        let per_user_ms = t.elapsed().as_secs_f64() * 1e3 / held.len() as f64;
        timings.push(format!("{name}: {per_user_ms:.2} ms per user"));
        let scorer = EmbeddingScorer {
            users: Tensor::from_vec(users, (n_users, d), &Device::Cpu)?,
            items: items_t.clone(),
        };
        rows.push((
            name.to_string(),
            evaluate(&scorer, &truth, &[&train_ui], &cfg.eval)?,
        ));
    }
    let (u_with, i_with) = with.final_embeddings()?;
    let scorer = EmbeddingScorer {
        users: u_with,
        items: i_with,
    };
    rows.push((
        "trained with them (same config and seed)".into(),
        evaluate(&scorer, &truth, &[&train_ui], &cfg.eval)?,
    ));
    let pop = MostPop::fit(&reduced.user_items(&reduced.train), ds.n_items());
    rows.push((
        "MostPop".into(),
        evaluate(&pop, &truth, &[&train_ui], &cfg.eval)?,
    ));
    let table = markdown_table(&rows);
    println!(
        "\nTest split, the {} held-out users:\n\n{table}",
        held.len()
    );
    for t in &timings {
        println!("{t}");
    }
    darec::run::write_atomic(
        &out.join("fold-in.md"),
        format!("{table}\n{}\n", timings.join("\n")).as_bytes(),
    )?;
    Ok(())
}
