//! The download cache (`$DAREC_CACHE`, else `.cache` in the working directory) and the
//! `@cache/` prefix that config paths may use for it. Below every other module.

use std::path::PathBuf;

/// Expands a leading `@cache/` to the download cache directory.
pub fn resolve_cache_path(p: &str) -> PathBuf {
    match p.strip_prefix("@cache/") {
        Some(rest) => cache_dir().join(rest),
        None => PathBuf::from(p),
    }
}

/// `$DAREC_CACHE` or `./.cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("DAREC_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache"))
}
