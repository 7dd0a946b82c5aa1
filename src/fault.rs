//! Kill points for fault-injection tests: places where an interrupted process could leave
//! a run directory in an in-between state (inside an atomic write, between a checkpoint's
//! tensor file and its JSON, after a log line). Off unless the environment asks:
//!
//! - `DAREC_FAULT_TRACE=<file>`: append the name of every point reached, one per line
//!   (a test counts the points of an uninterrupted run this way);
//! - `DAREC_FAULT_KILL_AT=<n>`: the process sends itself SIGKILL at the n-th point reached
//!   (1-based), as a crash or `kill -9` would, with no chance to clean up.
//!
//! With neither set a point costs one load of a cached flag.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Settings {
    kill_at: Option<u64>,
    trace: Option<std::path::PathBuf>,
}

fn settings() -> &'static Option<Settings> {
    static S: OnceLock<Option<Settings>> = OnceLock::new();
    S.get_or_init(|| {
        let kill_at = std::env::var("DAREC_FAULT_KILL_AT")
            .ok()
            .and_then(|v| v.parse().ok());
        let trace = std::env::var_os("DAREC_FAULT_TRACE").map(Into::into);
        (kill_at.is_some() || trace.is_some()).then_some(Settings { kill_at, trace })
    })
}

/// Marks a kill point named `name` (see the module documentation).
pub fn point(name: &str) {
    let Some(s) = settings() else {
        return;
    };
    static REACHED: AtomicU64 = AtomicU64::new(0);
    let n = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(path) = &s.trace {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{n} {name}");
        }
    }
    if s.kill_at == Some(n) {
        // SAFETY: sends a signal to this process; no memory is touched.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // SIGKILL cannot be caught; should it not arrive at once, never go on
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
