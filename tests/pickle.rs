//! Tests of the pickle reader (src/data/pickle*): the opcode machine on hand-checked Python
//! pickles, numpy arrays and scipy matrices from the fixtures in tests/fixtures/pickle
//! (made by generate.py there), error reports, robustness against truncated and corrupted
//! input, and RLMRec's real splits when /work/shared/data is present.

#[path = "support/inputs.rs"]
mod inputs;

use darec::data::pickle::{
    f16_to_f32, fortran_to_c, load, read_coo, read_ndarray, read_pickle, CooMatrix, Dtype,
    DtypeKind, NdArray, Value,
};
use darec::data::DataError;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pickle")
        .join(name)
}

fn rlmrec(name: &str) -> Option<PathBuf> {
    inputs::shared_rlmrec(name)
}

/// The message of a `DataError::File`, checking it names `path`.
fn file_error(e: DataError, path: &Path) -> String {
    match e {
        DataError::File { path: p, message } => {
            assert_eq!(p, path);
            message
        }
        other => panic!("expected DataError::File, got {other:?}"),
    }
}

fn ints(v: &Value) -> Vec<i64> {
    v.items()
        .unwrap()
        .iter()
        .map(|x| x.as_int().unwrap())
        .collect()
}

// ---------------------------------------------------------------- opcode machine

/// `[1, 2, (3, 'x'), {'k': None, 'j': False}, True, 1.5, b'ab', -1, 255, 70000, 2**63,
/// -2**63, 'é']` as Python 3.11 pickles it with protocols 2 and 4.
const LIST_P2: &[u8] = b"\x80\x02]q\x00(K\x01K\x02K\x03X\x01\x00\x00\x00xq\x01\x86q\x02}q\x03(X\x01\x00\x00\x00kq\x04NX\x01\x00\x00\x00jq\x05\x89u\x88G?\xf8\x00\x00\x00\x00\x00\x00c_codecs\nencode\nq\x06X\x02\x00\x00\x00abq\x07X\x06\x00\x00\x00latin1q\x08\x86q\tRq\nJ\xff\xff\xff\xffK\xffJp\x11\x01\x00\x8a\t\x00\x00\x00\x00\x00\x00\x00\x80\x00\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80X\x02\x00\x00\x00\xc3\xa9q\x0be.";
const LIST_P4: &[u8] = b"\x80\x04\x95T\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02K\x03\x8c\x01x\x94\x86\x94}\x94(\x8c\x01k\x94N\x8c\x01j\x94\x89u\x88G?\xf8\x00\x00\x00\x00\x00\x00C\x02ab\x94J\xff\xff\xff\xffK\xffJp\x11\x01\x00\x8a\t\x00\x00\x00\x00\x00\x00\x00\x80\x00\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x8c\x02\xc3\xa9\x94e.";

fn check_list(v: &Value) {
    let items = v.items().expect("a list");
    assert!(matches!(v, Value::List(_)));
    assert_eq!(items.len(), 13);
    assert_eq!(items[0].as_int(), Some(1));
    assert_eq!(items[1].as_int(), Some(2));
    let t = items[2].as_tuple().unwrap();
    assert_eq!((t[0].as_int(), t[1].as_str()), (Some(3), Some("x")));
    assert!(matches!(items[3].get("k"), Some(Value::None)));
    assert_eq!(items[3].get("j").and_then(|b| b.as_bool()), Some(false));
    assert!(items[3].get("missing").is_none());
    assert_eq!(items[4].as_bool(), Some(true));
    assert!(matches!(items[5], Value::Float(x) if x == 1.5));
    assert_eq!(items[6].as_bytes(), Some(&b"ab"[..]));
    assert_eq!(items[7].as_int(), Some(-1));
    assert_eq!(items[8].as_int(), Some(255));
    assert_eq!(items[9].as_int(), Some(70000));
    // 2**63 needs 9 bytes: kept as little-endian two's complement
    match &items[10] {
        Value::BigInt(b) => assert_eq!(&b[..], &[0, 0, 0, 0, 0, 0, 0, 0x80, 0]),
        other => panic!("expected a big int, got {other:?}"),
    }
    assert_eq!(items[11].as_int(), Some(i64::MIN));
    assert_eq!(items[12].as_str(), Some("é"));
}

