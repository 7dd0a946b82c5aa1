//! Delimited interaction files (TSV, CSV, `;`-separated): one interaction a record, user
//! and item in columns chosen by 0-based index, optional rating and timestamp columns,
//! optional header line and comment lines, and optional side tables of item and user
//! attributes (e.g. Book-Crossing's `BX-Books.csv` and `BX-Users.csv`) read the same way.
//!
//! Records are parsed by the `csv` crate: fields may be quoted (`"a;b"`, default quote
//! `"`), a quote inside a quoted field is doubled (`""`) or, when `escape` is set, escaped
//! (`\"`), and a quoted field may span lines. Text is UTF-8 or latin-1 (`encoding`;
//! decoded by `encoding_rs` as windows-1252, the superset browsers use for the label).
//! Id fields are trimmed of surrounding spaces. Blank lines are skipped, CRLF line ends and
//! a byte-order mark are tolerated. Every record must have the same number of fields as
//! the first one (the header when there is one). Every error names the file, the line the
//! record starts on and, where one is at fault, the field.
//!
//! Also home of the line-reading helpers the other text readers (`recbole`, `rlmrec`)
//! share, so that they all report errors the same way.

use super::error::{DataError, Result};
use super::{Features, IdMap, RawInteractions};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Text encoding of a delimited file.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, Deserialize, PartialEq, Eq)]
pub enum TextEncoding {
    #[default]
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    /// ISO-8859-1, read as windows-1252 (which agrees on every printable character).
    #[serde(
        rename = "latin-1",
        alias = "latin1",
        alias = "iso-8859-1",
        alias = "windows-1252",
        alias = "cp1252"
    )]
    Latin1,
}

/// A side table of attributes keyed by the user or item id (one record per id), read with
/// the interaction file's separator, quoting, escape and encoding; it must have a header.
#[derive(Clone, Debug, Default, serde::Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SideTable {
    /// The file; a relative path is taken from the interaction file's directory.
    pub file: String,
    /// 0-based column of the id (default 0).
    pub id_col: usize,
    /// Columns to keep as `[name in the header, feature name]` pairs, in this order (the
    /// feature names are what profiles read: `title`, `year`, `author`, `publisher`, `age`,
    /// `location`, ...). Empty: every column but the id, under its header name.
    pub columns: Vec<(String, String)>,
    /// Values that mean "missing" (e.g. `NULL`); they become empty.
    pub null_values: Vec<String>,
    /// Decode HTML character references (`&amp;`, `&#39;`) in the values.
    pub html_entities: bool,
}

/// How to read a delimited interaction file.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DelimitedOptions {
    /// Field separator (default tab); one ASCII character.
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
    /// Quote character (default `"`); `""` in a config (`None`) reads quotes as ordinary
    /// characters.
    #[serde(deserialize_with = "optional_char")]
    pub quote: Option<char>,
    /// Escape character for a quote inside a quoted field (e.g. `\`; default none: only
    /// doubled quotes).
    #[serde(deserialize_with = "optional_char")]
    pub escape: Option<char>,
    /// Text encoding of the files (default UTF-8).
    pub encoding: TextEncoding,
    /// Item attributes (title, author, ...), keyed by the item id.
    pub items: Option<SideTable>,
    /// User attributes (location, age, ...), keyed by the user id.
    pub users: Option<SideTable>,
    /// Keep only interactions whose item has a record in `items` (default false: items
    /// without one get empty attributes).
    pub only_known_items: bool,
}

