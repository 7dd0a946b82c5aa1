//! Grids of runs: `darec compare` (variants x seeds, mean ± std and the change against a
//! reference variant) and `darec tune` (a hyper-parameter grid scored on validation only,
//! then the chosen setting tested once).
//!
//! Each run is a child `darec train` process with its own run directory, so runs are
//! isolated (peak memory is per run), an interrupted grid resumes by skipping finished
//! runs, and every run can be inspected or re-evaluated on its own. Several processes may
//! work through one grid at once (one per core): a run that another process is training
//! (its directory's lock, `run_lock.rs`) is skipped and waited for at the end.
//!
//! `grid` runs the child processes, `compare` and `tune` build their grids, `table` writes
//! the comparison's statistics.

mod compare;
mod grid;
mod table;
mod tune;

pub use compare::{
    compare, variant_base, variant_seeds, variant_sets, CompareConfig, TrainScope, Variant,
};
pub use grid::{run_child, run_grid, ChildArgs, GridRun, RunOutcome};
pub use table::compare_table;
pub use tune::{grid_points, tune, TuneConfig};

use crate::eval::Metrics;
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};

fn default_metric() -> String {
    "recall@20".into()
}

/// What one finished run reports back.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub variant: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub valid: Metrics,
    pub test: Metrics,
    pub epoch_seconds: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub best_epoch: Option<usize>,
}

fn read_record(variant: &str, seed: u64, dir: &Path) -> anyhow::Result<RunRecord> {
    let p = dir.join("metrics.json");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?,
    )?;
    let metrics =
        |k: &str| -> anyhow::Result<Metrics> { Ok(serde_json::from_value(v[k].clone())?) };
    let t = &v["training"];
    Ok(RunRecord {
        variant: variant.into(),
        seed,
        dir: dir.to_path_buf(),
        valid: metrics("valid")?,
        test: metrics("test")?,
        epoch_seconds: t["epoch_seconds"].as_f64(),
        peak_rss_mib: t["peak_rss_mib"].as_f64(),
        best_epoch: t["best_epoch"].as_u64().map(|x| x as usize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped comparison and tuning config parses, and its base config exists.
    #[test]
    fn shipped_experiment_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = || std::fs::read_to_string(&path).unwrap();
            let base = if name.starts_with("compare-") {
                let c: CompareConfig =
                    toml::from_str(&text()).unwrap_or_else(|e| panic!("{name}: {e}"));
                let names: Vec<&str> = c.variants.iter().map(|v| v.name.as_str()).collect();
                for pair in &c.contrasts {
                    assert!(
                        pair.iter().all(|n| names.contains(&n.as_str())),
                        "{name}: {pair:?}"
                    );
                }
                // every variant's settings are known keys with valid values, on its base
                let root = dir.parent().unwrap();
                for v in &c.variants {
                    let sets = variant_sets(&c, &[], v);
                    crate::config::Config::load(Some(&root.join(variant_base(&c, v))), &sets)
                        .unwrap_or_else(|e| panic!("{name}: variant {}: {e:#}", v.name));
                }
                c.base
            } else if name.starts_with("tune-") {
                let t: TuneConfig =
                    toml::from_str(&text()).unwrap_or_else(|e| panic!("{name}: {e}"));
                // every trial's settings are known keys with valid values
                let root = dir.parent().unwrap();
                for trial in t.trials().unwrap() {
                    let mut sets = t.set.clone();
                    sets.extend(trial.iter().cloned());
                    crate::config::Config::load(Some(&root.join(&t.base)), &sets)
                        .unwrap_or_else(|e| panic!("{name}: trial {trial:?}: {e:#}"));
                }
                t.base
            } else if name.ends_with(".toml") {
                // a run config: loads and validates as it is
                crate::config::Config::load(Some(&path), &[])
                    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                continue;
            } else {
                continue;
            };
            assert!(
                dir.parent().unwrap().join(&base).exists(),
                "{name}: no {}",
                base.display()
            );
            seen += 1;
        }
        assert!(seen >= 4, "found only {seen} experiment configs");
    }
}
