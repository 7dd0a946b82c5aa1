//! `darec tune`: a grid (or a sample of it, plus extra points) trained on validation only;
//! the best setting is then tested once.

use super::grid::{run_grid, ChildArgs, GridRun};
use super::{default_metric, read_record};
use crate::report::short;
use crate::run::{write_atomic, write_json};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Directory name of a tuning trial: its assignments with the shared key prefixes
/// dropped (`lambda=0.1,k=4`), other characters than `[A-Za-z0-9._=-]` as `_`.
fn trial_slug(assignments: &[String]) -> String {
    if assignments.is_empty() {
        return "base".into();
    }
    let short = |a: &String| match a.split_once('=') {
        Some((k, v)) => format!("{}={v}", k.rsplit('.').next().unwrap_or(k)),
        None => a.clone(),
    };
    let mut names: Vec<String> = assignments.iter().map(short).collect();
    // two keys with the same last component: keep the full keys
    let keys: Vec<&str> = names
        .iter()
        .map(|n| n.split('=').next().unwrap_or(""))
        .collect();
    if (1..keys.len()).any(|i| keys[..i].contains(&keys[i])) {
        names = assignments.to_vec();
    }
    names
        .join(",")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=-,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The overrides of one tuning trial: the tune's seed first, so that a `train.seed` in the
/// config's `set`, the extra overrides or the trial itself (a grid over seeds) wins; then
/// validation only.
fn trial_sets(cfg: &TuneConfig, extra: &[String], trial: &[String]) -> Vec<String> {
    let mut sets = vec![format!("train.seed={}", cfg.seed)];
    sets.extend(cfg.set.iter().cloned());
    sets.extend(extra.iter().cloned());
    sets.extend(trial.iter().cloned());
    sets.push("train.evaluate_test=false".into());
    sets.push("train.progress=false".into());
    sets
}

/// `darec tune` configuration: a grid over config keys, scored on validation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuneConfig {
    pub base: PathBuf,
    #[serde(default)]
    pub set: Vec<String>,
    /// Seed of every tuning run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Validation metric to maximise.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// `key = [values...]`; every combination is tried (in order).
    #[serde(default)]
    pub grid: toml::Table,
    /// Try only this many combinations, drawn at random from the grid (seeded).
    #[serde(default)]
    pub samples: Option<usize>,
    /// Settings tried after the grid, each a list of `key=value` (e.g. a second stage
    /// around the grid's best: `points = [["align.darec.k=4"], ["align.darec.k=8"]]`).
    /// Trials are named by their settings, so extending a finished search reruns nothing.
    #[serde(default)]
    pub points: Vec<Vec<String>>,
}

impl TuneConfig {
    /// Every setting to try: the grid's combinations (or a sample of them), then `points`.
    pub fn trials(&self) -> anyhow::Result<Vec<Vec<String>>> {
        let mut trials = if self.grid.is_empty() {
            Vec::new()
        } else {
            grid_points(&self.grid)?
        };
        if let Some(k) = self.samples {
            let mut rng = crate::rng::Rng::derive(self.seed, "tune");
            let pick = rng.sample_distinct(trials.len(), k);
            trials = pick.into_iter().map(|i| trials[i].clone()).collect();
        }
        for p in &self.points {
            if p.is_empty() || p.iter().any(|a| !a.contains('=')) {
                bail!("tune: every entry of `points` must be a non-empty list of key=value");
            }
            if !trials.contains(p) {
                trials.push(p.clone());
            }
        }
        if trials.is_empty() {
            bail!("tune: nothing to try (give a [grid] or `points`)");
        }
        Ok(trials)
    }
}

fn default_seed() -> u64 {
    2024
}

/// All `key=value` assignment lists of the grid.
pub fn grid_points(grid: &toml::Table) -> anyhow::Result<Vec<Vec<String>>> {
    let mut points: Vec<Vec<String>> = vec![Vec::new()];
    for (key, values) in grid {
        let values = values
            .as_array()
            .with_context(|| format!("tune grid `{key}` must be a list of values"))?;
        if values.is_empty() {
            bail!("tune grid `{key}` is empty");
        }
        let mut next = Vec::new();
        for p in &points {
            for v in values {
                let mut q = p.clone();
                q.push(format!("{key}={v}"));
                next.push(q);
            }
        }
        points = next;
    }
    Ok(points)
}

