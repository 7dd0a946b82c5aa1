//! Finding an item from what a person types: its id, or its title. Outputs show titles
//! (`Toy Story (1995) [Animation, ...]`) while most data sets key items by number (ML-100K's
//! `1`), so requests accept either. A title matches without regard to case or spacing,
//! with or without its year, and with a trailing article moved to the front (RecBole and
//! MovieLens write `Usual Suspects, The`; people write `The Usual Suspects`). A title that
//! names several items lists their ids; an unknown one lists titles containing the words
//! typed.

use std::collections::HashMap;

/// Articles that MovieLens-style titles move to the end (`Godfather, The`, `Cage aux
/// Folles, La`).
const ARTICLES: &[&str] = &[
    "the", "a", "an", "la", "le", "les", "l'", "il", "el", "das", "der", "die",
];

/// How many suggestions an unknown title gets.
const SUGGESTIONS: usize = 5;

/// What a query resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// One item: its index.
    Found(u32),
    /// The title names several items (indices, ascending).
    Ambiguous(Vec<u32>),
    /// Nothing matches; items whose title contains every word of the query (titles with
    /// them as whole words first, then the shortest; at most five).
    Missing(Vec<u32>),
}

/// Titles of the trained items, normalised, for lookups by name.
#[derive(Debug, Default)]
pub struct TitleIndex {
    /// Normalised name (with and without the year, article in front or not) -> items.
    names: HashMap<String, Vec<u32>>,
    /// `(normalised full title, item)`, for suggestions.
    titles: Vec<(String, u32)>,
}

/// Lower case, words separated by single spaces.
fn normalise(s: &str) -> String {
    s.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `usual suspects, the` -> `the usual suspects`; None when no article trails.
fn article_in_front(title: &str) -> Option<String> {
    let (rest, last) = title.rsplit_once(", ")?;
    let last = last.trim();
    if !ARTICLES.contains(&last) {
        return None;
    }
    Some(if last.ends_with('\'') {
        format!("{last}{rest}")
    } else {
        format!("{last} {rest}")
    })
}

impl TitleIndex {
    /// `titles[i]` is item `i`'s `(title, year)`, where known.
    pub fn new(titles: impl IntoIterator<Item = (u32, String, Option<String>)>) -> Self {
        let mut ix = Self::default();
        for (item, title, year) in titles {
            let title = normalise(&title);
            if title.is_empty() {
                continue;
            }
            let mut forms = vec![title.clone()];
            forms.extend(article_in_front(&title));
            let mut full = title;
            if let Some(y) = year.as_deref().map(str::trim).filter(|y| !y.is_empty()) {
                full = format!("{full} ({y})");
                for f in forms.clone() {
                    forms.push(format!("{f} ({y})"));
                }
            }
            forms.sort();
            forms.dedup();
            for f in forms {
                ix.names.entry(f).or_default().push(item);
            }
            ix.titles.push((full, item));
        }
        for v in ix.names.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        ix
    }

    /// The item(s) that `query` names by title.
    pub fn find(&self, query: &str) -> Lookup {
        let q = normalise(query);
        match self.names.get(&q).map(Vec::as_slice) {
            Some([one]) => Lookup::Found(*one),
            Some(many) if !many.is_empty() => Lookup::Ambiguous(many.to_vec()),
            _ => {
                let words: Vec<&str> = q.split(' ').filter(|w| !w.is_empty()).collect();
                let mut hits: Vec<&(String, u32)> = if words.is_empty() {
                    Vec::new()
                } else {
                    self.titles
                        .iter()
                        .filter(|(t, _)| words.iter().all(|w| t.contains(w)))
                        .collect()
                };
                // titles that have the words whole first (`star` finds `Star Wars` before
                // `Stargate`), then the shortest
                let whole = |t: &str| {
                    let tw: Vec<&str> = t
                        .split(|c: char| !c.is_alphanumeric() && c != '\'')
                        .collect();
                    words.iter().all(|w| tw.contains(w))
                };
                hits.sort_by_key(|(t, i)| (!whole(t), t.len(), *i));
                Lookup::Missing(hits.iter().take(SUGGESTIONS).map(|h| h.1).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> TitleIndex {
        let y = |s: &str| Some(s.to_string());
        TitleIndex::new([
            (0, "Toy Story".to_string(), y("1995")),
            (1, "Toy Story 2".to_string(), y("1999")),
            (2, "Usual Suspects, The".to_string(), y("1995")),
            (3, "Hamlet".to_string(), y("1990")),
            (4, "Hamlet".to_string(), y("1996")),
            (5, "Cage aux Folles, La".to_string(), None),
            (6, "Homme et une femme, Un".to_string(), y("1966")),
            (7, "  ".to_string(), y("2000")),
            (8, "Stargate".to_string(), y("1994")),
            (9, "Star Wars".to_string(), y("1977")),
        ])
    }

    #[test]
    fn a_title_is_found_with_or_without_its_year_in_any_case() {
        let ix = index();
        assert_eq!(ix.find("Toy Story"), Lookup::Found(0));
        assert_eq!(ix.find("toy  story (1995)"), Lookup::Found(0));
        assert_eq!(ix.find("TOY STORY 2"), Lookup::Found(1));
        assert_eq!(ix.find("Hamlet (1996)"), Lookup::Found(4));
    }

    #[test]
    fn a_trailing_article_may_stand_in_front() {
        let ix = index();
        assert_eq!(ix.find("The Usual Suspects"), Lookup::Found(2));
        assert_eq!(ix.find("the usual suspects (1995)"), Lookup::Found(2));
        assert_eq!(ix.find("Usual Suspects, The"), Lookup::Found(2));
        assert_eq!(ix.find("La Cage aux Folles"), Lookup::Found(5));
        // `Un` is not in the list: only the title as written matches
        assert_eq!(ix.find("Homme et une femme, Un (1966)"), Lookup::Found(6));
        assert!(matches!(
            ix.find("Un Homme et une femme"),
            Lookup::Missing(_)
        ));
    }

    #[test]
    fn a_title_of_several_items_lists_them() {
        assert_eq!(index().find("hamlet"), Lookup::Ambiguous(vec![3, 4]));
    }

    #[test]
    fn an_unknown_title_suggests_titles_with_its_words_whole_words_first() {
        let ix = index();
        assert_eq!(ix.find("story"), Lookup::Missing(vec![0, 1]));
        assert_eq!(ix.find("star"), Lookup::Missing(vec![9, 8]));
        assert_eq!(ix.find("suspects usual"), Lookup::Missing(vec![2]));
        assert_eq!(ix.find("Toy Stroy"), Lookup::Missing(vec![]));
        assert_eq!(ix.find("   "), Lookup::Missing(vec![]));
        // an empty title is not indexed, so `(2000)` alone names nothing
        assert_eq!(ix.find("(2000)"), Lookup::Missing(vec![]));
    }
}
