//! Run directories and safe file writes.
//!
//! A run directory holds `config.toml` (the fully resolved config), `metrics.jsonl` (one
//! JSON object per evaluation), `metrics.json` and `metrics.md` (final results),
//! `model.safetensors` and `users.json`/`items.json` (internal -> external ids). Every
//! file except the append-only log is written to a temporary name and renamed into place,
//! so an interrupted run never leaves a half-written model or result.

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
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot move into place", path.display()))?;
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
}

impl RunDir {
    /// Creates (or reuses) the directory and truncates its metrics log.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("{}: cannot create run directory", path.display()))?;
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
        })
    }

    /// Reopens an interrupted run: the metrics log is appended to and training continues
    /// from `checkpoint.json` when there is one.
    pub fn resume(path: &Path) -> anyhow::Result<Self> {
        if !path.join("config.toml").exists() {
            anyhow::bail!("{}: not a run directory (no config.toml)", path.display());
        }
        let log_path = path.join("metrics.jsonl");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("{}: cannot open", log_path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            log: Some(log),
            resume: true,
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
        }
        Ok(())
    }
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