/// Runs the grid without touching the test split, picks the best validation score, then
/// evaluates that single setting on test.
pub fn tune(
    cfg: &TuneConfig,
    extra: &[String],
    out: &Path,
    child: &ChildArgs,
) -> anyhow::Result<String> {
    let points = cfg.trials()?;
    let runs: Vec<GridRun> = points
        .iter()
        .map(|p| GridRun {
            base: cfg.base.clone(),
            sets: trial_sets(cfg, extra, p),
            // named by its setting, so an edited grid never mistakes one trial for another
            dir: out.join(format!("trial-{}", trial_slug(p))),
        })
        .collect();
    run_grid(&runs, child)?;
    let mut rows = Vec::new();
    for (i, (p, run)) in points.iter().zip(&runs).enumerate() {
        let dir = run.dir.clone();
        let r = read_record(&format!("trial-{i}"), cfg.seed, &dir)?;
        let score = r
            .valid
            .get(&cfg.metric)
            .with_context(|| format!("{}: no validation {}", dir.display(), cfg.metric))?;
        rows.push((p.join(" "), score, dir));
    }
    let best = rows
        .iter()
        .enumerate()
        .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
        .map(|(i, _)| i)
        .context("tune: no trials")?;
    let (_, test) = crate::pipeline::eval_run(&rows[best].2, "test")?;
    let mut s = format!(
        "| trial | setting | validation {} |\n|---|---|---|\n",
        short(&cfg.metric)
    );
    for (i, (setting, score, _)) in rows.iter().enumerate() {
        let mark = if i == best { " **best**" } else { "" };
        s.push_str(&format!("| {i} | `{setting}` | {score:.4}{mark} |\n"));
    }
    s.push_str(&format!(
        "\nChosen on validation: `{}`. Its test metrics (evaluated once):\n\n",
        rows[best].0
    ));
    s.push_str(&crate::eval::markdown_table(&[(
        "chosen".into(),
        test.clone(),
    )]));
    write_atomic(&out.join("tune.md"), s.as_bytes())?;
    write_json(
        &out.join("tune.json"),
        &serde_json::json!({"best": rows[best].0, "test": test, "trials": rows.iter().map(|r| serde_json::json!({"setting": r.0, "valid": r.1})).collect::<Vec<_>>()}),
    )?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed in the grid (or in `set`) wins over the tune's `seed` (it used to be
    /// overridden, so a grid over seeds trained one seed under several names).
    #[test]
    fn a_trial_seed_wins_over_the_tune_seed() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/ml-100k-lightgcn.toml");
        let t: TuneConfig = toml::from_str(&format!(
            "base = {:?}\nseed = 1\n[grid]\n\"train.seed\" = [2, 3]\n",
            base.display().to_string()
        ))
        .unwrap();
        for trial in t.trials().unwrap() {
            let c = crate::config::Config::load(Some(&base), &trial_sets(&t, &[], &trial)).unwrap();
            assert_eq!(trial, vec![format!("train.seed={}", c.train.seed)]);
            assert!(!c.train.evaluate_test);
        }
        let plain: TuneConfig = toml::from_str(&format!(
            "base = {:?}\nseed = 7\n",
            base.display().to_string()
        ))
        .unwrap();
        let c = crate::config::Config::load(Some(&base), &trial_sets(&plain, &[], &[])).unwrap();
        assert_eq!(c.train.seed, 7);
    }

    #[test]
    fn trial_directories_are_named_by_their_setting() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            trial_slug(&a(&["align.darec.lambda=0.1", "align.darec.k=4"])),
            "lambda=0.1,k=4"
        );
        // clashing last components keep the full keys; quotes and slashes are replaced
        assert_eq!(
            trial_slug(&a(&["model.reg=1e-6", "align.x.reg=\"a/b\""])),
            "model.reg=1e-6,align.x.reg=_a_b_"
        );
        assert_eq!(trial_slug(&[]), "base");
    }

    #[test]
    fn tune_trials_are_the_grid_then_the_extra_points() {
        let cfg: TuneConfig = toml::from_str(
            "base = \"b.toml\"\npoints = [[\"a.x=2\", \"b.y=1\"], [\"c.z=5\"]]\n[grid]\n\"a.x\" = [1, 2]\n\"b.y\" = [1]",
        )
        .unwrap();
        let t = cfg.trials().unwrap();
        // the first point repeats a grid combination and is tried once
        assert_eq!(t.len(), 3);
        assert_eq!(t[2], vec!["c.z=5".to_string()]);
        let only: TuneConfig = toml::from_str("base = \"b.toml\"\npoints = [[\"c.z=5\"]]").unwrap();
        assert_eq!(only.trials().unwrap().len(), 1);
        let none: TuneConfig = toml::from_str("base = \"b.toml\"").unwrap();
        assert!(none.trials().is_err());
        let bad: TuneConfig = toml::from_str("base = \"b.toml\"\npoints = [[\"k\"]]").unwrap();
        assert!(bad.trials().is_err());
    }

    #[test]
    fn grid_points_enumerate_every_combination() {
        let grid: toml::Table =
            toml::from_str("\"a.x\" = [1, 2]\n\"b.y\" = [\"p\", \"q\", \"r\"]").unwrap();
        let p = grid_points(&grid).unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], vec!["a.x=1".to_string(), "b.y=\"p\"".to_string()]);
        assert!(grid_points(&toml::from_str("k = 3").unwrap()).is_err());
    }
}
