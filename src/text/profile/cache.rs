//! The profile cache: a JSONL file, one [`Profile`] per line. Writers append and flush
//! after every profile, so an interrupted run keeps everything already written; reading
//! ignores a truncated last line (with a warning) and rejects any other bad line, naming
//! it. A finished run rewrites the file compacted (one line per profile, dataset order)
//! through a temporary file and a rename.

use super::{Profile, ProfileKind};
use crate::data::DataError;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a cache file holds.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Profiles in file order; a later line for the same (kind, id) replaces an earlier one.
    pub profiles: Vec<Profile>,
    /// Byte length of the valid part (a truncated last line excluded).
    pub valid_len: u64,
    /// Whether the valid part ends without a newline (a complete last line without `\n`).
    pub needs_newline: bool,
    /// Whether a truncated last line was dropped.
    pub dropped_truncated: bool,
}

impl Loaded {
    /// Last profile per (kind, id).
    pub fn by_key(&self) -> HashMap<(ProfileKind, String), Profile> {
        self.profiles
            .iter()
            .map(|p| ((p.kind, p.id.clone()), p.clone()))
            .collect()
    }
}

/// Reads a cache file; a missing file is an empty cache.
pub fn load(path: &Path) -> Result<Loaded, DataError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let mut out = Loaded::default();
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < bytes.len() {
        line_no += 1;
        let (end, next, complete) = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(k) => (start + k, start + k + 1, true),
            None => (bytes.len(), bytes.len(), false),
        };
        let raw = &bytes[start..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|_| {
            DataError::line(path, line_no, "not valid UTF-8 (is this a profile cache?)")
        });
        let parsed = text.and_then(|t| {
            if t.trim().is_empty() {
                return Ok(None);
            }
            serde_json::from_str::<Profile>(t)
                .map(Some)
                .map_err(|e| DataError::line(path, line_no, format!("not a profile record: {e}")))
        });
        match parsed {
            Ok(Some(p)) => out.profiles.push(p),
            Ok(None) => {}
            Err(e) if !complete => {
                tracing::warn!("{e}; ignoring the truncated last line (interrupted write?)");
                out.dropped_truncated = true;
                break;
            }
            Err(e) => return Err(e),
        }
        out.valid_len = next as u64;
        out.needs_newline = !complete;
        start = next;
    }
    Ok(out)
}

/// Reads the profiles of a cache file: one per (kind, id) (the last line wins), in the
/// order of their first appearance. A truncated last line is ignored with a warning.
pub fn read_profiles(path: &Path) -> Result<Vec<Profile>, DataError> {
    if !path.exists() {
        return Err(DataError::file(
            path,
            "no profile cache here: run `darec profile <dataset>` first",
        ));
    }
    let loaded = load(path)?;
    let mut index: HashMap<(ProfileKind, String), usize> = HashMap::new();
    let mut out: Vec<Profile> = Vec::new();
    for p in loaded.profiles {
        match index.get(&(p.kind, p.id.clone())) {
            Some(&k) => out[k] = p,
            None => {
                index.insert((p.kind, p.id.clone()), out.len());
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Appends profiles to a cache file, one flushed line each.
pub struct Appender {
    file: File,
    path: PathBuf,
}

impl Appender {
    /// Opens `path` for appending after cutting it to the valid part of `loaded`
    /// (dropping a truncated last line), creating it and its directory if needed.
    pub fn open(path: &Path, loaded: &Loaded) -> Result<Self, DataError> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        if len > loaded.valid_len {
            file.set_len(loaded.valid_len)
                .map_err(|e| DataError::io(path, e))?;
        }
        if loaded.needs_newline {
            file.write_all(b"\n").map_err(|e| DataError::io(path, e))?;
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes one profile as a line and flushes it to the operating system.
    pub fn append(&mut self, p: &Profile) -> Result<(), DataError> {
        let mut line = serde_json::to_string(p)
            .map_err(|e| DataError::file(&self.path, format!("cannot serialise profile: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| DataError::io(&self.path, e))
    }
}

/// Rewrites `path` with exactly `profiles`, atomically.
pub fn write_compacted(path: &Path, profiles: &[Profile]) -> anyhow::Result<()> {
    let mut buf = String::new();
    for p in profiles {
        buf.push_str(&serde_json::to_string(p)?);
        buf.push('\n');
    }
    crate::run::write_atomic(path, buf.as_bytes())
}
