//! End-to-end jobs behind the CLI: train a configured model into a run directory, and
//! re-evaluate a saved run.

use crate::config::Config;
use crate::data::load::load_dataset;
use crate::data::Dataset;
use crate::eval::{evaluate, markdown_table, Metrics, MostPop};
use crate::run::{write_atomic, write_json, RunDir};
use crate::train::{self, Model, TrainOutcome};
use anyhow::Context;
use candle_core::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The final results of a run (`metrics.json`).
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub dataset: String,
    pub backbone: String,
    /// Backbone plus alignment, e.g. `lightgcn+darec`.
    pub label: String,
    pub seed: u64,
    pub run_dir: PathBuf,
    pub test: Metrics,
    pub valid: Metrics,
    /// Training details (absent for MostPop).
    pub training: Option<TrainOutcome>,
}

/// The device darec computes on: CPU, or the first CUDA GPU when built with `--features cuda`.
pub fn device() -> anyhow::Result<Device> {
    #[cfg(feature = "cuda")]
    {
        return Ok(Device::new_cuda(0)?);
    }
    #[allow(unreachable_code)]
    Ok(Device::Cpu)
}

/// Loads the data, trains (or fits MostPop), evaluates and writes the run directory.
/// An existing run in the directory is refused unless `overwrite` (see [`RunDir::create`]).
pub fn train_run(cfg: &Config, out: Option<PathBuf>, overwrite: bool) -> anyhow::Result<RunResult> {
    // the directory is claimed first, so an occupied one is refused before the data loads
    let dir = out.unwrap_or_else(|| cfg.output.runs_dir.join(cfg.run_name()));
    let run = RunDir::create(&dir, overwrite)?;
    let ds = load_dataset(&cfg.data)?;
    tracing::info!(
        users = ds.n_users(),
        items = ds.n_items(),
        train = ds.train.len(),
        valid = ds.valid.len(),
        test = ds.test.len(),
        "dataset {} ready",
        ds.name
    );
    train_into(cfg, &ds, run, dir)
}

/// Like [`train_run`] on an already prepared dataset, into a new run directory.
pub fn train_on(cfg: &Config, ds: &Dataset, out: Option<PathBuf>) -> anyhow::Result<RunResult> {
    let dir = out.unwrap_or_else(|| cfg.output.runs_dir.join(cfg.run_name()));
    let run = RunDir::create(&dir, false)?;
    train_into(cfg, ds, run, dir)
}

/// Continues an interrupted `darec train` in `dir` from its last checkpoint (its config,
/// split and random streams are restored, so the result equals an uninterrupted run).
pub fn resume_run(dir: &Path) -> anyhow::Result<RunResult> {
    let run = RunDir::resume(dir)?;
    let cfg = Config::load(Some(&run.file("config.toml")), &[])?;
    let ds = load_dataset(&cfg.data)?;
    train_into(&cfg, &ds, run, dir.to_path_buf())
}

fn train_into(
    cfg: &Config,
    ds: &Dataset,
    mut run: RunDir,
    dir: PathBuf,
) -> anyhow::Result<RunResult> {
    write_atomic(&run.file("config.toml"), cfg.to_toml().as_bytes())?;
    write_json(&run.file("users.json"), &ds.user_ids.external)?;
    write_json(&run.file("items.json"), &ds.item_ids.external)?;

    let result = if cfg.model.backbone == "mostpop" {
        let train_ui = ds.user_items(&ds.train);
        let pop = MostPop::fit(&train_ui, ds.n_items());
        let valid = evaluate(&pop, &ds.user_items(&ds.valid), &[&train_ui], &cfg.eval)?;
        let test = evaluate(&pop, &ds.user_items(&ds.test), &[&train_ui], &cfg.eval)?;
        run.log(&serde_json::json!({"split": "test", "metrics": test.values}))?;
        RunResult {
            dataset: ds.name.clone(),
            backbone: "mostpop".into(),
            label: "mostpop".into(),
            seed: cfg.train.seed,
            run_dir: dir.clone(),
            test,
            valid,
            training: None,
        }
    } else {
        let mut model = Model::from_config(cfg, ds, &device()?)?;
        let outcome = train::train(&mut model, ds, cfg, &mut run)?;
        model.save(&run.file("model.safetensors"))?;
        RunResult {
            dataset: ds.name.clone(),
            backbone: cfg.model.backbone.clone(),
            label: cfg.label(),
            seed: cfg.train.seed,
            run_dir: dir.clone(),
            test: outcome.test.clone(),
            valid: outcome.best_valid.clone(),
            training: Some(outcome),
        }
    };
    write_json(&run.file("metrics.json"), &result)?;
    let label = format!("{} {} seed {}", result.dataset, result.label, result.seed);
    let md = format!(
        "# Test metrics (test split, best validation weights)\n\n{}",
        markdown_table(&[(label, result.test.clone())])
    );
    write_atomic(&run.file("metrics.md"), md.as_bytes())?;
    Ok(result)
}