/// One character, or none for an empty string (TOML has no null).
fn optional_char<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<char>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    let Some(s) = s else { return Ok(None) };
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) => Ok(Some(c)),
        _ => Err(serde::de::Error::custom(format!(
            "expected one character or \"\" (none), got {s:?}"
        ))),
    }
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
            quote: Some('"'),
            escape: None,
            encoding: TextEncoding::Utf8,
            items: None,
            users: None,
            only_known_items: false,
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
        for (name, c) in [
            ("sep", Some(self.sep)),
            ("quote", self.quote),
            ("escape", self.escape),
        ] {
            if let Some(c) = c {
                if !c.is_ascii() {
                    return Err(DataError::Invalid(format!(
                        "delimited: {name} must be one ASCII character, got {c:?}"
                    )));
                }
            }
        }
        if self.quote.is_some() && self.quote == Some(self.sep) {
            return Err(DataError::Invalid(
                "delimited: quote and sep are the same character".into(),
            ));
        }
        if self.only_known_items && self.items.is_none() {
            return Err(DataError::Invalid(
                "delimited: only_known_items needs an items table (data.delimited.items)".into(),
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

/// One parsed record: the line it starts on and its fields.
pub(crate) struct Record<'a> {
    pub line: usize,
    pub fields: &'a csv::StringRecord,
}

/// Reads `path` as text in `encoding` (a byte-order mark dropped).
pub(crate) fn read_encoded(path: &Path, encoding: TextEncoding) -> Result<String> {
    let text = match encoding {
        TextEncoding::Utf8 => read_text(path)?,
        TextEncoding::Latin1 => {
            let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
            let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
            text.into_owned()
        }
    };
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Parses `text` record by record with the options' separator, quoting and escape,
/// skipping blank and comment lines, and hands each record, with the line it starts on,
/// to `f` (one record buffer, reused: nothing but `f`'s own output is kept).
pub(crate) fn for_each_record(
    path: &Path,
    text: &str,
    opts: &DelimitedOptions,
    f: impl FnMut(Record) -> Result<()>,
) -> Result<()> {
    for_each_record_from(path, text.as_bytes(), opts, f)
}

/// [`for_each_record`] over a stream of UTF-8 bytes (a byte-order mark is skipped):
/// the file is never held whole in memory.
pub(crate) fn for_each_record_from(
    path: &Path,
    input: impl std::io::Read,
    opts: &DelimitedOptions,
    mut f: impl FnMut(Record) -> Result<()>,
) -> Result<()> {
    let mut builder = csv::ReaderBuilder::new();
    builder
        .delimiter(opts.sep as u8)
        .has_headers(false)
        .flexible(true)
        .quoting(opts.quote.is_some())
        .escape(opts.escape.map(|c| c as u8));
    if let Some(q) = opts.quote {
        builder.quote(q as u8);
    }
    let mut reader = builder.from_reader(input);
    let mut fields = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut fields).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            match e.kind() {
                csv::ErrorKind::Utf8 { .. } => DataError::line(
                    path,
                    line,
                    "not valid UTF-8 text (for a latin-1 file, set data.delimited.encoding = \"latin-1\")",
                ),
                csv::ErrorKind::Io(io) => DataError::line(path, line, format!("cannot read: {io}")),
                _ => DataError::line(path, line, format!("cannot parse the record: {e}")),
            }
        })?;
        if !more {
            return Ok(());
        }
        let line = fields.position().map_or(0, |p| p.line() as usize);
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if let Some(p) = &opts.comment_prefix {
            if fields.get(0).is_some_and(|f| f.starts_with(p.as_str())) {
                continue;
            }
        }
        f(Record {
            line,
            fields: &fields,
        })?;
    }
}

/// A side table's attributes by external id, with its feature column names.
struct SideRows {
    columns: Vec<String>,
    rows: HashMap<String, Vec<String>>,
}

impl SideRows {
    /// Features in internal-id order; ids without a record get empty values.
    fn features(&self, ids: &IdMap) -> Features {
        let empty = vec![String::new(); self.columns.len()];
        Features {
            columns: self.columns.clone(),
            rows: ids
                .external
                .iter()
                .map(|e| self.rows.get(e).cloned().unwrap_or_else(|| empty.clone()))
                .collect(),
        }
    }
}

/// The side table's path: relative to the interaction file's directory.
fn side_path(interactions: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        interactions.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// A latin-1 field that holds UTF-8 bytes read as latin-1 (`espÃ­ritus`: some of
/// Book-Crossing's titles are stored so) gets them back (`espíritus`): when its
/// windows-1252 bytes are valid UTF-8 with at least one multi-byte character. Genuine
/// latin-1 text almost never forms valid UTF-8 (an accented letter followed by a
/// continuation byte), so it is left as it is.
pub fn repair_double_encoding(v: &str) -> std::borrow::Cow<'_, str> {
    if v.is_ascii() {
        return std::borrow::Cow::Borrowed(v);
    }
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(v);
    if unmappable {
        return std::borrow::Cow::Borrowed(v);
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) if !s.is_ascii() => std::borrow::Cow::Owned(s.to_string()),
        _ => std::borrow::Cow::Borrowed(v),
    }
}

/// The side table's kept columns as `(source column, feature name)`, checked against the
/// header on line `line`.
fn side_columns(
    path: &Path,
    line: usize,
    header: &[String],
    table: &SideTable,
) -> Result<Vec<(usize, String)>> {
    if table.id_col >= header.len() {
        return Err(DataError::line(
            path,
            line,
            format!(
                "{} column(s) in the header, but id_col is {} (0-based)",
                header.len(),
                table.id_col
            ),
        ));
    }
    if table.columns.is_empty() {
        return Ok((0..header.len())
            .filter(|&c| c != table.id_col)
            .map(|c| (c, header[c].clone()))
            .collect());
    }
    table
        .columns
        .iter()
        .map(|(src, name)| {
            header
                .iter()
                .position(|h| h == src)
                .map(|c| (c, name.clone()))
                .ok_or_else(|| {
                    DataError::line(
                        path,
                        line,
                        format!(
                            "no column `{src}` in the header (it has: {})",
                            header.join(", ")
                        ),
                    )
                })
        })
        .collect()
}