#[test]
fn builtin_values_protocol_2_and_4() {
    check_list(&load(LIST_P2).unwrap());
    check_list(&load(LIST_P4).unwrap());
}

#[test]
fn sets_and_bytearrays() {
    // {1, 2}, protocol 4: EMPTY_SET MARK .. ADDITEMS
    let v = load(b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.").unwrap();
    assert!(matches!(v, Value::Set(_)));
    assert_eq!(ints(&v), vec![1, 2]);
    // bytearray(b'xyz'), protocol 5: BYTEARRAY8
    let v = load(
        b"\x80\x05\x95\x0e\x00\x00\x00\x00\x00\x00\x00\x96\x03\x00\x00\x00\x00\x00\x00\x00xyz\x94.",
    )
    .unwrap();
    assert_eq!(v.as_bytes(), Some(&b"xyz"[..]));
    // bytearray(b'xyz'), protocol 2: bytearray(_codecs.encode('xyz', 'latin1'))
    let v = load(b"\x80\x02c__builtin__\nbytearray\nq\x00c_codecs\nencode\nq\x01X\x03\x00\x00\x00xyzq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.").unwrap();
    assert_eq!(v.as_bytes(), Some(&b"xyz"[..]));
}

#[test]
fn memo_shares_one_object() {
    // a = [7]; [a, a]: the inner list is memoised empty, filled by APPEND, fetched by BINGET
    let v = load(b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94K\x07ah\x01e.").unwrap();
    let items = v.items().unwrap();
    let (Value::List(a), Value::List(b)) = (&items[0], &items[1]) else {
        panic!("two lists expected")
    };
    assert!(Rc::ptr_eq(a, b));
    assert_eq!(ints(&items[1]), vec![7]);
}

#[test]
fn small_opcodes_by_hand() {
    // DUP, POP, text PUT/GET, LONG1 255 and -256, BINFLOAT (big-endian) -2.0, TUPLE from MARK
    let data = b"\x80\x02(K\x05\x32\x30p7\n\x8a\x02\xff\x00\x8a\x02\x00\xffG\xc0\x00\x00\x00\x00\x00\x00\x00g7\nt.";
    let v = load(data).unwrap();
    let t = v.as_tuple().unwrap();
    assert_eq!(t.len(), 5);
    assert_eq!(t[0].as_int(), Some(5));
    assert_eq!(t[1].as_int(), Some(255));
    assert_eq!(t[2].as_int(), Some(-256));
    assert!(matches!(t[3], Value::Float(x) if x == -2.0));
    assert_eq!(t[4].as_int(), Some(5));
    // NEWOBJ + BUILD: an object records class, args and state
    let v = load(b"\x80\x04\x8c\x01m\x8c\x01C\x93K\x01\x85\x81}\x8c\x01sK\x02sb.").unwrap();
    let o = v.as_object().unwrap();
    assert_eq!(o.class.as_global().unwrap().qualname(), "m.C");
    assert_eq!(o.args[0].as_int(), Some(1));
    assert_eq!(
        o.state.as_ref().unwrap().get("s").unwrap().as_int(),
        Some(2)
    );
    drop(o);
    assert_eq!(v.type_name(), "m.C");
}

#[test]
fn malformed_input_reports_offset_and_opcode() {
    let e = load(b"\x80\x04\xff").unwrap_err();
    assert_eq!((e.offset, e.opcode), (2, Some(0xff)));
    assert!(
        e.to_string()
            .contains("pickle byte 2, opcode unknown (0xff): is not a pickle opcode"),
        "{e}"
    );

    let e = load(b"\x80\x06N.").unwrap_err();
    assert!(
        e.to_string()
            .contains("opcode PROTO (0x80): unsupported pickle protocol 6"),
        "{e}"
    );

    // APPEND with nothing on the stack
    let e = load(b"\x80\x04a.").unwrap_err();
    assert!(
        e.to_string()
            .contains("byte 2, opcode APPEND (0x61): stack underflow"),
        "{e}"
    );

    // SETITEMS on a list
    let e = load(b"\x80\x04](K\x01K\x02u.").unwrap_err();
    assert!(
        e.to_string()
            .contains("needs a dict to set items in, found builtins.list"),
        "{e}"
    );

    // BINGET of a memo key never stored
    let e = load(b"\x80\x04h\x03.").unwrap_err();
    assert!(e.to_string().contains("memo key 3 was never stored"), "{e}");

    // BINBYTES announcing more than the data holds
    let e = load(b"\x80\x04B\x00\x00\x00\x10ab").unwrap_err();
    assert_eq!(e.offset, 2);
    assert!(
        e.to_string().contains(
            "BINBYTES (0x42): truncated: the argument needs 268435456 bytes, only 2 left"
        ),
        "{e}"
    );

    // FRAME announcing more than the data holds
    let e = load(b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00N.").unwrap_err();
    assert!(e.to_string().contains("FRAME (0x95): truncated"), "{e}");

    // no STOP
    let e = load(b"\x80\x04N").unwrap_err();
    assert_eq!((e.offset, e.opcode), (3, None));
    assert!(e.to_string().contains("ends before the STOP"), "{e}");

    // out-of-band buffers
    let e = load(b"\x80\x05\x97.").unwrap_err();
    assert!(
        e.to_string()
            .contains("NEXT_BUFFER (0x97): is not supported"),
        "{e}"
    );
}

// ---------------------------------------------------------------- numpy helpers

#[test]
fn half_floats_by_hand() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x3800), 0.5);
    assert_eq!(f16_to_f32(0x7bff), 65504.0); // largest finite half
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
    assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14)); // smallest normal
    assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    assert!(f16_to_f32(0x7e00).is_nan());
}

