//! Deterministic profile texts built from a dataset's side information (the `template`
//! writer), and the metadata helpers the LLM prompts share: item title/year/genres, user
//! demographics with MovieLens-1M's numeric age and occupation codes spelled out
//! (MovieLens-1M README), and short item labels for user lists.

use crate::data::{Dataset, Features};

/// Column names recognised as an item's title, year and genres (RecBole MovieLens files
/// use `movie_title`, `release_year`, and `genre` (ML-1M) or `class` (ML-100K)).
const TITLE_COLUMNS: &[&str] = &["movie_title", "title", "name"];
const YEAR_COLUMNS: &[&str] = &["release_year", "year"];
const GENRE_COLUMNS: &[&str] = &["genre", "genres", "class", "categories"];
/// User columns with their own wording; `zip_code` is never used.
const USER_KNOWN: &[&str] = &["age", "gender", "occupation", "zip_code"];

/// ML-1M age codes (MovieLens-1M README).
pub fn ml1m_age(code: u32) -> Option<&'static str> {
    Some(match code {
        1 => "Under 18",
        18 => "18-24",
        25 => "25-34",
        35 => "35-44",
        45 => "45-49",
        50 => "50-55",
        56 => "56+",
        _ => return None,
    })
}

/// ML-1M occupation codes (MovieLens-1M README).
pub fn ml1m_occupation(code: u32) -> Option<&'static str> {
    const NAMES: [&str; 21] = [
        "other or not specified",
        "academic/educator",
        "artist",
        "clerical/admin",
        "college/grad student",
        "customer service",
        "doctor/health care",
        "executive/managerial",
        "farmer",
        "homemaker",
        "K-12 student",
        "lawyer",
        "programmer",
        "retired",
        "sales/marketing",
        "scientist",
        "self-employed",
        "technician/engineer",
        "tradesman/craftsman",
        "unemployed",
        "writer",
    ];
    NAMES.get(code as usize).copied()
}

/// A whole number written as text (`"25"`, `"25.0"`), else `None`.
fn whole_number(s: &str) -> Option<u32> {
    let v: f64 = s.trim().parse().ok()?;
    (v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64).then_some(v as u32)
}

fn column(f: &Features, names: &[&'static str]) -> Option<&'static str> {
    names
        .iter()
        .find(|n| f.columns.iter().any(|c| c == *n))
        .copied()
}

/// An item's metadata in a form both the template and the prompts use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemMeta {
    pub title: Option<String>,
    pub year: Option<String>,
    pub genres: Vec<String>,
    /// Other non-empty columns, `(name, value)`.
    pub extra: Vec<(String, String)>,
}

/// How a user's demographics are coded in the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserCoding {
    /// Values are words or plain numbers (ML-100K: age 24, occupation `technician`).
    Plain,
    /// ML-1M: age and occupation are the README's numeric codes.
    Ml1mCodes,
}

/// Reads item and user metadata of one dataset (column lookup done once).
pub struct Describer<'a> {
    ds: &'a Dataset,
    title: Option<&'static str>,
    year: Option<&'static str>,
    genre: Option<&'static str>,
    coding: UserCoding,
    /// `"movie"` when the items are films, `"book"` when they have an author (Book-Crossing),
    /// else `"item"`.
    pub noun: &'static str,
}

impl<'a> Describer<'a> {
    pub fn new(ds: &'a Dataset) -> Self {
        let (title, year, genre) = match &ds.item_features {
            Some(f) => (
                column(f, TITLE_COLUMNS),
                column(f, YEAR_COLUMNS),
                column(f, GENRE_COLUMNS),
            ),
            None => (None, None, None),
        };
        let has = |c: &str| {
            ds.item_features
                .as_ref()
                .is_some_and(|f| f.columns.iter().any(|x| x == c))
        };
        let noun = if title == Some("movie_title") {
            "movie"
        } else if has("author") {
            "book"
        } else {
            "item"
        };
        Self {
            ds,
            title,
            year,
            genre,
            coding: detect_coding(ds.user_features.as_ref()),
            noun,
        }
    }

