//! Grids of runs: `darec compare` (variants x seeds, mean ± std and the change against a
//! reference variant) and `darec tune` (a hyper-parameter grid scored on validation only,
//! then the chosen setting tested once).
//!
//! Each run is a child `darec train` process with its own run directory, so runs are
//! isolated (peak memory is per run), an interrupted grid resumes by skipping finished
//! runs, and every run can be inspected or re-evaluated on its own. Several processes may
//! work through one grid at once (one per core): a run that another process is training
//! (its directory's lock, `run_lock.rs`) is skipped and waited for at the end.

use crate::eval::Metrics;
use crate::report::{mean_std, short};
use crate::run::{write_atomic, write_json};
use crate::run_lock::{RunLock, BUSY_EXIT};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

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

fn default_metric() -> String {
    "recall@20".into()
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

/// One run of a grid: the config it starts from, its overrides and its directory.
#[derive(Clone, Debug)]
pub struct GridRun {
    pub base: PathBuf,
    pub sets: Vec<String>,
    pub dir: PathBuf,
}

/// How [`run_child`] left a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Finished (now or before).
    Finished,
    /// Another process is training it.
    Busy,
}

/// What each child `darec train` of a grid is started with: the parent's `--threads` and
/// its `--log` filter, passed on as given (so `--log "darec=debug,warn"` stays a filter in
/// the child too).
#[derive(Clone, Debug)]
pub struct ChildArgs {
    pub threads: Option<usize>,
    pub log: String,
}

impl ChildArgs {
    /// `threads` and the level this process logs at now (its most verbose level).
    pub fn at_current_level(threads: Option<usize>) -> Self {
        let log = tracing::level_filters::LevelFilter::current().to_string();
        Self { threads, log }
    }
}

/// How often a grid looks again at the runs that other processes are training.
const BUSY_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs every run of a grid in order. A run that another process is training is left to
/// it; once the others are done, the grid waits for those, and trains (or resumes) any
/// that its holder left unfinished. So `darec compare` (or `darec tune`) started twice on
/// one grid keeps two cores busy, each run trained once.
pub fn run_grid(runs: &[GridRun], child: &ChildArgs) -> anyhow::Result<()> {
    let mut pending: Vec<&GridRun> = runs.iter().collect();
    while !pending.is_empty() {
        let mut busy = Vec::new();
        for r in pending {
            if run_child(r, child)? == RunOutcome::Busy {
                busy.push(r);
            }
        }
        if busy.is_empty() {
            break;
        }
        let names: Vec<String> = busy.iter().map(|r| r.dir.display().to_string()).collect();
        tracing::info!(
            "waiting for {} run(s) that another process is training: {}",
            busy.len(),
            names.join(", ")
        );
        while busy
            .iter()
            .map(|r| RunLock::is_busy(&r.dir))
            .collect::<anyhow::Result<Vec<bool>>>()?
            .into_iter()
            .all(|b| b)
        {
            std::thread::sleep(BUSY_POLL);
        }
        pending = busy;
    }
    Ok(())
}

/// Runs `darec train` in a child process unless `dir` already holds a finished run; a run
/// interrupted after a validation checkpoint is resumed from it. A run that another
/// process is training is left alone ([`RunOutcome::Busy`]).
pub fn run_child(run: &GridRun, child: &ChildArgs) -> anyhow::Result<RunOutcome> {
    let (base, sets, dir) = (run.base.as_path(), &run.sets, run.dir.as_path());
    if RunLock::is_busy(dir)? {
        tracing::info!(
            "{}: another process is training it, skipped for now",
            dir.display()
        );
        return Ok(RunOutcome::Busy);
    }
    if is_finished(base, sets, dir)? {
        tracing::info!("{}: already finished, skipped", dir.display());
        return Ok(RunOutcome::Finished);
    }
    let mut exe = std::env::current_exe().context("cannot find the darec executable")?;
    if !exe.exists() {
        // rebuilt while the grid runs: Linux reports the old file as "<path> (deleted)"
        let path = exe
            .to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string();
        exe = PathBuf::from(path);
    }
    let mut cmd = Command::new(exe);
    if let Some(t) = child.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    // the child logs with the grid's own filter: at `info`, one line per validation of
    // each run (its progress bar is hidden, stderr being shared)
    cmd.args(["--log", &child.log, "train"]);
    if dir.join("config.toml").exists() {
        // interrupted (its settings were checked above): continue from the last validation,
        // or from the start if it had none (same result as uninterrupted)
        tracing::info!("resuming {}", dir.display());
        cmd.arg("--resume").arg(dir);
    } else {
        tracing::info!("training {}", dir.display());
        cmd.arg("--config").arg(base).arg("--out").arg(dir);
        for s in sets {
            cmd.args(["--set", s]);
        }
    }
    let status = cmd.status().context("cannot start darec train")?;
    if status.code() == Some(BUSY_EXIT) {
        // another process took the run between the look above and the child's start
        tracing::info!(
            "{}: another process took it first, skipped for now",
            dir.display()
        );
        return Ok(RunOutcome::Busy);
    }
    if !status.success() {
        bail!(
            "run {} failed ({status}); see the messages above",
            dir.display()
        );
    }
    Ok(RunOutcome::Finished)
}

