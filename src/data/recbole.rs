//! RecBole atomic files (SPEC.md section 3: the MovieLens-100K and -1M data sets come in
//! this format): `<dir>/<name>.inter` with the interactions and, when present,
//! `<name>.item` / `<name>.user` with side information.
//!
//! Each file is tab-separated; its first line is a header of `field:type` entries, the type
//! one of `token`, `token_seq`, `float`, `float_seq`. CRLF line ends (ML-1M) and empty
//! lines are tolerated; values are taken verbatim (ML-1M's item ids are movie titles with
//! spaces and punctuation). The user and item columns of `.inter` are required; rating and
//! timestamp columns are read when present. `float` values are checked to be numbers,
//! `float_seq` values to be space-separated numbers; an empty `float` is accepted in the
//! feature files (a missing value) but not in the rating or timestamp column.
//!
//! Features: every column of `.item` / `.user` except the id column is kept as text, keyed
//! by the internal id from `.inter`. Rows for ids that never occur in `.inter` are ignored;
//! ids of `.inter` that are missing from the feature file get a row of empty strings.

use super::delimited::{numbered_lines, parse_float, read_text};
use super::error::{DataError, Result};
use super::{Features, IdMap, RawInteractions};
use serde::Deserialize;
use std::path::Path;

/// Which columns of a RecBole data set to use.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RecboleOptions {
    /// User id column of `.inter` and `.user` (default `user_id`); must exist.
    pub user_field: String,
    /// Item id column of `.inter` and `.item` (default `item_id`); must exist.
    pub item_field: String,
    /// Rating column. `None` (default) reads `rating` when the file has it; a configured
    /// name must exist.
    pub rating_field: Option<String>,
    /// Timestamp column. `None` (default) reads `timestamp` when the file has it; a
    /// configured name must exist.
    pub timestamp_field: Option<String>,
    /// Whether to read `.item` / `.user` when present (default true).
    pub load_features: bool,
}

impl Default for RecboleOptions {
    fn default() -> Self {
        Self {
            user_field: "user_id".into(),
            item_field: "item_id".into(),
            rating_field: None,
            timestamp_field: None,
            load_features: true,
        }
    }
}

/// Type of a RecBole field, from the `name:type` header entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Token,
    TokenSeq,
    Float,
    FloatSeq,
}

/// A parsed header: field names (without type) and their types.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub names: Vec<String>,
    pub types: Vec<FieldType>,
}

impl Header {
    /// Column index of `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// Parses a header line (`user_id:token<TAB>rating:float...`), rejecting entries without a
/// type, unknown types and duplicate names.
pub fn parse_header(path: &Path, line_no: usize, line: &str) -> Result<Header> {
    let mut names: Vec<String> = Vec::new();
    let mut types = Vec::new();
    for entry in line.split('\t') {
        let Some((name, ty)) = entry.rsplit_once(':') else {
            return Err(DataError::field(
                path,
                line_no,
                entry,
                "header entry has no `:type` suffix (expected e.g. `user_id:token`)",
            ));
        };
        let ty = match ty.trim() {
            "token" => FieldType::Token,
            "token_seq" => FieldType::TokenSeq,
            "float" => FieldType::Float,
            "float_seq" => FieldType::FloatSeq,
            other => {
                return Err(DataError::field(
                    path,
                    line_no,
                    name,
                    format!(
                        "unknown type `{other}` (expected token, token_seq, float or float_seq)"
                    ),
                ))
            }
        };
        if name.is_empty() {
            return Err(DataError::field(
                path,
                line_no,
                entry,
                "empty field name in header",
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(DataError::field(
                path,
                line_no,
                name,
                "duplicate field in header",
            ));
        }
        names.push(name.to_string());
        types.push(ty);
    }
    Ok(Header { names, types })
}

/// A RecBole file split into its header and data lines (line number, fields), with the
/// field count and the `float` / `float_seq` values checked.
struct Table<'a> {
    header: Header,
    rows: Vec<(usize, Vec<&'a str>)>,
}

fn parse_table<'a>(path: &Path, text: &'a str) -> Result<Table<'a>> {
    let mut lines = numbered_lines(text);
    let Some((hl, hline)) = lines.next() else {
        return Err(DataError::file(
            path,
            "empty file (expected a `field:type` header line)",
        ));
    };
    let header = parse_header(path, hl, hline)?;
    let n = header.names.len();
    let mut rows = Vec::new();
    for (ln, line) in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != n {
            return Err(DataError::line(
                path,
                ln,
                format!(
                    "expected {n} tab-separated fields (as in the header), found {}",
                    fields.len()
                ),
            ));
        }
        for (c, ty) in header.types.iter().enumerate() {
            let v = fields[c];
            match ty {
                FieldType::Float if !v.trim().is_empty() => {
                    parse_float(path, ln, &header.names[c], v)?;
                }
                FieldType::FloatSeq => {
                    for x in v.split_whitespace() {
                        parse_float(path, ln, &header.names[c], x)?;
                    }
                }
                _ => {}
            }
        }
        rows.push((ln, fields));
    }
    Ok(Table { header, rows })
}