/// Reads a side table (header required); the first record of an id wins.
fn read_side_table(
    interactions: &Path,
    table: &SideTable,
    opts: &DelimitedOptions,
    what: &str,
) -> Result<SideRows> {
    if table.file.is_empty() {
        return Err(DataError::Invalid(format!(
            "delimited.{what}: `file` is missing"
        )));
    }
    let path = side_path(interactions, &table.file);
    let text = read_encoded(&path, opts.encoding)?;
    // from the header: its line, every column name, and (source column, feature name) of
    // the columns kept
    type Header = (usize, Vec<String>, Vec<(usize, String)>);
    let mut header: Option<Header> = None;
    let mut rows = HashMap::new();
    for_each_record(&path, &text, opts, |r| {
        let Some((_, names, keep)) = &header else {
            let names: Vec<String> = r.fields.iter().map(|s| s.trim().to_string()).collect();
            let keep = side_columns(&path, r.line, &names, table)?;
            header = Some((r.line, names, keep));
            return Ok(());
        };
        if r.fields.len() != names.len() {
            return Err(DataError::line(
                &path,
                r.line,
                format!(
                    "expected {} fields separated by {:?} (as in the header), found {}",
                    names.len(),
                    opts.sep,
                    r.fields.len()
                ),
            ));
        }
        let id = r.fields[table.id_col].trim();
        if id.is_empty() {
            return Err(DataError::field(
                &path,
                r.line,
                &names[table.id_col],
                "empty id",
            ));
        }
        if rows.contains_key(id) {
            return Ok(());
        }
        let values = keep
            .iter()
            .map(|(c, _)| {
                let v = r.fields[*c].trim();
                if table.null_values.iter().any(|n| n == v) {
                    return String::new();
                }
                let v = match opts.encoding {
                    TextEncoding::Latin1 => repair_double_encoding(v),
                    TextEncoding::Utf8 => std::borrow::Cow::Borrowed(v),
                };
                if table.html_entities {
                    html_escape::decode_html_entities(&v).trim().to_string()
                } else {
                    v.into_owned()
                }
            })
            .collect::<Vec<String>>();
        rows.insert(id.to_string(), values);
        Ok(())
    })?;
    let Some((_, _, keep)) = header else {
        return Err(DataError::file(
            &path,
            "empty: a header line and one record per id expected",
        ));
    };
    Ok(SideRows {
        columns: keep.into_iter().map(|(_, n)| n).collect(),
        rows,
    })
}

/// Reads a delimited interaction file and its side tables. External ids are interned in
/// order of first appearance; ratings and timestamps are read when their columns are
/// configured.
pub fn read_delimited(path: &Path, opts: &DelimitedOptions) -> Result<RawInteractions> {
    opts.validate()?;
    // UTF-8 (the default) is streamed from the file; latin-1 is decoded whole first
    let text = match opts.encoding {
        TextEncoding::Utf8 => None,
        TextEncoding::Latin1 => Some(read_encoded(path, opts.encoding)?),
    };
    let items_table = match &opts.items {
        Some(t) => Some(read_side_table(path, t, opts, "items")?),
        None => None,
    };
    let users_table = match &opts.users {
        Some(t) => Some(read_side_table(path, t, opts, "users")?),
        None => None,
    };
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
    let mut unknown_items = 0usize;

    let on_record = |rec: Record| {
        let (lineno, fields) = (rec.line, rec.fields);
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
                    return Ok(());
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
        if opts.only_known_items {
            if let Some(t) = &items_table {
                if !t.rows.contains_key(item) {
                    unknown_items += 1;
                    return Ok(());
                }
            }
        }
        if let (Some(c), Some(v)) = (opts.rating_col, raw.ratings.as_mut()) {
            v.push(parse_float(path, lineno, &col_name(&names, c), &fields[c])? as f32);
        }
        if let (Some(c), Some(v)) = (opts.timestamp_col, raw.timestamps.as_mut()) {
            v.push(parse_float(path, lineno, &col_name(&names, c), &fields[c])?);
        }
        raw.users.push(user_ids.intern(user));
        raw.items.push(item_ids.intern(item));
        Ok(())
    };
    match &text {
        Some(t) => for_each_record(path, t, opts, on_record)?,
        None => {
            let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
            let input = std::io::BufReader::with_capacity(1 << 20, file);
            for_each_record_from(path, input, opts, on_record)?
        }
    }
    if unknown_items > 0 {
        tracing::info!(
            "{}: {unknown_items} interactions dropped: their item has no record in the items table",
            path.display()
        );
    }
    raw.item_features = items_table.map(|t| t.features(&item_ids));
    raw.user_features = users_table.map(|t| t.features(&user_ids));
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
