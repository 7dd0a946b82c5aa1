//! One writer per run directory. A process that trains into a directory holds an
//! exclusive lock on `<dir>/.lock` (an OS file lock, released when the process ends, even
//! when it is killed), so a second `darec train` into the same directory is refused
//! instead of mixing two runs' files, and several `darec compare` or `darec tune`
//! processes on one grid share its runs out: each skips the runs that another is training
//! and waits for them at the end (`experiment/grid.rs`).

use anyhow::Context;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// Exit status of `darec train` when its run directory is locked by another process
/// (`EX_TEMPFAIL`: try again later). A grid's parent process reads it as "busy, come back
/// to this run later", not as a failure.
pub const BUSY_EXIT: i32 = 75;

/// The run directory is being written by another process.
#[derive(Debug, thiserror::Error)]
#[error(
    "{dir} is in use by another darec process{by}: wait for it to finish, or train into \
     another --out",
    dir = .dir.display(),
    by = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
)]
pub struct RunBusy {
    pub dir: PathBuf,
    /// The holder's process id, as it wrote it into the lock file.
    pub pid: Option<u32>,
}

/// A held lock on a run directory; released on drop (and by the OS when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Name of the lock file of a run's added items (`added-items.jsonl`): held by a serving
/// process for its lifetime, and by `darec add-item` while it adds.
pub const ITEMS_LOCK_FILE: &str = ".items.lock";

/// Another process is adding items to the run.
#[derive(Debug, thiserror::Error)]
#[error(
    "{dir}: another darec process{by} is adding items to this run (a running `darec serve`?): \
     add the item through its POST /items, or stop it first",
    dir = .dir.display(),
    by = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
)]
pub struct ItemsBusy {
    pub dir: PathBuf,
    pub pid: Option<u32>,
}

impl RunLock {
    /// Takes the lock of a run's added items (see [`ITEMS_LOCK_FILE`]), or returns
    /// [`ItemsBusy`] (as the error) when another process holds it. Never blocks.
    pub fn acquire_items(dir: &Path) -> anyhow::Result<Self> {
        Self::take(dir, ITEMS_LOCK_FILE).map_err(|e| match e {
            Taken::Busy(pid) => ItemsBusy {
                dir: dir.to_path_buf(),
                pid,
            }
            .into(),
            Taken::Failed(e) => e,
        })
    }

    /// Creates `dir` if needed and takes its lock, or returns [`RunBusy`] (as the error)
    /// when another process holds it. Never blocks.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        Self::take(dir, LOCK_FILE).map_err(|e| match e {
            Taken::Busy(pid) => RunBusy {
                dir: dir.to_path_buf(),
                pid,
            }
            .into(),
            Taken::Failed(e) => e,
        })
    }

    fn take(dir: &Path, name: &str) -> Result<Self, Taken> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create run directory", dir.display()))
            .map_err(Taken::Failed)?;
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))
            .map_err(Taken::Failed)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Taken::Busy(holder(&mut file))),
            Err(TryLockError::Error(e)) => {
                return Err(Taken::Failed(
                    anyhow::Error::from(e).context(format!("{}: cannot lock", path.display())),
                ))
            }
        }
        // the holder's pid, for the message another process prints
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("{}: cannot write", path.display()))
            .map_err(Taken::Failed)?;
        Ok(Self { _file: file })
    }

    /// Whether another process holds `dir`'s lock right now (a probe: the lock is taken
    /// and released at once when it is free; a directory without a lock file is free).
    pub fn is_busy(dir: &Path) -> anyhow::Result<bool> {
        let path = dir.join(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot open", path.display())),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("{}: cannot lock", path.display()))
            }
        }
    }
}

/// Why a lock was not taken: held by another process (its pid), or an error.
enum Taken {
    Busy(Option<u32>),
    Failed(anyhow::Error),
}

fn holder(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Whether `err` (anywhere in its chain) says that a run directory is busy.
pub fn is_busy_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<RunBusy>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("darec-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A second lock on a held directory is refused with the holder's pid, the probe sees
    /// it busy, and both are free again once the first is dropped.
    #[test]
    fn second_writer_is_refused_until_the_first_ends() {
        let dir = tmp("second");
        assert!(!RunLock::is_busy(&dir).unwrap(), "no directory yet: free");
        let first = RunLock::acquire(&dir).unwrap();
        assert!(RunLock::is_busy(&dir).unwrap());
        let err = RunLock::acquire(&dir).unwrap_err();
        assert!(is_busy_error(&err), "{err:#}");
        let busy = err.downcast_ref::<RunBusy>().unwrap();
        assert_eq!(busy.pid, Some(std::process::id()));
        assert!(format!("{err}").contains("in use by another darec process"));
        drop(first);
        assert!(!RunLock::is_busy(&dir).unwrap());
        let again = RunLock::acquire(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The items lock is separate from the training lock, and names what to do instead.
    #[test]
    fn items_lock_is_its_own() {
        let dir = tmp("items");
        let run = RunLock::acquire(&dir).unwrap();
        let items = RunLock::acquire_items(&dir).unwrap();
        let err = RunLock::acquire_items(&dir).unwrap_err();
        assert!(err.downcast_ref::<ItemsBusy>().is_some());
        assert!(format!("{err}").contains("POST /items"), "{err}");
        assert!(!is_busy_error(&err), "not a busy training run");
        drop((run, items));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_errors_are_not_busy() {
        let err = anyhow::anyhow!("something else");
        assert!(!is_busy_error(&err));
    }
}