    /// How user demographics are coded.
    pub fn coding(&self) -> UserCoding {
        self.coding
    }

    /// Metadata of item `i` (internal id); empty when the dataset has no item features.
    pub fn item(&self, i: u32) -> ItemMeta {
        let Some(f) = &self.ds.item_features else {
            return ItemMeta::default();
        };
        let get = |c: Option<&str>| {
            c.and_then(|c| f.get(i, c))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let year = get(self.year).map(|y| match whole_number(y) {
            Some(n) => n.to_string(),
            None => y.to_string(),
        });
        let genres = get(self.genre)
            .map(|g| g.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let known = [self.title, self.year, self.genre];
        let extra = f
            .columns
            .iter()
            .filter(|c| !known.contains(&Some(c.as_str())))
            .filter_map(|c| {
                let v = f.get(i, c)?.trim();
                (!v.is_empty()).then(|| (c.clone(), v.to_string()))
            })
            .collect();
        ItemMeta {
            title: get(self.title).map(str::to_string),
            year,
            genres,
            extra,
        }
    }

    /// `Toy Story (1995)`, or `item <id>` without a title.
    pub fn item_name(&self, i: u32) -> String {
        let m = self.item(i);
        name_of(&m, self.ds.item_ids.external(i))
    }

    /// `Toy Story (1995) [Animation, Children's, Comedy]` (genres only when known).
    pub fn item_label(&self, i: u32) -> String {
        let m = self.item(i);
        let mut s = name_of(&m, self.ds.item_ids.external(i));
        if !m.genres.is_empty() {
            s.push_str(&format!(" [{}]", m.genres.join(", ")));
        }
        s
    }

    /// Template profile of item `i`: `Toy Story (1995). Genres: Animation, Children's, Comedy.`
    pub fn item_template(&self, i: u32) -> String {
        let m = self.item(i);
        let ext = self.ds.item_ids.external(i);
        let mut s = match &m.title {
            Some(_) => name_of(&m, ext),
            None => format!("Item {ext}"),
        };
        s.push('.');
        if !m.genres.is_empty() {
            s.push_str(&format!(" Genres: {}.", m.genres.join(", ")));
        }
        for (c, v) in &m.extra {
            s.push_str(&format!(" {}: {v}.", humanise(c)));
        }
        s
    }

    /// Demographic phrases of user `u` for the template, e.g.
    /// `["aged 25-34 (ML-1M age code 25)", "male", "occupation: programmer (ML-1M code 12)"]`.
    pub fn user_demographics(&self, u: u32, with_codes: bool) -> Vec<String> {
        let Some(f) = &self.ds.user_features else {
            return Vec::new();
        };
        let get = |c: &str| f.get(u, c).map(str::trim).filter(|v| !v.is_empty());
        let mut out = Vec::new();
        if let Some(a) = get("age") {
            let coded = (self.coding == UserCoding::Ml1mCodes)
                .then(|| {
                    whole_number(a)
                        .and_then(|c| ml1m_age(c).map(|w| (c, w.replace("Under", "under"))))
                })
                .flatten();
            out.push(match (coded, with_codes) {
                (Some((c, w)), true) => format!("aged {w} (ML-1M age code {c})"),
                (Some((_, w)), false) => format!("aged {w}"),
                (None, _) => format!(
                    "aged {}",
                    whole_number(a).map_or(a.to_string(), |n| n.to_string())
                ),
            });
        }
        if let Some(g) = get("gender") {
            out.push(match g {
                "M" | "m" => "male".to_string(),
                "F" | "f" => "female".to_string(),
                other => other.to_lowercase(),
            });
        }
        if let Some(o) = get("occupation") {
            let coded = (self.coding == UserCoding::Ml1mCodes)
                .then(|| whole_number(o).and_then(|c| ml1m_occupation(c).map(|w| (c, w))))
                .flatten();
            out.push(match (coded, with_codes) {
                (Some((c, w)), true) => format!("occupation: {w} (ML-1M code {c})"),
                (Some((_, w)), false) => format!("occupation: {w}"),
                (None, _) => format!("occupation: {o}"),
            });
        }
        for (ci, c) in f.columns.iter().enumerate() {
            if USER_KNOWN.contains(&c.as_str()) {
                continue;
            }
            if let Some(v) = f.rows.get(u as usize).map(|r| r[ci].trim()) {
                if !v.is_empty() {
                    out.push(format!("{}: {v}", humanise(c)));
                }
            }
        }
        out
    }

    /// Template profile of user `u` given the (already selected) training items:
    /// `A user aged 24, male, occupation: technician. Liked: Toy Story (1995) [...]; ...`
    pub fn user_template(&self, u: u32, items: &[u32]) -> String {
        let demo = self.user_demographics(u, true);
        let mut s = String::from("A user");
        if !demo.is_empty() {
            s.push(' ');
            s.push_str(&demo.join(", "));
        }
        s.push('.');
        if items.is_empty() {
            s.push_str(" Liked: no items in the training data.");
        } else {
            let list: Vec<String> = items.iter().map(|&i| self.item_label(i)).collect();
            s.push_str(&format!(" Liked: {}.", list.join("; ")));
        }
        s
    }
}

fn name_of(m: &ItemMeta, ext: &str) -> String {
    match (&m.title, &m.year) {
        (Some(t), Some(y)) => format!("{t} ({y})"),
        (Some(t), None) => t.clone(),
        (None, _) => format!("item {ext}"),
    }
}

/// `zip_code` -> `zip code`.
fn humanise(column: &str) -> String {
    column.replace('_', " ")
}

/// ML-1M coding when every non-empty age is an ML-1M age code and every non-empty
/// occupation is a number (ML-100K has ages like 24 and occupation words).
fn detect_coding(f: Option<&Features>) -> UserCoding {
    let Some(f) = f else {
        return UserCoding::Plain;
    };
    let col = |name: &str| f.columns.iter().position(|c| c == name);
    let (age, occ) = (col("age"), col("occupation"));
    if age.is_none() && occ.is_none() {
        return UserCoding::Plain;
    }
    let mut any = false;
    for r in &f.rows {
        if let Some(a) = age.map(|c| r[c].trim()).filter(|v| !v.is_empty()) {
            any = true;
            if whole_number(a).and_then(ml1m_age).is_none() {
                return UserCoding::Plain;
            }
        }
        if let Some(o) = occ.map(|c| r[c].trim()).filter(|v| !v.is_empty()) {
            any = true;
            if whole_number(o).and_then(ml1m_occupation).is_none() {
                return UserCoding::Plain;
            }
        }
    }
    if any {
        UserCoding::Ml1mCodes
    } else {
        UserCoding::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_words() {
        assert_eq!(ml1m_age(25), Some("25-34"));
        assert_eq!(ml1m_age(1), Some("Under 18"));
        assert_eq!(ml1m_age(24), None);
        assert_eq!(ml1m_occupation(12), Some("programmer"));
        assert_eq!(ml1m_occupation(20), Some("writer"));
        assert_eq!(ml1m_occupation(21), None);
        assert_eq!(whole_number("25.0"), Some(25));
        assert_eq!(whole_number("2.5"), None);
    }

    #[test]
    fn coding_detection() {
        let f = |rows: Vec<Vec<&str>>| Features {
            columns: vec!["age".into(), "gender".into(), "occupation".into()],
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(String::from).collect())
                .collect(),
        };
        let ml1m = f(vec![vec!["1", "F", "10"], vec!["56", "M", "16"]]);
        assert_eq!(detect_coding(Some(&ml1m)), UserCoding::Ml1mCodes);
        let ml100k = f(vec![
            vec!["24", "M", "technician"],
            vec!["25", "F", "other"],
        ]);
        assert_eq!(detect_coding(Some(&ml100k)), UserCoding::Plain);
        let odd_age = f(vec![vec!["25", "F", "3"], vec!["30", "M", "4"]]);
        assert_eq!(detect_coding(Some(&odd_age)), UserCoding::Plain);
        assert_eq!(detect_coding(None), UserCoding::Plain);
    }
}
