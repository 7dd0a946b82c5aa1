//! Running a grid: each run a child `darec train` process in its own directory, finished
//! runs skipped, interrupted ones resumed, runs that another process holds waited for.

use crate::run_lock::{RunLock, BUSY_EXIT};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

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

impl Default for ChildArgs {
    /// All cores, `info`.
    fn default() -> Self {
        Self {
            threads: None,
            log: "info".into(),
        }
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

/// Where an unfinished run stands, for a table's list of what is missing: whether a
/// process is training it now, and its last validation epoch with the best validation
/// `metric` so far (from `metrics.jsonl`; a torn last line is skipped).
pub(super) fn unfinished_state(dir: &Path, metric: &str) -> anyhow::Result<String> {
    let busy = RunLock::is_busy(dir)?;
    let (mut last, mut best) = (None, None::<(u64, f64)>);
    if let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) {
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(epoch) = v["epoch"].as_u64().filter(|_| v["split"] == "valid") else {
                continue;
            };
            last = Some(epoch);
            if let Some(x) = v[metric].as_f64() {
                if best.is_none_or(|(_, b)| x > b) {
                    best = Some((epoch, x));
                }
            }
        }
    }
    let now = if busy { "training now" } else { "stopped" };
    Ok(match (last, best) {
        (Some(e), Some((be, b))) => {
            format!("{now} at epoch {e}, best validation {metric} {b:.4} at epoch {be}")
        }
        (Some(e), None) => format!("{now} at epoch {e}"),
        (None, _) if busy => "training now, no validation yet".into(),
        (None, _) if dir.join("config.toml").exists() => {
            "stopped before its first validation".into()
        }
        (None, _) => "not started".into(),
    })
}

/// Whether `dir` holds a finished run (its `metrics.json`), after checking that whatever
/// it holds was made with these settings.
pub(super) fn is_finished(base: &Path, sets: &[String], dir: &Path) -> anyhow::Result<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
