//! RLMRec's own splits (SPEC.md section 3): a directory with `trn`, `val` and `tst`, either
//! as the original pickles (`{trn,val,tst}_mat.pkl`, pickled scipy COO matrices) or as TSV
//! exports (`{trn,val,tst}.tsv`: one `#` header line carrying `shape=UxI` and optionally
//! `nnz=N`, then 0-based `user<TAB>item` lines).
//!
//! Ids are identity maps over the full matrix shape (`"0".."U-1"`, `"0".."I-1"`), not over
//! the largest id seen, so ids keep their meaning even when the last ones have no
//! interaction. Rows come in the order train, validation, test and [`RawInteractions::given_split`]
//! records which split each came from. Errors: a missing file, a header without shape, ids
//! outside the shape, shapes that differ between the three files, an empty split, a
//! truncated file (fewer lines than the header's `nnz`, or a cut-off last line).
//! Explicitly stored zeros of a COO matrix are not interactions and are skipped.

use super::delimited::{numbered_lines, read_text};
use super::error::{DataError, Result};
use super::{IdMap, RawInteractions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which of the two equivalent encodings to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RlmrecFormat {
    /// `{trn,val,tst}_mat.pkl`
    Pickle,
    /// `{trn,val,tst}.tsv`
    Tsv,
    /// The pickles when all three exist, else the TSVs.
    #[default]
    Auto,
}

/// Names of the three splits, in the order of [`RawInteractions::given_split`] (0, 1, 2).
pub const SPLITS: [&str; 3] = ["trn", "val", "tst"];

/// One split: matrix shape and its (user, item) entries.
struct SplitMatrix {
    path: PathBuf,
    shape: (usize, usize),
    pairs: Vec<(u32, u32)>,
}

/// Reads the three splits of an RLMRec data directory.
pub fn read_rlmrec(dir: &Path, prefer: RlmrecFormat) -> Result<RawInteractions> {
    let pkl = |s: &str| dir.join(format!("{s}_mat.pkl"));
    let tsv = |s: &str| dir.join(format!("{s}.tsv"));
    let format = match prefer {
        RlmrecFormat::Auto => {
            if SPLITS.iter().all(|s| pkl(s).is_file()) {
                RlmrecFormat::Pickle
            } else if SPLITS.iter().all(|s| tsv(s).is_file()) {
                RlmrecFormat::Tsv
            } else {
                return Err(DataError::file(
                    dir,
                    "not an RLMRec data directory: expected trn/val/tst_mat.pkl or trn/val/tst.tsv",
                ));
            }
        }
        f => f,
    };
    let mut splits = Vec::with_capacity(3);
    for s in SPLITS {
        splits.push(match format {
            RlmrecFormat::Tsv => read_tsv(&tsv(s))?,
            _ => read_pickle(&pkl(s))?,
        });
    }
    combine(splits)
}

/// Checks shapes, ranges and emptiness, and concatenates the splits.
fn combine(splits: Vec<SplitMatrix>) -> Result<RawInteractions> {
    let shape = splits[0].shape;
    for sp in &splits {
        if sp.shape != shape {
            return Err(DataError::file(
                &sp.path,
                format!(
                    "shape {}x{} differs from {}'s {}x{}",
                    sp.shape.0,
                    sp.shape.1,
                    splits[0].path.display(),
                    shape.0,
                    shape.1
                ),
            ));
        }
        if sp.pairs.is_empty() {
            return Err(DataError::file(&sp.path, "empty split: no interactions"));
        }
    }
    let total: usize = splits.iter().map(|s| s.pairs.len()).sum();
    let mut raw = RawInteractions {
        users: Vec::with_capacity(total),
        items: Vec::with_capacity(total),
        user_ids: IdMap::identity(shape.0),
        item_ids: IdMap::identity(shape.1),
        ..Default::default()
    };
    let mut given = Vec::with_capacity(total);
    for (k, sp) in splits.iter().enumerate() {
        for &(u, i) in &sp.pairs {
            raw.users.push(u);
            raw.items.push(i);
            given.push(k as u8);
        }
    }
    raw.given_split = Some(given);
    Ok(raw)
}

/// Parses `shape=UxI` and `nnz=N` out of the `#` header line.
fn parse_tsv_header(path: &Path, line: &str) -> Result<((usize, usize), Option<usize>)> {
    let mut shape = None;
    let mut nnz = None;
    for tok in line.trim_start_matches('#').split_whitespace() {
        if let Some(v) = tok.strip_prefix("shape=") {
            let parsed = v
                .split_once(['x', 'X'])
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            match parsed {
                Some(s) if s.0 <= u32::MAX as usize && s.1 <= u32::MAX as usize => shape = Some(s),
                _ => {
                    return Err(DataError::field(
                        path,
                        1,
                        "shape",
                        format!("`{v}` is not `UxI`"),
                    ))
                }
            }
        } else if let Some(v) = tok.strip_prefix("nnz=") {
            nnz =
                Some(v.parse::<usize>().map_err(|_| {
                    DataError::field(path, 1, "nnz", format!("`{v}` is not a count"))
                })?);
        }
    }
    let shape = shape.ok_or_else(|| {
        DataError::line(path, 1, "header line has no `shape=UxI` (users x items)")
    })?;
    Ok((shape, nnz))
}

/// Reads one TSV split.
fn read_tsv(path: &Path) -> Result<SplitMatrix> {
    let text = read_text(path)?;
    let mut lines = numbered_lines(&text);
    let (shape, nnz) = match lines.next() {
        Some((1, l)) if l.starts_with('#') => parse_tsv_header(path, l)?,
        Some((n, _)) => {
            return Err(DataError::line(
                path,
                n,
                "expected a `# ... shape=UxI` header first",
            ))
        }
        None => {
            return Err(DataError::file(
                path,
                "empty file (expected a `# shape=UxI` header)",
            ))
        }
    };
    if !text.ends_with('\n') {
        // The exports end every line with a newline: a last line without one was cut off.
        let last_line = text.split('\n').count();
        return Err(DataError::line(
            path,
            last_line,
            "truncated: the last line has no line end (file cut off?)",
        ));
    }
    let mut pairs = Vec::with_capacity(nnz.unwrap_or(0));
    for (ln, line) in lines {
        if line.starts_with('#') {
            continue;
        }
        let mut f = line.split('\t');
        let (Some(u), Some(i), None) = (f.next(), f.next(), f.next()) else {
            return Err(DataError::line(path, ln, "expected `user<TAB>item`"));
        };
        let u = parse_id(path, ln, "user", u, shape.0)?;
        let i = parse_id(path, ln, "item", i, shape.1)?;
        pairs.push((u, i));
    }
    if let Some(n) = nnz {
        if pairs.len() != n {
            return Err(DataError::file(
                path,
                format!(
                    "truncated or padded: header says nnz={n}, found {} entries",
                    pairs.len()
                ),
            ));
        }
    }
    Ok(SplitMatrix {
        path: path.to_path_buf(),
        shape,
        pairs,
    })
}

fn parse_id(path: &Path, ln: usize, field: &str, s: &str, bound: usize) -> Result<u32> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| DataError::field(path, ln, field, format!("`{s}` is not a 0-based id")))?;
    if v as usize >= bound {
        return Err(DataError::field(
            path,
            ln,
            field,
            format!("id {v} is outside the shape (0..{bound})"),
        ));
    }
    Ok(v as u32)
}

/// Reads one pickled COO split, checking indices against the matrix shape.
fn read_pickle(path: &Path) -> Result<SplitMatrix> {
    let m = super::pickle::read_coo(path)?;
    let n = m.rows.len();
    if m.cols.len() != n || m.data.len() != n {
        return Err(DataError::file(
            path,
            "COO arrays row/col/data differ in length",
        ));
    }
    let mut pairs = Vec::with_capacity(n);
    for k in 0..n {
        if m.data[k] == 0.0 {
            continue;
        }
        let (u, i) = (m.rows[k], m.cols[k]);
        if u as usize >= m.n_rows || i as usize >= m.n_cols {
            return Err(DataError::file(
                path,
                format!(
                    "entry {k}: ({u}, {i}) is outside the shape {}x{}",
                    m.n_rows, m.n_cols
                ),
            ));
        }
        pairs.push((u, i));
    }
    Ok(SplitMatrix {
        path: path.to_path_buf(),
        shape: (m.n_rows, m.n_cols),
        pairs,
    })
}
