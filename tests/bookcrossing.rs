//! Book-Crossing: the delimited reader's paths that its files need (latin-1, `;`, every
//! field quoted, `\"` escapes, HTML entities, NULL, side tables, items without a record),
//! on small fixtures written here, and the prepared counts on the real files.

#[path = "support/inputs.rs"]
mod inputs;

use darec::config::Config;
use darec::data::delimited::{read_delimited, DelimitedOptions, SideTable, TextEncoding};
use darec::data::load::load_dataset;
use std::path::{Path, PathBuf};

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("darec-bx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// Writes `text` encoded as latin-1 (every char below U+0100).
fn write_latin1(dir: &Path, name: &str, text: &str) -> PathBuf {
    let bytes: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(c as u32).expect("latin-1 text"))
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The options of the built-in `bookcrossing` preset (the same file the binary embeds).
fn bx_options() -> DelimitedOptions {
    Config::load(None, &["data.name=\"bookcrossing\"".into()])
        .unwrap()
        .data
        .delimited
}

fn fixture(dir: &Path) -> PathBuf {
    write_latin1(
        dir,
        "BX-Books.csv",
        "\"ISBN\";\"Book-Title\";\"Book-Author\";\"Year-Of-Publication\";\"Publisher\";\"Image-URL-S\"\n\
         \"0140292918\";\"Of Mice and Men (Steinbeck \\\"Essentials\\\")\";\"John Steinbeck\";\"2001\";\"Penguin Books Ltd\";\"http://x/s.jpg\"\n\
         \"0805051732\";\"The Word; \\\"Desire\\\"\";\"Rikki Ducornet\";\"1997\";\"Henry Holt &amp; Company\";\"http://x/s.jpg\"\n\
         \"0060000001\";\"La casa de los espÃ\u{ad}ritus\";\"Isabel Allende\";\"1995\";\"Plaza &amp; JanÃ©s\";\"\"\n\
         \"3257224281\";\"Der Schüler Gerber\";\"Friedrich Torberg\";\"0\";\"Diogenes\";\"\"\n",
    );
    write_latin1(
        dir,
        "BX-Users.csv",
        "\"User-ID\";\"Location\";\"Age\"\n\"1\";\"nyc, new york, usa\";NULL\n\"2\";\"münchen, bayern, germany\";\"34\"\n",
    );
    write_latin1(
        dir,
        "BX-Book-Ratings.csv",
        "\"User-ID\";\"ISBN\";\"Book-Rating\"\n\"1\";\"0140292918\";\"0\"\n\"2\";\"0805051732\";\"8\"\n\"2\";\"9999999999\";\"5\"\n\"3\";\"3257224281\";\"7\"\n\"3\";\"0060000001\";\"0\"\n",
    )
}

#[test]
fn latin1_escaped_quotes_entities_and_side_tables() {
    let d = scratch("fixture");
    let ratings = fixture(&d.0);
    let raw = read_delimited(&ratings, &bx_options()).unwrap();
    // the rating of a book without a record in BX-Books.csv is dropped
    assert_eq!(raw.len(), 4);
    assert_eq!(
        raw.item_ids.external,
        vec!["0140292918", "0805051732", "3257224281", "0060000001"]
    );
    assert_eq!(raw.ratings, Some(vec![0.0, 8.0, 7.0, 0.0]));
    let items = raw.item_features.as_ref().unwrap();
    assert_eq!(items.columns, vec!["title", "author", "year", "publisher"]);
    assert_eq!(
        items.get(0, "title"),
        Some("Of Mice and Men (Steinbeck \"Essentials\")"),
        "escaped quotes"
    );
    assert_eq!(
        items.get(1, "title"),
        Some("The Word; \"Desire\""),
        "separator inside quotes"
    );
    assert_eq!(
        items.get(1, "publisher"),
        Some("Henry Holt & Company"),
        "entity"
    );
    assert_eq!(items.get(2, "title"), Some("Der Schüler Gerber"), "latin-1");
    assert_eq!(items.get(2, "year"), Some(""), "year 0 means unknown");
    // UTF-8 stored inside the latin-1 file is repaired, genuine latin-1 left alone
    assert_eq!(items.get(3, "title"), Some("La casa de los espíritus"));
    assert_eq!(items.get(3, "publisher"), Some("Plaza & Janés"));
    let users = raw.user_features.as_ref().unwrap();
    assert_eq!(users.columns, vec!["location", "age"]);
    assert_eq!(users.get(0, "age"), Some(""), "NULL");
    assert_eq!(users.get(1, "location"), Some("münchen, bayern, germany"));
    assert_eq!(users.get(1, "age"), Some("34"));
    // user 3 has no record in BX-Users.csv: empty attributes
    assert_eq!(users.get(2, "location"), Some(""));

    // the same file read as UTF-8 is refused with its line, not garbled
    let utf8 = DelimitedOptions {
        encoding: TextEncoding::Utf8,
        ..bx_options()
    };
    let e = read_delimited(&ratings, &utf8).unwrap_err().to_string();
    assert!(e.contains("BX-Books.csv:5") && e.contains("UTF-8"), "{e}");
}

#[test]
fn bad_records_name_file_line_and_field() {
    let d = scratch("bad");
    let ratings = fixture(&d.0);
    // a rating that is not a number, on line 3 of the ratings file
    write_latin1(
        &d.0,
        "BX-Book-Ratings.csv",
        "\"User-ID\";\"ISBN\";\"Book-Rating\"\n\"1\";\"0140292918\";\"0\"\n\"2\";\"0805051732\";\"gut\"\n",
    );
    let e = read_delimited(&ratings, &bx_options())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("BX-Book-Ratings.csv:3")
            && e.contains("field `Book-Rating`")
            && e.contains("`gut`"),
        "{e}"
    );
    // a books record with a field too few, after a record spanning two lines
    write_latin1(
        &d.0,
        "BX-Books.csv",
        "\"ISBN\";\"Book-Title\";\"Book-Author\";\"Year-Of-Publication\";\"Publisher\"\n\
         \"1\";\"Two\nLines\";\"A\";\"2000\";\"P\"\n\"2\";\"T\";\"A\";\"2000\"\n",
    );
    let e = read_delimited(&ratings, &bx_options())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("BX-Books.csv:4") && e.contains("expected 5 fields") && e.contains("found 4"),
        "{e}"
    );
    // a side-table column that the header lacks
    let mut o = bx_options();
    o.users = Some(SideTable {
        file: "BX-Users.csv".into(),
        columns: vec![("Country".into(), "country".into())],
        ..Default::default()
    });
    write_latin1(
        &d.0,
        "BX-Books.csv",
        "\"ISBN\";\"Book-Title\";\"Book-Author\";\"Year-Of-Publication\";\"Publisher\"\n\"1\";\"T\";\"A\";\"2000\";\"P\"\n",
    );
    let e = read_delimited(&ratings, &o).unwrap_err().to_string();
    assert!(
        e.contains("BX-Users.csv:1") && e.contains("no column `Country`"),
        "{e}"
    );
    // a missing side table names its path
    o.users.as_mut().unwrap().file = "none.csv".into();
    let e = read_delimited(&ratings, &o).unwrap_err().to_string();
    assert!(e.contains("none.csv") && e.contains("cannot read"), "{e}");
}