#[test]
fn fortran_reorder_by_hand() {
    // [[1,2,3],[4,5,6]] stored column by column
    assert_eq!(
        fortran_to_c(&[1, 4, 2, 5, 3, 6], &[2, 3]),
        vec![1, 2, 3, 4, 5, 6]
    );
    // 2x2x2 with value = 100*i + 10*j + k, stored with i fastest
    let f = [0, 100, 10, 110, 1, 101, 11, 111];
    assert_eq!(
        fortran_to_c(&f, &[2, 2, 2]),
        vec![0, 1, 10, 11, 100, 101, 110, 111]
    );
    assert_eq!(fortran_to_c::<u8>(&[], &[0, 3]), Vec::<u8>::new());
}

#[test]
fn dtype_descriptors() {
    let d = Dtype::parse_descr("f8", false).unwrap();
    assert_eq!(
        (d.kind, d.size, d.big_endian, d.name()),
        (DtypeKind::Float, 8, false, "float64".to_string())
    );
    assert_eq!(Dtype::parse_descr(">i4", false).unwrap().name(), ">int32");
    assert_eq!(Dtype::parse_descr("|u1", true).unwrap().name(), "uint8");
    assert_eq!(
        Dtype::parse_descr("b1", false).unwrap().kind,
        DtypeKind::Bool
    );
    for bad in ["O8", "U4", "c16", "f16", "V8", "", "f"] {
        let e = Dtype::parse_descr(bad, false).unwrap_err();
        assert!(e.contains("is not supported"), "{bad}: {e}");
    }
}

// ---------------------------------------------------------------- numpy fixtures

fn array(name: &str) -> NdArray {
    read_ndarray(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn float32_matrix() {
    let a = array("emb_f32.pkl");
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, vec![0.5, -1.25, 2.0, 3.0, 1e-3, -7.5]);
    assert_eq!(a.row(1), Some(&[3.0, 1e-3, -7.5][..]));
    assert_eq!(a.row(2), None);
}

#[test]
fn float64_matrix_protocols_4_and_5() {
    let want = vec![1.5, -2.0, 0.1f64 as f32, 1e10, -0.0, 3.25];
    for name in ["emb_f64.pkl", "emb_f64_p5.pkl"] {
        let a = array(name);
        assert_eq!(a.shape, vec![3, 2], "{name}");
        assert_eq!(a.data, want, "{name}");
        assert_eq!(
            a.data[4].to_bits(),
            (-0.0f32).to_bits(),
            "{name}: sign of zero"
        );
    }
}

#[test]
fn fortran_order_matrix() {
    for name in ["emb_fortran.pkl", "emb_fortran_p5.pkl"] {
        let a = array(name);
        assert_eq!(a.shape, vec![2, 3], "{name}");
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "{name}");
    }
}