/// A saved run's config and the data set it was trained on, checked to yield the same
/// users and items as when the run was trained.
pub fn open_run_data(dir: &Path) -> anyhow::Result<(Config, Dataset)> {
    let run = RunDir::open(dir)?;
    let cfg = Config::load(Some(&run.file("config.toml")), &[])?;
    let ds = load_dataset(&cfg.data)?;
    for (file, now) in [
        ("users.json", &ds.user_ids.external),
        ("items.json", &ds.item_ids.external),
    ] {
        let saved: Vec<String> = serde_json::from_str(
            &std::fs::read_to_string(run.file(file))
                .with_context(|| format!("{}: {file} missing", dir.display()))?,
        )
        .with_context(|| format!("{}: {file} unreadable", dir.display()))?;
        if &saved != now {
            anyhow::bail!(
                "{}: the data set now yields other {} than when the run was trained",
                dir.display(),
                file.trim_end_matches(".json")
            );
        }
    }
    Ok((cfg, ds))
}

/// A saved run opened for use: config, data set ([`open_run_data`]) and the trained model.
pub fn open_trained(dir: &Path) -> anyhow::Result<(Config, Dataset, Model)> {
    let (cfg, ds) = open_run_data(dir)?;
    if cfg.model.backbone == "mostpop" {
        anyhow::bail!("{}: a MostPop run has no model to load", dir.display());
    }
    let model = Model::from_config(&cfg, &ds, &device()?)?;
    model.load(&dir.join("model.safetensors"))?;
    Ok((cfg, ds, model))
}

/// Re-evaluates a saved run on `split` ("test" or "valid") from its config and model.
pub fn eval_run(dir: &Path, split: &str) -> anyhow::Result<(Config, Metrics)> {
    eval_run_sampled(dir, split, None)
}

/// [`eval_run`] with the run's `eval.sample_users` replaced when `sample_users` is given
/// (`Some(0)`: every user).
pub fn eval_run_sampled(
    dir: &Path,
    split: &str,
    sample_users: Option<usize>,
) -> anyhow::Result<(Config, Metrics)> {
    let (mut cfg, ds) = open_run_data(dir)?;
    if let Some(n) = sample_users {
        cfg.eval.sample_users = n;
    }
    if cfg.model.backbone == "mostpop" {
        let train_ui = ds.user_items(&ds.train);
        let pop = MostPop::fit(&train_ui, ds.n_items());
        let truth = if split == "valid" {
            ds.user_items(&ds.valid)
        } else {
            ds.user_items(&ds.test)
        };
        return Ok((
            cfg.clone(),
            evaluate(&pop, &truth, &[&train_ui], &cfg.eval)?,
        ));
    }
    let model = Model::from_config(&cfg, &ds, &device()?)?;
    model.load(&dir.join("model.safetensors"))?;
    let m = train::evaluate_split(&model, &ds, split, &cfg)?;
    Ok((cfg, m))
}