/// Whether `dir` holds a finished run (its `metrics.json`), after checking that whatever
/// it holds was made with these settings.
fn is_finished(base: &Path, sets: &[String], dir: &Path) -> anyhow::Result<bool> {
    check_same_settings(base, sets, dir)?;
    Ok(dir.join("metrics.json").exists())
}

/// Refuses to reuse a run directory that was made with other settings (a variant whose
/// `set` changed but kept its name, an edited base config): its results would be reported
/// under the new settings. Compares the fully resolved configs, apart from where the run
/// is written, its thread count, its progress bar and the settings of alignments it does
/// not use.
fn check_same_settings(base: &Path, sets: &[String], dir: &Path) -> anyhow::Result<()> {
    let saved = dir.join("config.toml");
    if !saved.exists() {
        return Ok(());
    }
    let comparable = |mut c: crate::config::Config| {
        c.output = Default::default();
        c.openai = Default::default();
        c.train.threads = 0;
        c.train.progress = None;
        // settings of the alignments a run does not use cannot change it
        use crate::align::AlignKind;
        let kind = c.align.kind;
        if kind != AlignKind::RlmrecCon {
            c.align.rlmrec_con = Default::default();
        }
        if kind != AlignKind::RlmrecGen {
            c.align.rlmrec_gen = Default::default();
        }
        if kind != AlignKind::Darec {
            c.align.darec = Default::default();
        }
        if kind == AlignKind::None {
            c.align.vectors = None;
        }
        crate::config::flatten_toml(&toml::Table::try_from(&c).expect("config serialises"))
    };
    let want = comparable(crate::config::Config::load(Some(base), sets)?);
    let have = comparable(crate::config::Config::load(Some(&saved), &[])?);
    let differ: Vec<String> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| {
            let was = have.get(k).map_or("unset".to_string(), |x| x.to_string());
            format!("{k} = {v} (the run has {was})")
        })
        .chain(
            have.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{k} unset (the run has {})", have[k])),
        )
        .collect();
    if !differ.is_empty() {
        bail!(
            "{} was made with other settings: {}. Delete it or write the grid elsewhere (--out)",
            dir.display(),
            differ.join("; ")
        );
    }
    Ok(())
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
/// (e.g. by another process working through the grid), and lists the missing ones.
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
            missing.push(format!("{name} seed {seed}"));
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
            "\nNot run yet ({}): {}.\n",
            missing.len(),
            missing.join(", ")
        ));
    }
    write_atomic(&out.join("compare.md"), md.as_bytes())?;
    write_json(&out.join("compare.json"), &records)?;
    Ok(md)
}

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