#[test]
fn big_endian_protocol_2_int_and_half() {
    // '>f4' written with protocol 2: GLOBAL opcodes, bytes via _codecs.encode
    let a = array("emb_be_f4_p2.pkl");
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, vec![0.5, -1.25, 2.0, 3.0, 1e-3, -7.5]);
    let a = array("ints_i8.pkl");
    assert_eq!(
        (a.shape.clone(), a.data.clone()),
        (vec![2, 2], vec![1.0, -2.0, 3.0, 4.0])
    );
    let a = array("half_f2.pkl");
    assert_eq!(
        (a.shape.clone(), a.data.clone()),
        (vec![4], vec![1.0, -2.0, 0.5, 65504.0])
    );
}

#[test]
fn array_errors() {
    let p = fixture("array_bad_len.pkl");
    let m = file_error(read_ndarray(&p).unwrap_err(), &p);
    assert_eq!(
        m,
        "array of shape (2, 3) and dtype float64 needs 48 bytes of data, found 40"
    );

    let p = fixture("obj_array.pkl");
    let m = file_error(read_ndarray(&p).unwrap_err(), &p);
    assert_eq!(m, "dtype 'O8' (Python objects) is not supported (only bool, integer and float16/32/64 arrays)");

    let p = fixture("coo_f64_i32.pkl");
    let m = file_error(read_ndarray(&p).unwrap_err(), &p);
    assert_eq!(
        m,
        "expected a numpy.ndarray, found scipy.sparse._coo.coo_matrix"
    );
}

// ---------------------------------------------------------------- scipy fixtures

