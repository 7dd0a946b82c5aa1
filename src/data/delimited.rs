//! Plain delimited interaction files (TSV, CSV): one interaction a line, user and item in
//! columns chosen by 0-based index, optional rating and timestamp columns, optional header
//! line and comment lines.
//!
//! Fields are split on the separator character exactly; quoting (`"a,b"`) is not
//! supported. Id fields are trimmed of surrounding spaces. Empty lines are skipped, CRLF
//! line ends and a UTF-8 byte-order mark are tolerated. Every line must have the same number
//! of fields as the first one (the header when there is one).
//!
//! Also home of the line-reading helpers the other text readers (`recbole`, `rlmrec`)
//! share, so that they all report errors the same way.

use super::error::{DataError, Result};
use super::{IdMap, RawInteractions};
use serde::Deserialize;
use std::path::Path;

/// How to read a delimited interaction file.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DelimitedOptions {
    /// Field separator (default tab).
    pub sep: char,
    /// 0-based column of the user id (default 0).
    pub user_col: usize,
    /// 0-based column of the item id (default 1).
    pub item_col: usize,
    /// 0-based column of the rating, if any (default none).
    pub rating_col: Option<usize>,
    /// 0-based column of the timestamp, if any (default none).
    pub timestamp_col: Option<usize>,
    /// Whether the first non-comment line is a header naming the columns (default false).
    pub has_header: bool,
    /// Lines starting with this prefix are skipped (default `#`; `None` keeps every line).
    pub comment_prefix: Option<String>,
}

impl Default for DelimitedOptions {
    fn default() -> Self {
        Self {
            sep: '\t',
            user_col: 0,
            item_col: 1,
            rating_col: None,
            timestamp_col: None,
            has_header: false,
            comment_prefix: Some("#".to_string()),
        }
    }
}

impl DelimitedOptions {
    /// Checks that the options make sense on their own (distinct columns, usable separator).
    pub fn validate(&self) -> Result<()> {
        if self.sep == '\n' || self.sep == '\r' {
            return Err(DataError::Invalid(
                "delimited: the separator cannot be a line break".into(),
            ));
        }
        let mut cols = vec![("user_col", self.user_col), ("item_col", self.item_col)];
        if let Some(c) = self.rating_col {
            cols.push(("rating_col", c));
        }
        if let Some(c) = self.timestamp_col {
            cols.push(("timestamp_col", c));
        }
        for (i, (na, a)) in cols.iter().enumerate() {
            for (nb, b) in &cols[i + 1..] {
                if a == b {
                    return Err(DataError::Invalid(format!(
                        "delimited: {na} and {nb} both name column {a}"
                    )));
                }
            }
        }
        if self.comment_prefix.as_deref() == Some("") {
            return Err(DataError::Invalid(
                "delimited: comment_prefix is empty (it would skip every line); use none instead"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Reads a delimited interaction file. External ids are interned in order of first
/// appearance; ratings and timestamps are read when their columns are configured.
pub fn read_delimited(path: &Path, opts: &DelimitedOptions) -> Result<RawInteractions> {
    opts.validate()?;
    let text = read_text(path)?;
    let needed = [
        Some(opts.user_col),
        Some(opts.item_col),
        opts.rating_col,
        opts.timestamp_col,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0)
        + 1;

    let mut names: Option<Vec<String>> = None;
    let mut n_fields: Option<usize> = None;
    let mut raw = RawInteractions {
        ratings: opts.rating_col.map(|_| Vec::new()),
        timestamps: opts.timestamp_col.map(|_| Vec::new()),
        ..Default::default()
    };
    let mut user_ids = IdMap::new();
    let mut item_ids = IdMap::new();
    let col_name = |names: &Option<Vec<String>>, c: usize| -> String {
        match names.as_ref().and_then(|n| n.get(c)) {
            Some(n) => n.clone(),
            None => format!("column {c}"),
        }
    };

    for (lineno, line) in numbered_lines(&text) {
        if let Some(p) = &opts.comment_prefix {
            if line.starts_with(p.as_str()) {
                continue;
            }
        }
        let fields: Vec<&str> = line.split(opts.sep).collect();
        match n_fields {
            None => {
                if fields.len() < needed {
                    return Err(DataError::line(
                        path,
                        lineno,
                        format!(
                            "{} field(s) separated by {:?}, but the options use column {} (0-based)",
                            fields.len(),
                            opts.sep,
                            needed - 1
                        ),
                    ));
                }
                n_fields = Some(fields.len());
                if opts.has_header {
                    names = Some(fields.iter().map(|s| s.trim().to_string()).collect());
                    continue;
                }
            }
            Some(n) if n != fields.len() => {
                return Err(DataError::line(
                    path,
                    lineno,
                    format!(
                        "expected {n} fields separated by {:?} (as on the first line), found {}",
                        opts.sep,
                        fields.len()
                    ),
                ));
            }
            Some(_) => {}
        }
        let user = fields[opts.user_col].trim();
        let item = fields[opts.item_col].trim();
        if user.is_empty() {
            let f = col_name(&names, opts.user_col);
            return Err(DataError::field(path, lineno, f, "empty user id"));
        }
        if item.is_empty() {
            let f = col_name(&names, opts.item_col);
            return Err(DataError::field(path, lineno, f, "empty item id"));
        }
        if let (Some(c), Some(v)) = (opts.rating_col, raw.ratings.as_mut()) {
            v.push(parse_float(path, lineno, &col_name(&names, c), fields[c])? as f32);
        }
        if let (Some(c), Some(v)) = (opts.timestamp_col, raw.timestamps.as_mut()) {
            v.push(parse_float(path, lineno, &col_name(&names, c), fields[c])?);
        }
        raw.users.push(user_ids.intern(user));
        raw.items.push(item_ids.intern(item));
    }
    raw.user_ids = user_ids;
    raw.item_ids = item_ids;
    Ok(raw)
}

/// Reads a whole file as UTF-8; invalid UTF-8 is reported with its line number.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..upto].iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::line(path, line, "not valid UTF-8 text")
    })
}

/// Non-empty lines with their 1-based line numbers; strips a trailing `\r` and a leading
/// byte-order mark.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.split('\n').enumerate().filter_map(|(i, l)| {
        let l = l.strip_suffix('\r').unwrap_or(l);
        (!l.trim().is_empty()).then_some((i + 1, l))
    })
}

/// Parses a finite floating-point number (surrounding spaces allowed), naming file, line and
/// field on failure.
pub(crate) fn parse_float(path: &Path, line: usize, field: &str, s: &str) -> Result<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DataError::field(
            path,
            line,
            field,
            "empty value where a number is expected",
        ));
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(DataError::field(
            path,
            line,
            field,
            format!("`{t}` is not a finite number"),
        )),
        Err(_) => Err(DataError::field(
            path,
            line,
            field,
            format!("`{t}` is not a number"),
        )),
    }
}
