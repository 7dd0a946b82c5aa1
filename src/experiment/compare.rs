//! `darec compare`: the variants x seeds grid, trained seed-major (the part a
//! [`TrainScope`] covers), then tabulated over every finished run.

use super::grid::{is_finished, run_grid, unfinished_state, ChildArgs, GridRun};
use super::table::compare_table;
use super::{default_metric, read_record};
use crate::run::{write_atomic, write_json};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `darec compare` configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// Run config every variant starts from.
    pub base: PathBuf,
    /// Overrides applied to every variant (e.g. `align.vectors=...`).
    #[serde(default)]
    pub set: Vec<String>,
    pub seeds: Vec<u64>,
    /// Name of the variant the others are compared with (default: the first).
    #[serde(default)]
    pub reference: Option<String>,
    /// Metric for the significance column.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// Extra pairs `[a, b]` whose difference in `metric` is tested like each variant
    /// against the reference (e.g. `[["DaRec", "RLMRec-Con"]]`).
    #[serde(default)]
    pub contrasts: Vec<[String; 2]>,
    #[serde(rename = "variant")]
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Run config this variant starts from instead of the comparison's `base` (e.g. each
    /// backbone's own `configs/<data>-<backbone>.toml`); the comparison's `set` still
    /// applies on top of it.
    #[serde(default)]
    pub base: Option<PathBuf>,
    #[serde(default)]
    pub set: Vec<String>,
    /// Seeds for this variant only (default: the comparison's `seeds`), e.g. fewer seeds
    /// for costly ablations. The table reports each variant over the seeds it ran.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
}

/// The run config `v` starts from: its own `base`, or the comparison's.
pub fn variant_base<'a>(cfg: &'a CompareConfig, v: &'a Variant) -> &'a Path {
    v.base.as_deref().unwrap_or(&cfg.base)
}

/// The seeds of `v`'s runs: its own, or the comparison's.
pub fn variant_seeds<'a>(cfg: &'a CompareConfig, v: &'a Variant) -> &'a [u64] {
    v.seeds.as_deref().unwrap_or(&cfg.seeds)
}

/// The overrides of `v`'s runs before the seed: the comparison's `set`, the command
/// line's, then the variant's own.
pub fn variant_sets(cfg: &CompareConfig, extra: &[String], v: &Variant) -> Vec<String> {
    let mut sets = cfg.set.clone();
    sets.extend(extra.iter().cloned());
    sets.extend(v.set.iter().cloned());
    sets
}

/// Which runs of a comparison `compare` trains; the table always shows every finished run.
#[derive(Clone, Debug, Default)]
pub struct TrainScope {
    /// Train nothing (`--table-only`).
    pub none: bool,
    /// Train only these variants (`--only`, by name); empty: all.
    pub variants: Vec<String>,
    /// Train only these seeds (`--only-seed`); empty: all.
    pub seeds: Vec<u64>,
}

impl TrainScope {
    /// Everything (the default of `darec compare`).
    pub fn all() -> Self {
        Self::default()
    }

    /// Nothing: tabulate what is finished.
    pub fn table_only() -> Self {
        Self {
            none: true,
            ..Self::default()
        }
    }

    fn covers(&self, variant: &str, seed: u64) -> bool {
        !self.none
            && (self.variants.is_empty() || self.variants.iter().any(|v| v == variant))
            && (self.seeds.is_empty() || self.seeds.contains(&seed))
    }

    /// Whether any of `v`'s runs is covered.
    fn covers_variant(&self, cfg: &CompareConfig, v: &Variant) -> bool {
        variant_seeds(cfg, v)
            .iter()
            .any(|&s| self.covers(&v.name, s))
    }

    /// A named variant or seed that the comparison does not have is an error, not a
    /// silent no-op.
    fn check(&self, cfg: &CompareConfig) -> anyhow::Result<()> {
        let names: Vec<&str> = cfg.variants.iter().map(|v| v.name.as_str()).collect();
        for v in &self.variants {
            if !names.contains(&v.as_str()) {
                bail!(
                    "compare: --only {v:?} is not a variant of this comparison (it has {names:?})"
                );
            }
        }
        for s in &self.seeds {
            let has = cfg
                .variants
                .iter()
                .any(|v| variant_seeds(cfg, v).contains(s));
            if !has {
                bail!("compare: --only-seed {s} is not a seed of this comparison");
            }
        }
        // each name and each seed exists on its own, yet together they may select nothing
        if !self.none && !cfg.variants.iter().any(|v| self.covers_variant(cfg, v)) {
            bail!(
                "compare: --only {:?} with --only-seed {:?} selects no run: no such variant has such a seed",
                self.variants,
                self.seeds
            );
        }
        Ok(())
    }
}

