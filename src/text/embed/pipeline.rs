//! [`embed_profiles`]: profiles -> [`SemanticVectors`] (SPEC section 1: `e_L` of every
//! user and item), in chunks, resumable.
//!
//! Every user and item of the dataset needs a profile. Texts are embedded in chunks of
//! `chunk_size` (longest first, so a chunk holds texts of similar length); after each chunk
//! its vectors are appended to a partial cache ([`PartialCache`], normally `<out>.partial`)
//! keyed by (kind, external id, sha256 of the text). A rerun after an interruption reuses
//! every cached vector whose text is unchanged and embeds only the rest. The cache is
//! removed once the vectors are complete.
//!
//! Partial cache format: the line `DARECPARTIAL1`, a JSON line `{"model", "dim"}`, then
//! records of one JSON line `{"kind", "id", "sha"}` followed by `dim` little-endian f32.
//! Each chunk is appended with one write and flushed to disk; a torn record at the end
//! (crash mid-write) is dropped and overwritten on the next run.

use super::vectors::SemanticVectors;
use crate::data::{DataError, Dataset};
use crate::text::profile::{Profile, ProfileKind};
use crate::text::TextEmbedder;
use anyhow::Context;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Settings of [`embed_profiles`].
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedOptions {
    /// Texts per call to the embedder and per partial-cache write.
    pub chunk_size: usize,
    /// Where the vectors are saved ([`SemanticVectors::save`]) when complete. Setting it
    /// also makes the run resumable through `<output>.partial` ([`partial_path`]), which
    /// is removed once the vectors are saved. `None`: nothing is written.
    pub output: Option<PathBuf>,
    /// Show a progress bar; `None` = when stderr is a terminal.
    pub progress: Option<bool>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            chunk_size: 128,
            output: None,
            progress: None,
        }
    }
}

impl EmbedOptions {
    /// Options that save to `out` and resume through `<out>.partial`.
    pub fn for_output(out: &Path) -> Self {
        Self {
            output: Some(out.to_path_buf()),
            ..Self::default()
        }
    }
}

/// `<out>.partial`: where the vectors for `out` are kept while they are being computed.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// sha256 hex of a text.
pub fn text_sha(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Key of a cached vector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    pub kind: ProfileKind,
    pub id: String,
    /// sha256 hex of the embedded text.
    pub sha: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    model: String,
    dim: usize,
}

const MAGIC: &[u8] = b"DARECPARTIAL1\n";

/// An append-only file of vectors computed so far; see the module documentation.
pub struct PartialCache {
    path: PathBuf,
    file: Option<File>,
    model: String,
    dim: Option<usize>,
}

/// Reads the valid part of a partial cache: header, entries, and the byte length up to the
/// last complete record. `None` when the file is not a partial cache.
type Parsed = (Header, Vec<(CacheKey, Vec<f32>)>, usize);

fn parse_partial(bytes: &[u8]) -> Option<Parsed> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let header: Header = serde_json::from_slice(&rest[..nl]).ok()?;
    let mut pos = MAGIC.len() + nl + 1;
    let mut entries = Vec::new();
    let rec_bytes = header.dim * 4;
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let Ok(key) = serde_json::from_slice::<CacheKey>(&bytes[pos..pos + nl]) else {
            break;
        };
        let start = pos + nl + 1;
        if bytes.len() < start + rec_bytes {
            break;
        }
        let v: Vec<f32> = bytes[start..start + rec_bytes]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        entries.push((key, v));
        pos = start + rec_bytes;
    }
    Some((header, entries, pos))
}

