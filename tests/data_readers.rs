//! Readers: RecBole atomic files, delimited files, RLMRec splits (TSV; pickles when the
//! pickle reader is in), on small fixtures and, when present, on the real data.

#[path = "support/inputs.rs"]
mod inputs;

use darec::data::delimited::{read_delimited, DelimitedOptions};
use darec::data::prepare::{prepare, PrepareOptions, SplitKind};
use darec::data::recbole::{read_recbole, RecboleOptions};
use darec::data::rlmrec::{read_rlmrec, RlmrecFormat};
use darec::data::{DataError, RawInteractions};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh, empty scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("darec-readers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// (user external id, item external id) of every row.
fn ext_pairs(raw: &RawInteractions) -> Vec<(String, String)> {
    raw.users
        .iter()
        .zip(&raw.items)
        .map(|(&u, &i)| {
            (
                raw.user_ids.external(u).to_string(),
                raw.item_ids.external(i).to_string(),
            )
        })
        .collect()
}

fn assert_err_contains(r: Result<RawInteractions, DataError>, parts: &[&str]) {
    let msg = match r {
        Ok(_) => panic!("expected an error containing {parts:?}"),
        Err(e) => e.to_string(),
    };
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` does not contain `{p}`");
    }
}

// ---------------------------------------------------------------- RecBole

#[test]
fn recbole_tiny_reads_interactions_and_features() {
    let raw = read_recbole(
        &fixtures().join("recbole_tiny"),
        "tiny",
        &RecboleOptions::default(),
    )
    .unwrap();
    assert_eq!(raw.len(), 5, "empty line skipped");
    assert_eq!(
        ext_pairs(&raw),
        vec![
            ("u1".into(), "Toy Story (1995)".into()),
            ("u1".into(), "Heat (1995)".into()),
            ("u2".into(), "Toy Story (1995)".into()),
            ("u3".into(), "Nixon (1995)".into()),
            ("u2".into(), "Heat (1995)".into()),
        ]
    );
    assert_eq!(raw.user_ids.external, vec!["u1", "u2", "u3"]);
    assert_eq!(
        raw.ratings.as_deref(),
        Some(&[5.0f32, 3.0, 4.0, 2.5, 1.0][..])
    );
    assert_eq!(
        raw.timestamps.as_deref(),
        Some(&[100.0, 200.0, 150.0, 50.0, 300.0][..])
    );
    assert!(raw.given_split.is_none());

    let items = raw.item_features.as_ref().unwrap();
    assert_eq!(items.columns, vec!["movie_title", "release_year", "genre"]);
    assert_eq!(
        items.rows.len(),
        3,
        "one row per interacted item, unrated item ignored"
    );
    let heat = raw.item_ids.get("Heat (1995)").unwrap();
    assert_eq!(items.get(heat, "genre"), Some("Action Crime"));
    let toy = raw.item_ids.get("Toy Story (1995)").unwrap();
    assert_eq!(items.get(toy, "movie_title"), Some("Toy Story"));
    let nixon = raw.item_ids.get("Nixon (1995)").unwrap();
    assert_eq!(
        items.rows[nixon as usize],
        vec!["", "", ""],
        "missing from .item: empty row"
    );

    let users = raw.user_features.as_ref().unwrap();
    assert_eq!(users.columns, vec!["age", "gender"]);
    assert_eq!(
        users.get(raw.user_ids.get("u2").unwrap(), "age"),
        Some("30")
    );
    assert_eq!(
        users.get(raw.user_ids.get("u1").unwrap(), "age"),
        Some(""),
        "empty float ok"
    );
    assert_eq!(
        users.get(raw.user_ids.get("u3").unwrap(), "gender"),
        Some("")
    );
}

#[test]
fn recbole_crlf_and_bom_read_the_same() {
    let src = fixtures().join("recbole_tiny");
    let d = scratch("crlf");
    for ext in ["inter", "item", "user"] {
        let t = std::fs::read_to_string(src.join(format!("tiny.{ext}"))).unwrap();
        let bom = if ext == "inter" { "\u{feff}" } else { "" };
        write(
            &d,
            &format!("tiny.{ext}"),
            &format!("{bom}{}", t.replace('\n', "\r\n")),
        );
    }
    let a = read_recbole(&src, "tiny", &RecboleOptions::default()).unwrap();
    let b = read_recbole(&d, "tiny", &RecboleOptions::default()).unwrap();
    assert_eq!(ext_pairs(&a), ext_pairs(&b));
    assert_eq!(a.ratings, b.ratings);
    assert_eq!(a.timestamps, b.timestamps);
    assert_eq!(a.item_features, b.item_features);
    assert_eq!(a.user_features, b.user_features);
}

#[test]
fn recbole_optional_columns_and_options() {
    let d = scratch("optional");
    write(
        &d,
        "x.inter",
        "uid:token\tiid:token\tscore:float\nA\tB\t2\nA\tC\t4\n",
    );
    let opts = RecboleOptions {
        user_field: "uid".into(),
        item_field: "iid".into(),
        ..Default::default()
    };
    let raw = read_recbole(&d, "x", &opts).unwrap();
    assert_eq!(raw.len(), 2);
    assert!(raw.ratings.is_none(), "no `rating` column -> None");
    assert!(raw.timestamps.is_none());
    assert!(raw.item_features.is_none() && raw.user_features.is_none());

    let opts = RecboleOptions {
        rating_field: Some("score".into()),
        ..opts
    };
    let raw = read_recbole(&d, "x", &opts).unwrap();
    assert_eq!(raw.ratings, Some(vec![2.0, 4.0]));

    // options from a config file: unspecified fields keep their defaults
    let o: RecboleOptions = serde_json::from_str(r#"{"item_field": "iid"}"#).unwrap();
    assert_eq!(o.user_field, "user_id");
    assert_eq!(o.item_field, "iid");
    assert!(o.load_features);
    assert!(serde_json::from_str::<RecboleOptions>(r#"{"user": "x"}"#).is_err());
}

#[test]
fn recbole_errors_name_file_line_and_field() {
    let d = scratch("errors");
    let opts = RecboleOptions::default();

    write(
        &d,
        "dup.inter",
        "user_id:token\titem_id:token\titem_id:float\n",
    );
    assert_err_contains(
        read_recbole(&d, "dup", &opts),
        &["dup.inter:1", "item_id", "duplicate"],
    );

    write(&d, "notype.inter", "user_id:token\titem_id\n");
    assert_err_contains(
        read_recbole(&d, "notype", &opts),
        &["notype.inter:1", "item_id", ":type"],
    );

    write(&d, "badtype.inter", "user_id:token\titem_id:int\n");
    assert_err_contains(
        read_recbole(&d, "badtype", &opts),
        &["badtype.inter:1", "unknown type `int`"],
    );

    write(&d, "nocol.inter", "user:token\titem_id:token\nA\tB\n");
    assert_err_contains(
        read_recbole(&d, "nocol", &opts),
        &["nocol.inter:1", "`user_id`", "columns: user, item_id"],
    );
    write(&d, "ok.inter", "user_id:token\titem_id:token\nA\tB\n");
    let o = RecboleOptions {
        timestamp_field: Some("time".into()),
        ..Default::default()
    };
    assert_err_contains(
        read_recbole(&d, "ok", &o),
        &["ok.inter:1", "field `time`", "no timestamp"],
    );

    write(
        &d,
        "count.inter",
        "user_id:token\titem_id:token\nA\tB\nA\tC\textra\n",
    );
    assert_err_contains(
        read_recbole(&d, "count", &opts),
        &["count.inter:3", "expected 2", "found 3"],
    );

    write(
        &d,
        "float.inter",
        "user_id:token\titem_id:token\trating:float\nA\tB\t4\n\nA\tC\tfive\n",
    );
    assert_err_contains(
        read_recbole(&d, "float", &opts),
        &["float.inter:4", "field `rating`", "`five`"],
    );

    write(
        &d,
        "nan.inter",
        "user_id:token\titem_id:token\trating:float\nA\tB\tNaN\n",
    );
    assert_err_contains(
        read_recbole(&d, "nan", &opts),
        &["nan.inter:2", "rating", "finite"],
    );

    write(
        &d,
        "norating.inter",
        "user_id:token\titem_id:token\trating:float\nA\tB\t\n",
    );
    assert_err_contains(
        read_recbole(&d, "norating", &opts),
        &["norating.inter:2", "rating", "empty"],
    );

    write(
        &d,
        "seq.inter",
        "user_id:token\titem_id:token\temb:float_seq\nA\tB\t1 2 x3\n",
    );
    assert_err_contains(
        read_recbole(&d, "seq", &opts),
        &["seq.inter:2", "field `emb`", "`x3`"],
    );

    write(&d, "emptyid.inter", "user_id:token\titem_id:token\n\tB\n");
    assert_err_contains(
        read_recbole(&d, "emptyid", &opts),
        &["emptyid.inter:2", "user_id", "empty"],
    );

    write(&d, "feat.inter", "user_id:token\titem_id:token\nA\tB\n");
    write(&d, "feat.item", "item_id:token\tyear:float\nB\t19x9\n");
    assert_err_contains(
        read_recbole(&d, "feat", &opts),
        &["feat.item:2", "field `year`"],
    );
    write(
        &d,
        "feat.item",
        "item_id:token\tyear:float\nB\t1999\nB\t2000\n",
    );
    assert_err_contains(
        read_recbole(&d, "feat", &opts),
        &["feat.item:3", "duplicate id `B`", "line 2"],
    );
    let no_feat = RecboleOptions {
        load_features: false,
        ..Default::default()
    };
    assert!(read_recbole(&d, "feat", &no_feat)
        .unwrap()
        .item_features
        .is_none());

    assert_err_contains(
        read_recbole(&d, "absent", &opts),
        &["absent.inter", "cannot read"],
    );
    write(&d, "empty.inter", "");
    assert_err_contains(read_recbole(&d, "empty", &opts), &["empty.inter", "header"]);
    std::fs::write(
        d.join("bin.inter"),
        b"user_id:token\titem_id:token\nA\t\xff\n",
    )
    .unwrap();
    assert_err_contains(read_recbole(&d, "bin", &opts), &["bin.inter:2", "UTF-8"]);
}

// ---------------------------------------------------------------- delimited

#[test]
fn delimited_tsv_defaults_and_comments() {
    let d = scratch("tsv");
    let p = write(
        &d,
        "a.tsv",
        "# a comment\n10\t7\n10\t8\r\n\n11\t7\n# another\n",
    );
    let raw = read_delimited(&p, &DelimitedOptions::default()).unwrap();
    assert_eq!(raw.users, vec![0, 0, 1]);
    assert_eq!(raw.items, vec![0, 1, 0]);
    assert_eq!(raw.user_ids.external, vec!["10", "11"]);
    assert_eq!(raw.item_ids.external, vec!["7", "8"]);
    assert!(raw.ratings.is_none() && raw.timestamps.is_none());
}

/// The interaction file is streamed (UTF-8): a byte-order mark and CRLF line ends read as
/// plain LF text, and bytes that are not UTF-8 are refused with their line and a hint at
/// `encoding`.
#[test]
fn delimited_stream_bom_crlf_and_invalid_utf8() {
    let d = scratch("delimited-stream");
    let plain = write(&d, "plain.tsv", "# c\nu1\ti1\nu2\ti2\n");
    let bom = write(&d, "bom.tsv", "\u{feff}# c\r\nu1\ti1\r\nu2\ti2\r\n");
    let o = DelimitedOptions::default();
    let (a, b) = (
        read_delimited(&plain, &o).unwrap(),
        read_delimited(&bom, &o).unwrap(),
    );
    assert_eq!(ext_pairs(&a), ext_pairs(&b));
    assert_eq!(
        ext_pairs(&a),
        vec![("u1".into(), "i1".into()), ("u2".into(), "i2".into())]
    );
    let bad = d.join("latin1.tsv");
    std::fs::write(&bad, b"u1\ti1\nu2\tcaf\xe9\n").unwrap();
    assert_err_contains(
        read_delimited(&bad, &o),
        &["latin1.tsv:2", "UTF-8", "latin-1"],
    );
}

#[test]
fn delimited_csv_with_header_rating_timestamp() {
    let d = scratch("csv");
    let p = write(
        &d,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1, 31,2.5,1260759144\n1,1029,3.0,1260759179\n2,31,4,1\n",
    );
    let opts = DelimitedOptions {
        sep: ',',
        rating_col: Some(2),
        timestamp_col: Some(3),
        has_header: true,
        ..Default::default()
    };
    let raw = read_delimited(&p, &opts).unwrap();
    assert_eq!(ext_pairs(&raw).len(), 3);
    assert_eq!(raw.item_ids.external, vec!["31", "1029"], "ids trimmed");
    assert_eq!(raw.ratings, Some(vec![2.5, 3.0, 4.0]));
    assert_eq!(raw.timestamps, Some(vec![1260759144.0, 1260759179.0, 1.0]));

    // swapped columns, from serde with defaults for the rest
    let o: DelimitedOptions =
        serde_json::from_str(r#"{"sep": ",", "user_col": 1, "item_col": 0, "has_header": true}"#)
            .unwrap();
    assert_eq!(o.comment_prefix.as_deref(), Some("#"));
    let raw = read_delimited(&p, &o).unwrap();
    assert_eq!(raw.user_ids.external, vec!["31", "1029"]);
}

#[test]
fn delimited_errors() {
    let d = scratch("delim-err");
    let csv = |text: &str| write(&d, "e.csv", text);
    let o = DelimitedOptions {
        sep: ',',
        rating_col: Some(2),
        has_header: true,
        ..Default::default()
    };
    assert_err_contains(
        read_delimited(&csv("u,i,r\n1,2,3\n1,3\n"), &o),
        &["e.csv:3", "expected 3", "found 2"],
    );
    assert_err_contains(
        read_delimited(&csv("u,i,r\n1,2,3\n1,3,x\n"), &o),
        &["e.csv:3", "field `r`", "`x`"],
    );
    assert_err_contains(
        read_delimited(&csv("u,i,r\n1,,3\n"), &o),
        &["e.csv:2", "field `i`", "empty item"],
    );
    let no_header = DelimitedOptions {
        has_header: false,
        ..o.clone()
    };
    assert_err_contains(
        read_delimited(&csv("1,2,3\n1,3,x\n"), &no_header),
        &["e.csv:2", "field `column 2`"],
    );
    assert_err_contains(
        read_delimited(&csv("1,2\n"), &no_header),
        &["e.csv:1", "column 2"],
    );
    let clash = DelimitedOptions {
        rating_col: Some(1),
        ..o.clone()
    };
    assert_err_contains(
        read_delimited(&csv("1,2,3\n"), &clash),
        &["item_col and rating_col"],
    );
    assert_err_contains(
        read_delimited(&d.join("none.csv"), &o),
        &["none.csv", "cannot read"],
    );
}

// ---------------------------------------------------------------- RLMRec

#[test]
fn rlmrec_tiny_tsv() {
    let dir = fixtures().join("rlmrec_tiny");
    let raw = read_rlmrec(&dir, RlmrecFormat::Tsv).unwrap();
    assert_eq!(raw.user_ids.len(), 4, "shape, not max id + 1");
    assert_eq!(raw.item_ids.len(), 5);
    assert_eq!(raw.user_ids.external(3), "3");
    assert_eq!(raw.users, vec![0, 0, 1, 2, 1, 0, 2, 1, 2]);
    assert_eq!(raw.items, vec![0, 1, 1, 2, 3, 2, 0, 0, 3]);
    assert_eq!(raw.given_split, Some(vec![0, 0, 0, 0, 0, 1, 1, 2, 2]));
    // no pickles there: auto falls back to the TSVs, pickle preference fails on the file
    let auto = read_rlmrec(&dir, RlmrecFormat::Auto).unwrap();
    assert_eq!(auto.users, raw.users);
    assert_err_contains(read_rlmrec(&dir, RlmrecFormat::Pickle), &["trn_mat.pkl"]);
    assert_err_contains(
        read_rlmrec(&scratch("not-rlmrec"), RlmrecFormat::Auto),
        &["not an RLMRec"],
    );

    // given split survives prepare unchanged (no filter); ids of user 3 / item 4 are dropped
    let ds = prepare(
        raw,
        "tiny",
        &PrepareOptions {
            split: SplitKind::Given,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((ds.n_users(), ds.n_items()), (3, 4));
    assert_eq!(ds.train, vec![(0, 0), (0, 1), (1, 1), (1, 3), (2, 2)]);
    assert_eq!(ds.valid, vec![(0, 2), (2, 0)]);
    assert_eq!(ds.test, vec![(1, 0), (2, 3)]);
}

/// Per-split sorted (user, item) pairs.
fn by_split(raw: &RawInteractions) -> [Vec<(u32, u32)>; 3] {
    let mut out: [Vec<(u32, u32)>; 3] = Default::default();
    let g = raw.given_split.as_ref().unwrap();
    for k in 0..raw.len() {
        out[g[k] as usize].push((raw.users[k], raw.items[k]));
    }
    for v in &mut out {
        v.sort_unstable();
    }
    out
}

#[test]
fn rlmrec_tiny_pickles() {
    // the pickle reader's fixtures: three 3x4 matrices (COO, CSR, CSC) with the same entries
    let pk = fixtures().join("pickle");
    let d = scratch("pickles");
    for (s, f) in [
        ("trn", "coo_f64_i32.pkl"),
        ("val", "csr_f64.pkl"),
        ("tst", "csc_f32.pkl"),
    ] {
        std::fs::copy(pk.join(f), d.join(format!("{s}_mat.pkl"))).unwrap();
    }
    let raw = read_rlmrec(&d, RlmrecFormat::Auto).unwrap();
    assert_eq!((raw.user_ids.len(), raw.item_ids.len()), (3, 4));
    let want = vec![(0, 1), (1, 0), (2, 2), (2, 3)];
    assert_eq!(by_split(&raw), [want.clone(), want.clone(), want]);
    assert_eq!(&raw.users[..4], &[0, 2, 1, 2], "stored order kept");
    assert_err_contains(
        read_rlmrec(&d, RlmrecFormat::Tsv),
        &["trn.tsv", "cannot read"],
    );

    // with TSVs of another shape beside them, auto still reads the pickles
    for s in ["trn", "val", "tst"] {
        write(&d, &format!("{s}.tsv"), "# shape=9x9\n0\t0\n");
    }
    assert_eq!(
        read_rlmrec(&d, RlmrecFormat::Auto).unwrap().user_ids.len(),
        3
    );

    std::fs::copy(pk.join("coo_truncated.pkl"), d.join("val_mat.pkl")).unwrap();
    assert_err_contains(read_rlmrec(&d, RlmrecFormat::Pickle), &["val_mat.pkl"]);
    std::fs::copy(pk.join("coo_out_of_range.pkl"), d.join("val_mat.pkl")).unwrap();
    assert_err_contains(read_rlmrec(&d, RlmrecFormat::Pickle), &["val_mat.pkl"]);
}

#[test]
fn rlmrec_errors() {
    let src = fixtures().join("rlmrec_tiny");
    let variant = |name: &str, file: &str, text: &str| -> Result<RawInteractions, DataError> {
        let d = scratch(name);
        for s in ["trn", "val", "tst"] {
            std::fs::copy(src.join(format!("{s}.tsv")), d.join(format!("{s}.tsv"))).unwrap();
        }
        write(&d, file, text);
        read_rlmrec(&d, RlmrecFormat::Tsv)
    };
    assert_err_contains(
        variant("range", "val.tsv", "# shape=4x5 nnz=1\n0\t5\n"),
        &["val.tsv:2", "field `item`", "outside the shape (0..5)"],
    );
    assert_err_contains(
        variant("shape", "tst.tsv", "# shape=4x6\n0\t1\n"),
        &["tst.tsv", "shape 4x6 differs", "4x5"],
    );
    assert_err_contains(
        variant("empty", "val.tsv", "# shape=4x5 nnz=0\n"),
        &["val.tsv", "empty split"],
    );
    assert_err_contains(
        variant("short", "trn.tsv", "# shape=4x5 nnz=3\n0\t1\n1\t2\n"),
        &["trn.tsv", "nnz=3", "found 2"],
    );
    assert_err_contains(
        variant("cut", "trn.tsv", "# shape=4x5\n0\t1\n1\t"),
        &["trn.tsv:3", "truncated"],
    );
    assert_err_contains(
        variant("noshape", "trn.tsv", "# nnz=1\n0\t1\n"),
        &["trn.tsv:1", "shape=UxI"],
    );
    assert_err_contains(
        variant("noheader", "trn.tsv", "0\t1\n"),
        &["trn.tsv:1", "header"],
    );
    assert_err_contains(
        variant("badshape", "trn.tsv", "# shape=4by5\n0\t1\n"),
        &["trn.tsv:1", "`4by5`"],
    );
    assert_err_contains(
        variant("neg", "trn.tsv", "# shape=4x5\n-1\t1\n"),
        &["trn.tsv:2", "field `user`"],
    );
    assert_err_contains(
        variant("three", "trn.tsv", "# shape=4x5\n0\t1\t1\n"),
        &["trn.tsv:2", "user<TAB>item"],
    );
}

// ---------------------------------------------------------------- real data (when present)

fn shared_data() -> Option<PathBuf> {
    inputs::shared_rlmrec("")
}

fn cache() -> PathBuf {
    inputs::cache_dir()
}

fn count_split(raw: &RawInteractions, s: u8) -> usize {
    raw.given_split
        .as_ref()
        .unwrap()
        .iter()
        .filter(|&&x| x == s)
        .count()
}

#[test]
fn real_rlmrec_amazon_and_yelp_tsv_counts() {
    let Some(root) = shared_data() else { return };
    for (name, shape, counts) in [
        ("amazon", (11_000, 9_332), [120_464, 40_290, 40_106]),
        ("yelp", (11_091, 11_010), [166_620, 55_479, 55_436]),
    ] {
        let raw = read_rlmrec(&root.join(name), RlmrecFormat::Tsv).unwrap();
        assert_eq!((raw.user_ids.len(), raw.item_ids.len()), shape, "{name}");
        for (s, &c) in counts.iter().enumerate() {
            assert_eq!(count_split(&raw, s as u8), c, "{name} split {s}");
        }
        let ds = prepare(
            raw,
            name,
            &PrepareOptions {
                split: SplitKind::Given,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (ds.n_users(), ds.n_items()),
            shape,
            "{name}: every id has an interaction"
        );
        assert_eq!(
            [ds.train.len(), ds.valid.len(), ds.test.len()],
            counts,
            "{name}"
        );
        println!("{}", darec::data::stats::stats(&ds));
    }
}

#[test]
fn real_rlmrec_amazon_pickles_match_tsv() {
    let Some(root) = shared_data() else { return };
    let t = std::time::Instant::now();
    let pk = read_rlmrec(&root.join("amazon"), RlmrecFormat::Pickle).unwrap();
    println!("amazon pickles read in {:.2} s", t.elapsed().as_secs_f64());
    let tsv = read_rlmrec(&root.join("amazon"), RlmrecFormat::Tsv).unwrap();
    assert_eq!((pk.user_ids.len(), pk.item_ids.len()), (11_000, 9_332));
    assert_eq!(by_split(&pk), by_split(&tsv));
}

#[test]
fn real_ml100k_and_ml1m() {
    let data = cache().join("data");
    if inputs::cached("data/ml-1m/.fetched").is_none()
        || inputs::cached("data/ml-100k/.fetched").is_none()
    {
        return;
    }
    let raw = read_recbole(&data.join("ml-100k"), "ml-100k", &RecboleOptions::default()).unwrap();
    assert_eq!(
        (raw.len(), raw.user_ids.len(), raw.item_ids.len()),
        (100_000, 943, 1_682)
    );
    let items = raw.item_features.as_ref().unwrap();
    assert_eq!(items.columns, vec!["movie_title", "release_year", "class"]);
    assert_eq!(
        items.get(raw.item_ids.get("1").unwrap(), "movie_title"),
        Some("Toy Story")
    );
    assert_eq!(raw.user_features.as_ref().unwrap().columns.len(), 4);
    // every ML-100K user has >= 20 ratings: one valid and one test row per user
    let temporal = PrepareOptions {
        split: SplitKind::TemporalLeaveOut,
        ..Default::default()
    };
    let ds = prepare(raw, "ml-100k", &temporal).unwrap();
    assert_eq!(
        [ds.train.len(), ds.valid.len(), ds.test.len()],
        [98_114, 943, 943]
    );
    let f = ds.item_features.as_ref().unwrap();
    assert_eq!(
        f.get(ds.item_ids.get("1").unwrap(), "movie_title"),
        Some("Toy Story")
    );

    let t = std::time::Instant::now();
    let raw = read_recbole(&data.join("ml-1m"), "ml-1m", &RecboleOptions::default()).unwrap();
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(
        (raw.len(), raw.user_ids.len(), raw.item_ids.len()),
        (1_000_209, 6_040, 3_706)
    );
    assert_eq!(raw.user_ids.external(0), "1m_1");
    let items = raw.item_features.as_ref().unwrap();
    let toy = raw.item_ids.get("Toy Story (1995)").unwrap();
    assert_eq!(items.get(toy, "genre"), Some("Animation Children's Comedy"));
    let liked = raw
        .ratings
        .as_ref()
        .unwrap()
        .iter()
        .filter(|&&r| r >= 4.0)
        .count();
    assert_eq!(liked, 575_281);

    let opts = PrepareOptions {
        rating_threshold: Some(4.0),
        ..Default::default()
    };
    let ds = prepare(raw, "ml-1m", &opts).unwrap();
    let st = darec::data::stats::stats(&ds);
    println!("ml-1m read in {read_s:.2} s; rating >= 4, random 3:1:1 split:\n{st}");
    assert_eq!(ds.train.len() + ds.valid.len() + ds.test.len(), 575_281);
    assert_eq!(st.users_without_train + st.items_without_train, 0);
}