/// The comparison table: mean ± std of the six main metrics per variant, the relative
/// change of each mean against the reference, time per epoch and peak memory, and whether
/// the difference in `metric` is larger than twice its standard error.
pub fn compare_table(
    records: &[RunRecord],
    names: &[String],
    reference: &str,
    metric: &str,
    contrasts: &[[String; 2]],
) -> String {
    let keys = crate::report::MAIN_KEYS;
    let values = |name: &str, key: &str| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.variant == name)
            .filter_map(|r| r.test.get(key))
            .collect()
    };
    let mut s = String::from("| variant | seeds |");
    for k in keys {
        s.push_str(&format!(" {} |", short(k)));
    }
    s.push_str(" s/epoch | peak MiB |\n|---|---|");
    s.push_str(&"---|".repeat(keys.len() + 2));
    s.push('\n');
    for name in names {
        let n = records.iter().filter(|r| &r.variant == name).count();
        s.push_str(&format!("| {name} | {n} |"));
        for k in keys {
            let (m, sd) = mean_std(&values(name, k));
            let (rm, _) = mean_std(&values(reference, k));
            let rel = if name != reference && rm > 0.0 {
                format!(" ({:+.1}%)", 100.0 * (m - rm) / rm)
            } else {
                String::new()
            };
            s.push_str(&format!(" {m:.4} ± {sd:.4}{rel} |"));
        }
        let ep: Vec<f64> = records
            .iter()
            .filter(|r| &r.variant == name)
            .filter_map(|r| r.epoch_seconds)
            .collect();
        let mem: Vec<f64> = records
            .iter()
            .filter(|r| &r.variant == name)
            .filter_map(|r| r.peak_rss_mib)
            .collect();
        s.push_str(&format!(
            " {:.2} | {:.0} |\n",
            mean_std(&ep).0,
            mem.iter().cloned().fold(f64::NAN, f64::max)
        ));
    }
    s.push_str(&format!(
        "\nTest metrics, mean ± sample standard deviation over seeds; (±x%) is the change of the mean against `{reference}`.\n\n"
    ));
    s.push_str(&format!(
        "| comparison | Δ {m} | standard error | beyond 2 SE? | paired seeds | paired Δ {m} ± SE | beyond 2 SE (paired)? |\n|---|---|---|---|---|---|---|\n",
        m = short(metric)
    ));
    let verdict = |n: usize, diff: f64, se: f64| {
        if n < 2 {
            "n/a (needs 2+ seeds)"
        } else if diff.abs() > 2.0 * se {
            "yes"
        } else {
            "no"
        }
    };
    let pairs = names
        .iter()
        .filter(|n| n.as_str() != reference)
        .map(|n| [n.clone(), reference.to_string()])
        .chain(contrasts.iter().cloned());
    for [a, b] in pairs {
        let (xa, xb) = (values(&a, metric), values(&b, metric));
        if xa.is_empty() || xb.is_empty() {
            continue; // a variant with no finished run yet (`--table-only`)
        }
        let ((ma, sa), (mb, sb)) = (mean_std(&xa), mean_std(&xb));
        let (na, nb) = (xa.len(), xb.len());
        let se = (sa * sa / na as f64 + sb * sb / nb as f64).sqrt();
        let diff = ma - mb;
        let d = paired_differences(records, &a, &b, metric);
        let (md, sd) = mean_std(&d);
        let pse = sd / (d.len().max(1) as f64).sqrt();
        let paired = if d.is_empty() {
            "—".to_string()
        } else {
            format!("{md:+.4} ± {pse:.4}")
        };
        s.push_str(&format!(
            "| {a} vs {b} | {diff:+.4} | {se:.4} | {} | {} | {paired} | {} |\n",
            verdict(na.min(nb), diff, se),
            d.len(),
            verdict(d.len(), md, pse),
        ));
    }
    s.push_str(
        "\nPaired: differences between runs with the same seed (same initial embeddings and \
         the same sampled triples), which removes the variation the seeds share.\n",
    );
    s
}

