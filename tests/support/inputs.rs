//! Inputs that tests read from outside the repository: `../shared` (RLMRec's splits,
//! beside the checkout) and the download cache (`scripts/fetch_data.sh`). A missing input
//! fails the test with what to do, so a test never passes without having run. Setting
//! `DAREC_ALLOW_MISSING_INPUTS=1` turns that into a skip that says so on stdout
//! (`SKIPPED <test>: ...`), for a checkout without them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `path` when it exists; otherwise fails (or, when allowed, skips) naming `how` to get it.
pub fn require(path: &Path, how: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    missing(&format!("{} is missing ({how})", path.display()))
}

/// Fails the test with `why`, or returns `None` with a SKIPPED line when skipping is allowed.
pub fn missing<T>(why: &str) -> Option<T> {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if std::env::var("DAREC_ALLOW_MISSING_INPUTS").is_ok_and(|v| v == "1") {
        println!("SKIPPED {test}: {why}");
        None
    } else {
        panic!(
            "{test}: {why}. The tests need ../shared beside the checkout and the fetched data \
             (bash scripts/fetch_data.sh); set DAREC_ALLOW_MISSING_INPUTS=1 to skip such tests"
        );
    }
}

/// `../shared/data/rlmrec/<rest>`.
pub fn shared_rlmrec(rest: &str) -> Option<PathBuf> {
    require(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/rlmrec")
            .join(rest),
        "the project's ../shared folder must sit beside the checkout",
    )
}

/// The download cache: `$DAREC_CACHE` or `.cache` in the repository.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("DAREC_CACHE") {
        Some(c) => PathBuf::from(c),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"),
    }
}

/// `<cache>/<rest>`, fetched by `scripts/fetch_data.sh`.
pub fn cached(rest: &str) -> Option<PathBuf> {
    require(&cache_dir().join(rest), "run bash scripts/fetch_data.sh")
}