impl PartialCache {
    /// Opens the cache at `path` for vectors of `model`: returns the cached vectors it holds
    /// for that model. A cache of another model, or an unreadable one, is discarded (with a
    /// warning) and started afresh; a torn last record is cut off.
    pub fn open(path: &Path, model: &str) -> anyhow::Result<(Self, HashMap<CacheKey, Vec<f32>>)> {
        let mut cache = Self {
            path: path.to_path_buf(),
            file: None,
            model: model.to_string(),
            dim: None,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((cache, HashMap::new()))
            }
            Err(e) => return Err(DataError::io(path, e).into()),
        };
        match parse_partial(&bytes) {
            Some((h, entries, valid)) if h.model == model => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| DataError::io(path, e))?;
                file.set_len(valid as u64)
                    .map_err(|e| DataError::io(path, e))?;
                let mut file = file;
                use std::io::Seek;
                file.seek(std::io::SeekFrom::End(0))
                    .map_err(|e| DataError::io(path, e))?;
                cache.file = Some(file);
                cache.dim = Some(h.dim);
                Ok((cache, entries.into_iter().collect()))
            }
            Some((h, _, _)) => {
                tracing::warn!(
                    "{}: partial vectors of model `{}` discarded (now embedding with `{model}`)",
                    path.display(),
                    h.model
                );
                Ok((cache, HashMap::new()))
            }
            None => {
                tracing::warn!(
                    "{}: not a partial-vector cache; starting afresh",
                    path.display()
                );
                Ok((cache, HashMap::new()))
            }
        }
    }

    /// Dimension of the cached vectors, once known.
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// Appends vectors (all of the same dimension) with one write, then syncs the file.
    pub fn append(&mut self, entries: &[(CacheKey, &[f32])]) -> anyhow::Result<()> {
        let Some((_, first)) = entries.first() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        if self.file.is_none() {
            let dim = first.len();
            buf.extend_from_slice(MAGIC);
            serde_json::to_writer(
                &mut buf,
                &Header {
                    model: self.model.clone(),
                    dim,
                },
            )?;
            buf.push(b'\n');
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
            }
            let f = File::create(&self.path).map_err(|e| DataError::io(&self.path, e))?;
            self.file = Some(f);
            self.dim = Some(dim);
        }
        let dim = self.dim.unwrap_or(first.len());
        for (k, v) in entries {
            anyhow::ensure!(
                v.len() == dim,
                "vector for {:?} `{}` has {} values, expected {dim}",
                k.kind,
                k.id,
                v.len()
            );
            serde_json::to_writer(&mut buf, k)?;
            buf.push(b'\n');
            for x in v.iter() {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(&buf)
            .and_then(|_| f.sync_data())
            .map_err(|e| DataError::io(&self.path, e))?;
        Ok(())
    }

    /// Deletes the cache file.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.file = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DataError::io(&self.path, e).into()),
        }
    }
}

fn kind_name(k: ProfileKind) -> &'static str {
    match k {
        ProfileKind::Item => "item",
        ProfileKind::User => "user",
    }
}

/// One text to embed: where its vector goes.
struct Job<'a> {
    kind: ProfileKind,
    row: usize,
    key: CacheKey,
    text: &'a str,
}

/// The bar counts characters, not texts: texts run longest first, so a count of texts
/// moves slowly at the start and its rate-based ETA swung by 2x (17 to 8 minutes on
/// ML-1M); characters are what a chunk's time grows with. The message counts texts.
fn progress_bar(opts: &EmbedOptions, total_chars: u64) -> ProgressBar {
    crate::progress::bar(
        opts.progress,
        total_chars,
        "embed {elapsed_precise} [{bar:30}] {percent}% of the text, {msg} eta {eta}",
    )
}