/// The runs of `runs` (variant, seed, run; variant-major as the config lists them) that
/// `scope` covers, seed-major: every variant's seed 1, then seed 2, ... Each finished seed
/// completes a paired comparison, so a grid stopped part-way still answers "does the
/// variant help" on the seeds it reached.
fn training_order<'a, T>(runs: &'a [(&str, u64, T)], scope: &TrainScope) -> Vec<&'a T> {
    let mut covered: Vec<&(&str, u64, T)> = runs
        .iter()
        .filter(|(name, seed, _)| scope.covers(name, *seed))
        .collect();
    covered.sort_by_key(|r| r.1); // stable: the config's variant order within a seed
    covered.into_iter().map(|r| &r.2).collect()
}

/// Runs the comparison grid (the part `scope` covers) and writes `compare.md` /
/// `compare.json` into `out`. The table covers every finished run, trained now or before
/// (e.g. by another process working through the grid), and lists the missing ones with
/// where each stands (training now or stopped, last epoch and best validation score).
pub fn compare(
    cfg: &CompareConfig,
    extra: &[String],
    out: &Path,
    child: &ChildArgs,
    scope: &TrainScope,
) -> anyhow::Result<String> {
    scope.check(cfg)?;
    if cfg.variants.is_empty()
        || cfg
            .variants
            .iter()
            .any(|v| variant_seeds(cfg, v).is_empty())
    {
        bail!("compare: needs at least one [[variant]] and at least one seed for each");
    }
    // every variant's settings must load before the first of many runs starts
    for v in cfg.variants.iter().filter(|v| scope.covers_variant(cfg, v)) {
        crate::config::Config::load(Some(variant_base(cfg, v)), &variant_sets(cfg, extra, v))
            .with_context(|| format!("compare: variant {:?}", v.name))?;
    }
    let mut runs = Vec::new();
    for v in &cfg.variants {
        for &seed in variant_seeds(cfg, v) {
            let mut sets = variant_sets(cfg, extra, v);
            sets.push(format!("train.seed={seed}"));
            sets.push("train.progress=false".into());
            let run = GridRun {
                base: variant_base(cfg, v).to_path_buf(),
                sets,
                dir: out.join(format!("{}-s{seed}", slug(&v.name))),
            };
            runs.push((v.name.as_str(), seed, run));
        }
    }
    let grid: Vec<GridRun> = training_order(&runs, scope).into_iter().cloned().collect();
    if !grid.is_empty() {
        run_grid(&grid, child)?;
    }
    let mut records = Vec::new();
    let mut missing = Vec::new();
    for (name, seed, run) in &runs {
        if !scope.covers(name, *seed) && !is_finished(&run.base, &run.sets, &run.dir)? {
            let state = unfinished_state(&run.dir, &cfg.metric)?;
            missing.push(format!("- {name} seed {seed}: {state}"));
            continue;
        }
        records.push(read_record(name, *seed, &run.dir)?);
    }
    let reference = cfg
        .reference
        .clone()
        .unwrap_or_else(|| cfg.variants[0].name.clone());
    let names: Vec<String> = cfg
        .variants
        .iter()
        .map(|v| v.name.clone())
        .filter(|n| records.iter().any(|r| &r.variant == n))
        .collect();
    let mut md = compare_table(&records, &names, &reference, &cfg.metric, &cfg.contrasts);
    if !missing.is_empty() {
        md.push_str(&format!(
            "\nNot finished ({}):\n{}\n",
            missing.len(),
            missing.join("\n")
        ));
    }
    write_atomic(&out.join("compare.md"), md.as_bytes())?;
    write_json(&out.join("compare.json"), &records)?;
    Ok(md)
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_only_tabulates_finished_runs_and_lists_the_missing_ones() {
        let out = std::env::temp_dir().join(format!("darec-table-only-{}", std::process::id()));
        let done = out.join("a-s1");
        std::fs::create_dir_all(&done).unwrap();
        let m = r#"{"n_users": 10, "values": {"recall@20": 0.25, "ndcg@20": 0.125}}"#;
        std::fs::write(
            done.join("metrics.json"),
            format!(r#"{{"valid": {m}, "test": {m}, "training": {{"epoch_seconds": 1.5}}}}"#),
        )
        .unwrap();
        let cfg: CompareConfig = toml::from_str(
            "base = \"missing.toml\"\nseeds = [1, 2]\n[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\nseeds = [1]",
        )
        .unwrap();
        // b seed 1 stopped after two validations (its last line torn by the kill), a seed 2
        // held by a process that has not validated yet
        let stopped = out.join("b-s1");
        std::fs::create_dir_all(&stopped).unwrap();
        std::fs::write(
            stopped.join("metrics.jsonl"),
            "{\"epoch\":3,\"split\":\"valid\",\"recall@20\":0.125}\n\
             {\"epoch\":6,\"split\":\"valid\",\"recall@20\":0.0625}\n{\"epoch\":9,\"spl",
        )
        .unwrap();
        let held = crate::run_lock::RunLock::acquire(&out.join("a-s2")).unwrap();
        // nothing is trained: training would start `darec train` child processes, and the
        // base config does not exist
        let md = compare(
            &cfg,
            &[],
            &out,
            &ChildArgs::default(),
            &TrainScope::table_only(),
        )
        .unwrap();
        assert!(
            md.contains("| a | 1 |") && md.contains("0.2500 ± 0.0000"),
            "{md}"
        );
        assert!(!md.contains("| b |"), "{md}");
        assert!(
            md.contains(
                "Not finished (2):\n- a seed 2: training now, no validation yet\n\
                 - b seed 1: stopped at epoch 6, best validation recall@20 0.1250 at epoch 3\n"
            ),
            "{md}"
        );
        drop(held);
        assert!(out.join("compare.md").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_grid_trains_seed_major_in_the_configs_variant_order() {
        let runs = [
            ("a", 1, "a1"),
            ("a", 2, "a2"),
            ("b", 1, "b1"),
            ("b", 2, "b2"),
            ("c", 3, "c3"),
        ];
        let order = training_order(&runs, &TrainScope::all());
        assert_eq!(order, [&"a1", &"b1", &"a2", &"b2", &"c3"]);
        let only_b_c = TrainScope {
            variants: vec!["c".into(), "b".into()],
            ..TrainScope::all()
        };
        assert_eq!(training_order(&runs, &only_b_c), [&"b1", &"b2", &"c3"]);
        assert!(training_order(&runs, &TrainScope::table_only()).is_empty());
    }

    #[test]
    fn a_train_scope_covers_only_what_it_names_and_refuses_unknown_names() {
        let cfg: CompareConfig = toml::from_str(
            "base = \"missing.toml\"\nseeds = [1, 2]\n[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\nseeds = [3]",
        )
        .unwrap();
        let scope = TrainScope {
            none: false,
            variants: vec!["a".into()],
            seeds: vec![2],
        };
        scope.check(&cfg).unwrap();
        assert!(scope.covers("a", 2));
        assert!(!scope.covers("a", 1) && !scope.covers("b", 2));
        assert!(TrainScope::all().covers("b", 3));
        assert!(!TrainScope::table_only().covers("a", 1));
        let typo = TrainScope {
            variants: vec!["c".into()],
            ..TrainScope::all()
        };
        let err = typo.check(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("\"c\"") && err.contains("\"a\", \"b\""),
            "{err}"
        );
        let seed = TrainScope {
            seeds: vec![4],
            ..TrainScope::all()
        };
        assert!(seed
            .check(&cfg)
            .unwrap_err()
            .to_string()
            .contains("--only-seed 4"));
        // `b` has only seed 3 and seed 2 is only `a`'s: the pair selects nothing
        let no_pair = TrainScope {
            variants: vec!["b".into()],
            seeds: vec![2],
            ..TrainScope::all()
        };
        let err = no_pair.check(&cfg).unwrap_err().to_string();
        assert!(err.contains("selects no run"), "{err}");
        // only the covered variant's settings are loaded: `b`'s missing base stops the
        // grid, naming `b`, before anything is trained
        let out = std::env::temp_dir().join(format!("darec-scope-{}", std::process::id()));
        let only_b = TrainScope {
            variants: vec!["b".into()],
            ..TrainScope::all()
        };
        let err = format!(
            "{:#}",
            compare(&cfg, &[], &out, &ChildArgs::default(), &only_b).unwrap_err()
        );
        assert!(err.contains("variant \"b\""), "{err}");
        assert!(!out.join("b-s3").exists());
    }

    /// A variant with its own base runs from it, and a variant whose settings do not load
    /// stops the grid before any run starts, naming the variant.
    #[test]
    fn every_variant_is_checked_before_the_first_run() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let cfg: CompareConfig = toml::from_str(&format!(
            "base = {:?}\nseeds = [1]\n[[variant]]\nname = \"plain\"\n\
             [[variant]]\nname = \"own base\"\nbase = {:?}\n\
             [[variant]]\nname = \"typo\"\nset = [\"model.layerz=2\"]",
            configs.join("ml-100k-lightgcn.toml").display().to_string(),
            configs.join("ml-100k-gccf.toml").display().to_string(),
        ))
        .unwrap();
        let own = &cfg.variants[1];
        let c = crate::config::Config::load(Some(variant_base(&cfg, own)), &[]).unwrap();
        assert_eq!(c.model.backbone, "gccf");
        let out = std::env::temp_dir().join(format!("darec-variant-check-{}", std::process::id()));
        let err = format!(
            "{:#}",
            compare(&cfg, &[], &out, &ChildArgs::default(), &TrainScope::all()).unwrap_err()
        );
        assert!(
            err.contains("variant \"typo\"") && err.contains("layerz"),
            "{err}"
        );
        // nothing was started
        assert!(!out.join("plain-s1").exists());
    }
}