/// Quotes are off when asked (`quote = ""`): a lone quote is an ordinary character, as the
/// reader treated every file before it parsed quoting; a longer quote is refused.
#[test]
fn quoting_can_be_switched_off() {
    let d = scratch("noquote");
    let p = d.0.join("q.tsv");
    std::fs::write(&p, "u1\t\"i1\nu2\ti2\"\n").unwrap();
    let off = Config::load(None, &["data.delimited.quote=\"\"".into()]).unwrap();
    assert_eq!(off.data.delimited.quote, None);
    let raw = read_delimited(&p, &off.data.delimited).unwrap();
    assert_eq!(raw.item_ids.external, vec!["\"i1", "i2\""]);
    let e = Config::load(None, &["data.delimited.quote=\"''\"".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data.delimited.quote") && e.contains("one character"),
        "{e}"
    );
}

/// The real files (scripts/fetch_data.sh data): counts after preparation.
#[test]
fn real_bookcrossing_counts_after_preparation() {
    let Some(_) = inputs::cached("data/bookcrossing/BX-Book-Ratings.csv") else {
        return;
    };
    let mut cfg = Config::load(None, &["data.name=\"bookcrossing\"".into()]).unwrap();
    cfg.data.path = inputs::cache_dir()
        .join("data/bookcrossing/BX-Book-Ratings.csv")
        .to_string_lossy()
        .into_owned();
    let ds = load_dataset(&cfg.data).unwrap();
    assert_eq!((ds.n_users(), ds.n_items()), (6605, 13228));
    assert_eq!(
        (ds.train.len(), ds.valid.len(), ds.test.len()),
        (219536, 73179, 73179)
    );
    // every kept book has a title; the entity in a publisher is decoded
    let f = ds.item_features.as_ref().unwrap();
    let empty_titles = (0..ds.n_items() as u32)
        .filter(|&i| f.get(i, "title").unwrap().is_empty())
        .count();
    assert_eq!(empty_titles, 0);
    assert!(!(0..ds.n_items() as u32).any(|i| f.get(i, "publisher").unwrap().contains("&amp;")));
}
