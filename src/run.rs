//! Run directories and safe file writes.
//!
//! A run directory holds `config.toml` (the fully resolved config), `metrics.jsonl` (one
//! JSON object per evaluation), `metrics.json` and `metrics.md` (final results),
//! `model.safetensors` and `users.json`/`items.json` (internal -> external ids). Every
//! file except the append-only log is written to a temporary name and renamed into place,
//! so an interrupted run never leaves a half-written model or result. A process that
//! writes a run directory holds its lock (`run_lock.rs`) for as long as it writes.

use crate::run_lock::{RunLock, LOCK_FILE};
use anyhow::Context;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    let name = path
        .file_name()
        .context("write_atomic: path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f =
            File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        f.sync_all().ok();
    }
    crate::fault::point(&format!("{name} written"));
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot move into place", path.display()))?;
    crate::fault::point(&format!("{name} in place"));
    Ok(())
}

/// Serialises `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// An open run directory with its append-only metrics log.
pub struct RunDir {
    pub path: PathBuf,
    log: Option<File>,
    resume: bool,
    /// Held while this process writes the directory (`None` for a read-only one).
    _lock: Option<RunLock>,
}

impl RunDir {
    /// Creates the directory of a new run. A directory that already holds a run is
    /// refused (its results would be mixed with the new run's), unless `overwrite`, which
    /// deletes it first, so a directory never holds files of two runs. A directory that
    /// holds anything else is refused even then.
    pub fn create(path: &Path, overwrite: bool) -> anyhow::Result<Self> {
        // a directory that is not a run is refused before a lock file is put into it
        if let Occupancy::Other(name) = occupancy(path)? {
            anyhow::bail!(
                "{} is not empty and is not a run directory (it holds `{name}`): choose another \
                 --out",
                path.display()
            );
        }
        let lock = RunLock::acquire(path)?;
        match occupancy(path)? {
            Occupancy::Free => {}
            Occupancy::Run if overwrite => clear_keeping_lock(path)?,
            Occupancy::Run => anyhow::bail!(
                "{} already holds a run: continue it with `darec train --resume {}`, delete it \
                 and train anew with --overwrite, or choose another --out",
                path.display(),
                path.display()
            ),
            Occupancy::Other(name) => anyhow::bail!(
                "{} is not empty and is not a run directory (it holds `{name}`): choose another \
                 --out",
                path.display()
            ),
        }
        std::fs::create_dir_all(path)
            .with_context(|| format!("{}: cannot create run directory", path.display()))?;
        remove_stale_temporaries(path);
        let log_path = path.join("metrics.jsonl");
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .with_context(|| format!("{}: cannot open", log_path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            log: Some(log),
            resume: false,
            _lock: Some(lock),
        })
    }

    /// A run directory that only reads (for `darec eval`).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.join("config.toml").exists() {
            anyhow::bail!("{}: not a run directory (no config.toml)", path.display());
        }
        Ok(Self {
            path: path.to_path_buf(),
            log: None,
            resume: false,
            _lock: None,
        })
    }

    /// Reopens an interrupted run: the metrics log is appended to and training continues
    /// from `checkpoint.json` when there is one.
    ///
    /// Temporaries left by a killed process are removed, and the log keeps only the
    /// validations up to the checkpoint the run continues from (a line written after it,
    /// the test line of a finished run, a line cut off mid-write): the resumed run writes
    /// those again, so each validation appears once.
    pub fn resume(path: &Path) -> anyhow::Result<Self> {
        if !path.join("config.toml").exists() {
            anyhow::bail!("{}: not a run directory (no config.toml)", path.display());
        }
        let lock = RunLock::acquire(path)?;
        remove_stale_temporaries(path);
        let log_path = path.join("metrics.jsonl");
        trim_log(&log_path, checkpoint_epoch(path))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("{}: cannot open", log_path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            log: Some(log),
            resume: true,
            _lock: Some(lock),
        })
    }

    /// Whether this run continues an interrupted one.
    pub fn resuming(&self) -> bool {
        self.resume
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Appends one JSON line to `metrics.jsonl` and flushes it.
    pub fn log<T: Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        if let Some(f) = self.log.as_mut() {
            writeln!(f, "{}", serde_json::to_string(value)?)?;
            f.flush()?;
            crate::fault::point("log line");
        }
        Ok(())
    }
}

/// What a directory holds, for [`RunDir::create`].
enum Occupancy {
    /// Absent, empty, or only what a process killed before its first write leaves (an
    /// empty metrics log, temporaries).
    Free,
    /// A run (it has a `config.toml`).
    Run,
    /// Something else; the first such entry.
    Other(String),
}

fn occupancy(path: &Path) -> anyhow::Result<Occupancy> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Occupancy::Free),
        Err(e) => {
            return Err(e).with_context(|| format!("{}: cannot read directory", path.display()))
        }
    };
    if path.join("config.toml").exists() {
        return Ok(Occupancy::Run);
    }
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let empty_log = name == "metrics.jsonl" && entry.metadata().is_ok_and(|m| m.len() == 0);
        if !(empty_log || is_temporary(&name) || name == LOCK_FILE) {
            return Ok(Occupancy::Other(name));
        }
    }
    Ok(Occupancy::Free)
}

/// Deletes everything in `dir` but its lock file (`--overwrite`: the lock stays held).
fn clear_keeping_lock(dir: &Path) -> anyhow::Result<()> {
    let cannot = || format!("{}: cannot clear for --overwrite", dir.display());
    for entry in std::fs::read_dir(dir).with_context(cannot)? {
        let entry = entry.with_context(cannot)?;
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        let path = entry.path();
        if entry.file_type().with_context(cannot)?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("{}: cannot remove for --overwrite", path.display()))?;
    }
    Ok(())
}

/// `.<name>.tmp<pid>` of [`write_atomic`], `.<name>.tmp` of checkpoint tensors.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

/// Removes the temporaries that a process killed mid-write leaves in `dir`.
fn remove_stale_temporaries(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if is_temporary(&e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The epoch of the run's checkpoint, if it has a readable one.
fn checkpoint_epoch(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("checkpoint.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("epoch")?.as_u64().map(|e| e as usize)
}

/// Keeps the validation lines of `log` up to epoch `upto` (none without a checkpoint),
/// rewriting it atomically when anything is dropped.
fn trim_log(log: &Path, upto: Option<usize>) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Ok(());
    };
    let keep = |line: &str| -> bool {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return false;
        };
        let epoch = v.get("epoch").and_then(|e| e.as_u64());
        v.get("split").and_then(|s| s.as_str()) == Some("valid")
            && matches!((epoch, upto), (Some(e), Some(u)) if e as usize <= u)
    };
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && keep(l.trim_end()))
        .collect();
    if kept.len() != text.len() {
        write_atomic(log, kept.as_bytes())?;
    }
    Ok(())
}

/// Memory the system can still give out, in bytes (Linux `MemAvailable`; None elsewhere).
pub fn available_memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak resident memory of this process in MiB (Linux; None elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("darec-run-test-{}", std::process::id()));
        let p = dir.join("x.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