/// `metric(a) - metric(b)` for every seed both variants ran, in seed order.
fn paired_differences(records: &[RunRecord], a: &str, b: &str, metric: &str) -> Vec<f64> {
    let mut d: Vec<(u64, f64)> = records
        .iter()
        .filter(|r| r.variant == a)
        .filter_map(|ra| {
            let rb = records
                .iter()
                .find(|r| r.variant == b && r.seed == ra.seed)?;
            Some((ra.seed, ra.test.get(metric)? - rb.test.get(metric)?))
        })
        .collect();
    d.sort_by_key(|x| x.0);
    d.into_iter().map(|x| x.1).collect()
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
    fn a_run_directory_made_with_other_settings_is_refused() {
        let tmp = std::env::temp_dir().join(format!("darec-stale-{}", std::process::id()));
        let run = tmp.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let base = tmp.join("base.toml");
        std::fs::write(&base, "[data]\nname = \"ml-100k\"\n[train]\nlr = 1e-3\n").unwrap();
        let sets = vec!["train.seed=3".to_string()];
        let saved = crate::config::Config::load(Some(&base), &sets).unwrap();
        std::fs::write(run.join("config.toml"), saved.to_toml()).unwrap();
        // same settings (a different thread count does not matter): accepted
        let mut same = sets.clone();
        same.push("train.threads=1".into());
        check_same_settings(&base, &same, &run).unwrap();
        // a changed setting is named in the error
        let err = check_same_settings(&base, &["train.seed=4".to_string()], &run)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.seed = 4 (the run has 3)"), "{err}");
        // the settings of an alignment the run does not use do not count
        let mut unused = sets.clone();
        unused.push("align.darec.lambda=0.3".into());
        check_same_settings(&base, &unused, &run).unwrap();
        let used = vec![
            "train.seed=3".to_string(),
            "align.kind=\"darec\"".into(),
            "align.vectors=\"v.safetensors\"".into(),
        ];
        let err = check_same_settings(&base, &used, &run)
            .unwrap_err()
            .to_string();
        assert!(err.contains("align.kind = \"darec\""), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

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
        // nothing is trained: training would start `darec train` child processes, and the
        // base config does not exist
        let md = compare(
            &cfg,
            &[],
            &out,
            &ChildArgs::at_current_level(Some(1)),
            &TrainScope::table_only(),
        )
        .unwrap();
        assert!(
            md.contains("| a | 1 |") && md.contains("0.2500 ± 0.0000"),
            "{md}"
        );
        assert!(!md.contains("| b |"), "{md}");
        assert!(md.contains("Not run yet (2): a seed 2, b seed 1."), "{md}");
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
            compare(
                &cfg,
                &[],
                &out,
                &ChildArgs::at_current_level(Some(1)),
                &only_b
            )
            .unwrap_err()
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
            compare(
                &cfg,
                &[],
                &out,
                &ChildArgs::at_current_level(Some(1)),
                &TrainScope::all()
            )
            .unwrap_err()
        );
        assert!(
            err.contains("variant \"typo\"") && err.contains("layerz"),
            "{err}"
        );
        // nothing was started
        assert!(!out.join("plain-s1").exists());
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

    #[test]
    fn compare_table_relative_change_and_significance() {
        let m = |r: f64| Metrics {
            n_users: 1,
            values: crate::report::MAIN_KEYS
                .iter()
                .map(|k| (k.to_string(), r))
                .collect(),
        };
        let rec = |v: &str, seed: u64, r: f64| RunRecord {
            variant: v.into(),
            seed,
            dir: PathBuf::new(),
            valid: m(r),
            test: m(r),
            epoch_seconds: Some(1.0),
            peak_rss_mib: Some(100.0),
            best_epoch: Some(3),
        };
        let records = vec![
            rec("base", 1, 0.10),
            rec("base", 2, 0.12),
            rec("new", 1, 0.20),
            rec("new", 2, 0.22),
        ];
        let t = compare_table(
            &records,
            &["base".into(), "new".into()],
            "base",
            "recall@20",
            &[["base".into(), "new".into()]],
        );
        // new mean 0.21 vs 0.11: +90.9%; paired differences 0.10 and 0.10: no spread
        assert!(t.contains("0.2100 ± 0.0141 (+90.9%)"), "{t}");
        assert!(
            t.contains("| new vs base | +0.1000 | 0.0141 | yes | 2 | +0.1000 ± 0.0000 | yes |"),
            "{t}"
        );
        assert!(
            t.contains("| base vs new | -0.1000 | 0.0141 | yes | 2 |"),
            "{t}"
        );
        // one seed has no spread to compare with
        let single = compare_table(
            &records[..3],
            &["base".into(), "new".into()],
            "base",
            "recall@20",
            &[],
        );
        assert!(single.contains("n/a (needs 2+ seeds)"), "{single}");
        // pairing removes the shared seed effect: unpaired within 2 SE, paired beyond
        let records = vec![
            rec("base", 1, 0.100),
            rec("base", 2, 0.120),
            rec("base", 3, 0.140),
            rec("new", 1, 0.101),
            rec("new", 2, 0.122),
            rec("new", 3, 0.142),
            rec("new", 4, 0.500),
        ];
        let t = compare_table(
            &records,
            &["base".into(), "new".into()],
            "base",
            "recall@20",
            &[],
        );
        // paired differences 0.001, 0.002, 0.002 (seed 4 has no partner): mean 0.00167,
        // sd 0.000577, SE 0.000333
        assert!(t.contains("| no | 3 | +0.0017 ± 0.0003 | yes |"), "{t}");
    }
}