/// Embeds the profile of every user and item of `ds` with `embedder` (see the module
/// documentation), saving the vectors to `opts.output` when set. Fails naming the first
/// users/items without a profile.
pub fn embed_profiles(
    ds: &Dataset,
    profiles: &[Profile],
    embedder: &dyn TextEmbedder,
    opts: &EmbedOptions,
) -> anyhow::Result<SemanticVectors> {
    let by_key: HashMap<(ProfileKind, &str), &Profile> = profiles
        .iter()
        .map(|p| ((p.kind, p.id.as_str()), p))
        .collect();
    let mut jobs = Vec::with_capacity(ds.n_users() + ds.n_items());
    let mut missing: Vec<(ProfileKind, Vec<&str>)> = Vec::new();
    let mut sources = BTreeSet::new();
    for (kind, ids) in [
        (ProfileKind::Item, &ds.item_ids),
        (ProfileKind::User, &ds.user_ids),
    ] {
        let mut miss = Vec::new();
        for (row, ext) in ids.external.iter().enumerate() {
            match by_key.get(&(kind, ext.as_str())) {
                Some(p) => {
                    sources.insert(p.source.clone());
                    jobs.push(Job {
                        kind,
                        row,
                        key: CacheKey {
                            kind,
                            id: ext.clone(),
                            sha: text_sha(&p.text),
                        },
                        text: &p.text,
                    });
                }
                None => miss.push(ext.as_str()),
            }
        }
        if !miss.is_empty() {
            missing.push((kind, miss));
        }
    }
    if !missing.is_empty() {
        let parts: Vec<String> = missing
            .iter()
            .map(|(k, m)| {
                let first: Vec<&str> = m.iter().take(5).copied().collect();
                format!(
                    "{} {}s (first: {})",
                    m.len(),
                    kind_name(*k),
                    first.join(", ")
                )
            })
            .collect();
        anyhow::bail!(
            "dataset `{}`: no profile for {}: write the missing profiles first (`darec profile`)",
            ds.name,
            parts.join(" and ")
        );
    }

    let model = embedder.name();
    let (mut cache, cached) = match &opts.output {
        Some(out) => {
            let (c, e) = PartialCache::open(&partial_path(out), &model)?;
            (Some(c), e)
        }
        None => (None, HashMap::new()),
    };
    let mut dim = cache.as_ref().and_then(|c| c.dim());
    let mut users: Vec<Option<Vec<f32>>> = vec![None; ds.n_users()];
    let mut items: Vec<Option<Vec<f32>>> = vec![None; ds.n_items()];
    let mut todo = Vec::new();
    for job in &jobs {
        match cached.get(&job.key) {
            Some(v) => {
                let slot = match job.kind {
                    ProfileKind::Item => &mut items[job.row],
                    ProfileKind::User => &mut users[job.row],
                };
                *slot = Some(v.clone());
            }
            None => todo.push(job),
        }
    }
    drop(cached);
    if !todo.is_empty() && jobs.len() > todo.len() {
        tracing::info!(
            "resuming: {} of {} vectors cached",
            jobs.len() - todo.len(),
            jobs.len()
        );
    }
    // longest first: each chunk holds texts of similar length
    todo.sort_by_key(|j| std::cmp::Reverse(j.text.len()));

    let chars = |js: &[&Job]| js.iter().map(|j| j.text.len() as u64).sum::<u64>();
    let todo_chars = chars(&todo);
    let all_chars = jobs.iter().map(|j| j.text.len() as u64).sum::<u64>();
    let bar = progress_bar(opts, all_chars.max(1));
    bar.set_position(all_chars - todo_chars);
    bar.reset_eta();
    let mut texts_done = jobs.len() - todo.len();
    bar.set_message(format!("{texts_done}/{} texts", jobs.len()));
    for chunk in todo.chunks(opts.chunk_size.max(1)) {
        let texts: Vec<String> = chunk.iter().map(|j| j.text.to_string()).collect();
        let vecs = embedder
            .embed(&texts)
            .with_context(|| format!("embedding with `{model}`"))?;
        anyhow::ensure!(
            vecs.len() == chunk.len(),
            "embedder `{model}` returned {} vectors for {} texts",
            vecs.len(),
            chunk.len()
        );
        for (j, v) in chunk.iter().zip(&vecs) {
            let d = *dim.get_or_insert(v.len());
            if v.len() != d || d == 0 {
                anyhow::bail!(
                    "embedder `{model}` returned a {}-dimensional vector for {} `{}`, expected {d}",
                    v.len(),
                    kind_name(j.kind),
                    j.key.id
                );
            }
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                anyhow::bail!(
                    "embedder `{model}` returned {x} in the vector of {} `{}`",
                    kind_name(j.kind),
                    j.key.id
                );
            }
        }
        if let Some(c) = cache.as_mut() {
            let entries: Vec<(CacheKey, &[f32])> = chunk
                .iter()
                .zip(&vecs)
                .map(|(j, v)| (j.key.clone(), v.as_slice()))
                .collect();
            c.append(&entries)?;
        }
        for (j, v) in chunk.iter().zip(vecs) {
            match j.kind {
                ProfileKind::Item => items[j.row] = Some(v),
                ProfileKind::User => users[j.row] = Some(v),
            }
        }
        bar.inc(chars(chunk));
        texts_done += chunk.len();
        bar.set_message(format!("{texts_done}/{} texts", jobs.len()));
    }
    bar.finish_and_clear();

    let dim = match dim {
        Some(d) => d,
        None => embedder.dim(),
    };
    let flatten = |rows: Vec<Option<Vec<f32>>>| -> anyhow::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(rows.len() * dim);
        for r in rows {
            let r = r.context("internal error: a vector was not computed")?;
            anyhow::ensure!(
                r.len() == dim,
                "cached vector has {} values, expected {dim}",
                r.len()
            );
            out.extend_from_slice(&r);
        }
        Ok(out)
    };
    let v = SemanticVectors {
        users: flatten(users)?,
        items: flatten(items)?,
        n_users: ds.n_users(),
        n_items: ds.n_items(),
        dim,
        model,
        source: sources.into_iter().collect::<Vec<_>>().join("+"),
    };
    if let Some(out) = &opts.output {
        v.save(out)?;
    }
    if let Some(c) = cache {
        c.remove()?;
    }
    Ok(v)
}