/// Column `name` of `header`, or an error naming the file and the columns it has.
fn required(path: &Path, header: &Header, name: &str, what: &str) -> Result<usize> {
    header.position(name).ok_or_else(|| {
        DataError::field(
            path,
            1,
            name,
            format!(
                "no {what} column `{name}` in the header (columns: {})",
                header.names.join(", ")
            ),
        )
    })
}

/// Resolves an optional column: configured -> must exist; default -> used if present.
fn optional(
    path: &Path,
    header: &Header,
    configured: &Option<String>,
    default: &str,
    what: &str,
) -> Result<Option<usize>> {
    match configured {
        Some(name) => required(path, header, name, what).map(Some),
        None => Ok(header.position(default)),
    }
}

/// Reads `<dir>/<name>.inter` and, when present and `opts.load_features`, `.item` and
/// `.user`.
pub fn read_recbole(dir: &Path, name: &str, opts: &RecboleOptions) -> Result<RawInteractions> {
    let inter_path = dir.join(format!("{name}.inter"));
    let text = read_text(&inter_path)?;
    let table = parse_table(&inter_path, &text)?;
    let h = &table.header;
    let uc = required(&inter_path, h, &opts.user_field, "user")?;
    let ic = required(&inter_path, h, &opts.item_field, "item")?;
    let rc = optional(&inter_path, h, &opts.rating_field, "rating", "rating")?;
    let tc = optional(
        &inter_path,
        h,
        &opts.timestamp_field,
        "timestamp",
        "timestamp",
    )?;

    let n = table.rows.len();
    let mut raw = RawInteractions {
        users: Vec::with_capacity(n),
        items: Vec::with_capacity(n),
        ratings: rc.map(|_| Vec::with_capacity(n)),
        timestamps: tc.map(|_| Vec::with_capacity(n)),
        ..Default::default()
    };
    let mut user_ids = IdMap::new();
    let mut item_ids = IdMap::new();
    for (ln, f) in &table.rows {
        for (c, what) in [(uc, "user"), (ic, "item")] {
            if f[c].is_empty() {
                return Err(DataError::field(
                    &inter_path,
                    *ln,
                    &h.names[c],
                    format!("empty {what} id"),
                ));
            }
        }
        raw.users.push(user_ids.intern(f[uc]));
        raw.items.push(item_ids.intern(f[ic]));
        if let (Some(c), Some(v)) = (rc, raw.ratings.as_mut()) {
            v.push(parse_float(&inter_path, *ln, &h.names[c], f[c])? as f32);
        }
        if let (Some(c), Some(v)) = (tc, raw.timestamps.as_mut()) {
            v.push(parse_float(&inter_path, *ln, &h.names[c], f[c])?);
        }
    }
    drop(table);

    if opts.load_features {
        let item_path = dir.join(format!("{name}.item"));
        if item_path.exists() {
            raw.item_features = Some(read_features(&item_path, &opts.item_field, &item_ids)?);
        }
        let user_path = dir.join(format!("{name}.user"));
        if user_path.exists() {
            raw.user_features = Some(read_features(&user_path, &opts.user_field, &user_ids)?);
        }
    }
    raw.user_ids = user_ids;
    raw.item_ids = item_ids;
    Ok(raw)
}

/// Reads a `.item` / `.user` file into [`Features`] aligned with `ids`.
fn read_features(path: &Path, id_field: &str, ids: &IdMap) -> Result<Features> {
    let text = read_text(path)?;
    let table = parse_table(path, &text)?;
    let idc = required(path, &table.header, id_field, "id")?;
    let columns: Vec<String> = table
        .header
        .names
        .iter()
        .enumerate()
        .filter(|(c, _)| *c != idc)
        .map(|(_, n)| n.clone())
        .collect();
    let mut rows: Vec<Vec<String>> = vec![vec![String::new(); columns.len()]; ids.len()];
    let mut seen_on: Vec<usize> = vec![0; ids.len()];
    for (ln, f) in &table.rows {
        let Some(id) = ids.get(f[idc]) else { continue };
        let first = &mut seen_on[id as usize];
        if *first != 0 {
            return Err(DataError::field(
                path,
                *ln,
                id_field,
                format!("duplicate id `{}` (first on line {first})", f[idc]),
            ));
        }
        *first = *ln;
        rows[id as usize] = f
            .iter()
            .enumerate()
            .filter(|(c, _)| *c != idc)
            .map(|(_, v)| v.to_string())
            .collect();
    }
    Ok(Features { columns, rows })
}