fn coo(name: &str) -> CooMatrix {
    read_coo(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn coo_both_scipy_layouts() {
    // coords=(row, col) of scipy >= 1.13, and row/col with numpy.core names of older files
    for name in ["coo_f64_i32.pkl", "coo_rowcol.pkl"] {
        let m = coo(name);
        assert_eq!((m.n_rows, m.n_cols, m.nnz()), (3, 4, 4), "{name}");
        assert_eq!(m.rows, vec![0, 2, 1, 2], "{name}");
        assert_eq!(m.cols, vec![1, 3, 0, 2], "{name}");
        assert_eq!(m.data, vec![1.0, 2.5, -3.0, 4.0], "{name}");
        assert_eq!(m.pairs(), vec![(0, 1), (2, 3), (1, 0), (2, 2)]);
    }
}

#[test]
fn csr_and_csc_become_coo() {
    let m = coo("csr_f64.pkl");
    assert_eq!((m.n_rows, m.n_cols), (3, 4));
    assert_eq!(
        (m.rows, m.cols, m.data),
        (
            vec![0, 1, 2, 2],
            vec![1, 0, 2, 3],
            vec![1.0, -3.0, 4.0, 2.5]
        )
    );
    let m = coo("csc_f32.pkl");
    assert_eq!((m.n_rows, m.n_cols), (3, 4));
    assert_eq!(
        (m.rows, m.cols, m.data),
        (
            vec![1, 0, 2, 2],
            vec![0, 1, 2, 3],
            vec![-3.0, 1.0, 4.0, 2.5]
        )
    );
}

#[test]
fn coo_errors() {
    let cases = [
        ("coo_negative.pkl", "`row`[1] = -1 is negative"),
        (
            "coo_out_of_range.pkl",
            "`col`[1] = 4 is out of range: the shape allows 0..4",
        ),
        (
            "coo_len_mismatch.pkl",
            "row, col and data have different lengths (3, 4, 4)",
        ),
        ("csr_bad_indptr.pkl", "`indptr` decreases at 2: 3 then 1"),
        (
            "not_coo_dict.pkl",
            "expected a pickled scipy.sparse coo_matrix (or csr/csc), found builtins.dict",
        ),
        (
            "emb_f32.pkl",
            "expected a pickled scipy.sparse coo_matrix (or csr/csc), found numpy.ndarray",
        ),
    ];
    for (name, want) in cases {
        let p = fixture(name);
        let m = file_error(read_coo(&p).unwrap_err(), &p);
        assert_eq!(m, want, "{name}");
    }
}

#[test]
fn truncated_and_unsupported_files() {
    let p = fixture("coo_truncated.pkl");
    let e = read_coo(&p).unwrap_err();
    let text = e.to_string();
    let m = file_error(e, &p);
    assert!(
        m.starts_with("pickle byte ") && m.contains("truncated"),
        "{m}"
    );
    assert!(text.contains("coo_truncated.pkl"), "{text}");

    // protocol 0: MARK DICT PUT, then the text opcode UNICODE at byte 5
    let p = fixture("unsupported_opcode.pkl");
    let m = file_error(read_pickle(&p).unwrap_err(), &p);
    assert!(
        m.starts_with("pickle byte 5, opcode UNICODE (0x56): is not supported"),
        "{m}"
    );

    let p = fixture("no_such_file.pkl");
    assert!(matches!(read_coo(&p), Err(DataError::Io { .. })));
}

/// Every good fixture: each proper prefix fails cleanly, the whole loads.
#[test]
fn every_prefix_of_every_fixture_fails_cleanly() {
    let good = [
        "coo_f64_i32.pkl",
        "coo_rowcol.pkl",
        "csr_f64.pkl",
        "csc_f32.pkl",
        "emb_f32.pkl",
        "emb_f64_p5.pkl",
        "emb_fortran.pkl",
        "emb_be_f4_p2.pkl",
        "half_f2.pkl",
    ];
    for name in good {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for n in 0..bytes.len() {
            assert!(
                load(&bytes[..n]).is_err(),
                "{name}: prefix of {n} bytes loaded"
            );
        }
        assert!(load(&bytes).is_ok(), "{name}");
    }
}

/// Corrupting any single byte never panics, in the machine or in the decoders.
#[test]
fn corrupted_bytes_never_panic() {
    for name in [
        "coo_rowcol.pkl",
        "csr_f64.pkl",
        "emb_fortran_p5.pkl",
        "emb_be_f4_p2.pkl",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for i in 0..bytes.len() {
            for x in [0x00, 0xff, bytes[i] ^ 0x55, bytes[i].wrapping_add(1)] {
                let mut b = bytes.clone();
                b[i] = x;
                if let Ok(v) = load(&b) {
                    let _ = CooMatrix::try_from(&v);
                    let _ = NdArray::try_from(&v);
                    let _ = format!("{v:?} {}", v.type_name());
                }
            }
        }
    }
}

// ---------------------------------------------------------------- RLMRec's real splits

fn tsv_pairs(path: &Path) -> Vec<(u32, u32)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (u, i) = l.split_once('\t').unwrap();
            (u.parse().unwrap(), i.parse().unwrap())
        })
        .collect()
}

#[test]
fn amazon_splits_match_tsv() {
    let Some(dir) = rlmrec("amazon") else { return };
    for (split, nnz) in [("trn", 120_464), ("val", 40_290), ("tst", 40_106)] {
        let m = read_coo(&dir.join(format!("{split}_mat.pkl"))).unwrap();
        assert_eq!(
            (m.n_rows, m.n_cols, m.nnz()),
            (11_000, 9_332, nnz),
            "{split}"
        );
        assert!(m.data.iter().all(|&x| x == 1.0), "{split}: data are ones");
        let mut got = m.pairs();
        let mut want = tsv_pairs(&dir.join(format!("{split}.tsv")));
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{split}");
    }
}

#[test]
fn yelp_train_read_time() {
    let Some(path) = rlmrec("yelp/trn_mat.pkl") else {
        return;
    };
    let t = Instant::now();
    let m = read_coo(&path).unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "read_coo(yelp/trn_mat.pkl): {ms:.2} ms, {}x{}, nnz {}",
        m.n_rows,
        m.n_cols,
        m.nnz()
    );
    assert_eq!((m.n_rows, m.n_cols, m.nnz()), (11_091, 11_010, 166_620));
}