/// Draws the shared space of a saved DaRec run (`<dir>/shared-space.{png,svg}` by
/// default) for `n_nodes` sampled users and items; K is the run's `align.darec.k`.
/// What `darec map` wrote and measured.
pub struct SharedSpaceMap {
    /// The PNG (an SVG with the same stem lies beside it).
    pub png: PathBuf,
    /// Mean cosine between distinct sampled nodes in the collaborative and the language
    /// shared parts: near 1 means that side's shared part collapsed to one direction.
    pub mean_cosine: (f64, f64),
}

/// Mean cosine over all pairs of distinct rows of a row-normalised `[n, d]` matrix:
/// `(|sum_i x_i|^2 - n) / (n (n - 1))`.
pub fn mean_pairwise_cosine(x: &[f32], n: usize, d: usize) -> f64 {
    let mut sum = vec![0f64; d];
    for row in x.chunks_exact(d) {
        sum.iter_mut().zip(row).for_each(|(s, v)| *s += *v as f64);
    }
    let norms: f64 = x
        .chunks_exact(d)
        .map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>())
        .sum();
    (sum.iter().map(|s| s * s).sum::<f64>() - norms) / (n as f64 * (n as f64 - 1.0))
}

pub fn map_run(
    dir: &Path,
    n_nodes: usize,
    out: Option<PathBuf>,
    projection: crate::plot::Projection,
) -> anyhow::Result<SharedSpaceMap> {
    let (cfg, _ds, model) = open_trained(dir)?;
    let ego = model.backbone.ego()?;
    let all = model
        .backbone
        .encode(&ego, &mut crate::backbone::Mode::Eval)?;
    let mut rng = crate::rng::Rng::derive(cfg.train.seed, "map");
    let nodes: Vec<u32> = rng
        .sample_distinct(all.dim(0)?, n_nodes)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    let idx = candle_core::Tensor::from_slice(&nodes, nodes.len(), all.device())?;
    let e_c = all.index_select(&idx, 0)?;
    let (sh_c, sh_l) = model.align.shared_space(&e_c, &nodes)?.with_context(|| {
        format!(
            "{}: alignment `{}` has no shared space to draw (train with align.kind = \"darec\")",
            dir.display(),
            model.align.name()
        )
    })?;
    let host = |t: &candle_core::Tensor| -> anyhow::Result<(Vec<f32>, usize)> {
        let t = crate::ops::rowwise::l2_normalize(t)?;
        Ok((t.flatten_all()?.to_vec1::<f32>()?, t.dim(1)?))
    };
    let (xc, dc) = host(&sh_c)?;
    let (xl, dl) = host(&sh_l)?;
    let n = nodes.len();
    let mean_cosine = (
        mean_pairwise_cosine(&xc, n, dc),
        mean_pairwise_cosine(&xl, n, dl),
    );
    let k = cfg.align.darec.k;
    let left = crate::plot::panel(
        "collaborative shared space",
        &xc,
        (n, dc),
        k,
        cfg.train.seed,
        projection,
    );
    let mut right = crate::plot::panel(
        "language shared space",
        &xl,
        (n, dl),
        k,
        cfg.train.seed,
        projection,
    );
    if dc == dl {
        crate::plot::match_colours(&left, &xc, &mut right, &xl, dc);
    }
    let panels = [left, right];
    let stem = out.unwrap_or_else(|| dir.join("shared-space"));
    crate::plot::write_map(&stem, &panels)?;
    Ok(SharedSpaceMap {
        png: stem.with_extension("png"),
        mean_cosine,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn mean_pairwise_cosine_by_hand() {
        // pairs: (1,0)-(0,1) 0, (1,0)-(1,0) 1, (0,1)-(1,0) 0 -> mean 1/3
        let x = [1f32, 0., 0., 1., 1., 0.];
        assert!((super::mean_pairwise_cosine(&x, 3, 2) - 1.0 / 3.0).abs() < 1e-12);
        // two opposite rows: -1
        assert!((super::mean_pairwise_cosine(&[0.6, 0.8, -0.6, -0.8], 2, 2) + 1.0).abs() < 1e-6);
    }
}
