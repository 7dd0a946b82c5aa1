//! Embeddings (`darec::text::embed`): the local sentence-transformer against PyTorch
//! reference values (SPEC section 3), the fused encoder against candle's `BertModel`,
//! batching, loader errors, the vector store, the `.npy` reader, importers and the resumable
//! profile pipeline.
//!
//! The MiniLM tests skip with a note when `.cache/models/all-MiniLM-L6-v2` is missing
//! (`scripts/fetch_data.sh` fetches it); everything else uses small fixtures.

#[path = "support/inputs.rs"]
mod inputs;

use darec::data::{Dataset, IdMap};
use darec::text::embed::kernels::{erf, exp, gelu_erf, layer_norm_row, softmax_row};
use darec::text::embed::npy::{parse_npy, read_npy, write_npy_f32};
use darec::text::embed::{
    embed_profiles, import_vectors, length_batches, partial_path, pool_normalize, Backend,
    EmbedOptions, LocalEmbedder, SemanticVectors,
};
use darec::text::profile::{Profile, ProfileKind};
use darec::text::TextEmbedder;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("darec-embed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

// ---------------------------------------------------------------------------------------
// all-MiniLM-L6-v2 against PyTorch sentence-transformers
// ---------------------------------------------------------------------------------------

fn m_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models/all-MiniLM-L6-v2")
}

fn minilm() -> Option<LocalEmbedder> {
    let dir = m_dir();
    inputs::require(
        &dir.join("model.safetensors"),
        "run bash scripts/fetch_data.sh",
    )?;
    Some(LocalEmbedder::load(&dir).expect("MiniLM loads"))
}

/// Cosine similarities computed with sentence-transformers 6.2.0 / torch 2.15 (CPU),
/// `SentenceTransformer(".cache/models/all-MiniLM-L6-v2").encode([a, b])`.
const REFERENCE_COSINES: [(&str, &str, f32); 4] = [
    (
        "A man is eating food.",
        "A man is eating a piece of bread.",
        0.7553371,
    ),
    (
        "The new movie is awesome",
        "The new movie is so great",
        0.8939037,
    ),
    (
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "Heat (1995). Genres: Action, Crime, Thriller.",
        0.4447367,
    ),
    (
        "A woman is playing violin.",
        "The cat sits outside",
        0.0432331,
    ),
];

fn long_text() -> String {
    (0..120)
        .map(|i| format!("word{i} is here"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn minilm_matches_pytorch_reference() {
    let Some(mut m) = minilm() else { return };
    assert_eq!(m.dim(), 384);
    assert_eq!(m.name(), "all-MiniLM-L6-v2");
    // sentence_bert_config.json says 256 (tokenizer.json's 128 is not what PyTorch uses)
    assert_eq!(m.max_len(), 256);
    for backend in [Backend::Fused, Backend::Candle] {
        m = m.with_backend(backend).unwrap();
        let v = m.embed(&strings(&["This is an example sentence"])).unwrap();
        let expected = [0.0676569, 0.0634960, 0.0487131, 0.0793050, 0.0374480];
        assert!(
            max_abs_diff(&v[0][..5], &expected) < 1e-5,
            "{backend:?}: {:?}",
            &v[0][..5]
        );
        let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        for (a, b, cos) in REFERENCE_COSINES {
            let v = m.embed(&strings(&[a, b])).unwrap();
            let c = cosine(&v[0], &v[1]);
            assert!(
                (c - cos).abs() < 1e-4,
                "{backend:?} `{a}` / `{b}`: {c} vs {cos}"
            );
        }
        // 531 tokens: truncated to 256 as sentence-transformers does
        let v = m.embed(&[long_text()]).unwrap();
        let expected = [-0.0401970, -0.0708409, -0.0146300];
        assert!(
            max_abs_diff(&v[0][..3], &expected) < 1e-5,
            "{:?}",
            &v[0][..3]
        );
    }
}

#[test]
fn minilm_batching_does_not_change_vectors() {
    let Some(mut m) = minilm() else { return };
    let texts = strings(&[
        "short",
        "A somewhat longer sentence about a film with several words in it.",
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "",
        "Heat",
        "A user who likes action movies, crime dramas and the occasional romantic comedy.",
        "x y z",
    ]);
    let one_by_one: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| m.embed(std::slice::from_ref(t)).unwrap().remove(0))
        .collect();
    for bs in [1, 3, 32] {
        for backend in [Backend::Fused, Backend::Candle] {
            m = m.with_batch_size(bs).with_backend(backend).unwrap();
            let batched = m.embed(&texts).unwrap();
            for (i, (a, b)) in batched.iter().zip(&one_by_one).enumerate() {
                assert!(
                    max_abs_diff(a, b) < 1e-5,
                    "text {i}, batch size {bs}, {backend:?}: {}",
                    max_abs_diff(a, b)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A tiny random BERT: fused encoder vs candle, loader errors
// ---------------------------------------------------------------------------------------

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
    fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
}

/// Random weights for tests/fixtures/embed/tiny-bert/config.json (V 40, H 16, 2 layers,
/// I 32, 32 positions).
fn tiny_weights() -> Vec<u8> {
    let (v, h, i, p) = (40, 16, 32, 32);
    let mut rng = Lcg(7);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: &str, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        t.push((name.to_string(), shape, rng.vec(n, scale, offset)));
    };
    add("embeddings.word_embeddings.weight", vec![v, h], 2.0, 0.0);
    add(
        "embeddings.position_embeddings.weight",
        vec![p, h],
        1.0,
        0.0,
    );
    add(
        "embeddings.token_type_embeddings.weight",
        vec![2, h],
        1.0,
        0.0,
    );
    add("embeddings.LayerNorm.weight", vec![h], 0.4, 1.0);
    add("embeddings.LayerNorm.bias", vec![h], 0.2, 0.0);
    for l in 0..2 {
        let pre = format!("encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            add(
                &format!("{pre}.attention.self.{m}.weight"),
                vec![h, h],
                1.0,
                0.0,
            );
            add(&format!("{pre}.attention.self.{m}.bias"), vec![h], 0.2, 0.0);
        }
        add(
            &format!("{pre}.attention.output.dense.weight"),
            vec![h, h],
            0.5,
            0.0,
        );
        add(
            &format!("{pre}.attention.output.dense.bias"),
            vec![h],
            0.2,
            0.0,
        );
        add(
            &format!("{pre}.attention.output.LayerNorm.weight"),
            vec![h],
            0.4,
            1.0,
        );
        add(
            &format!("{pre}.attention.output.LayerNorm.bias"),
            vec![h],
            0.2,
            0.0,
        );
        add(
            &format!("{pre}.intermediate.dense.weight"),
            vec![i, h],
            0.8,
            0.0,
        );
        add(&format!("{pre}.intermediate.dense.bias"), vec![i], 0.2, 0.0);
        add(&format!("{pre}.output.dense.weight"), vec![h, i], 0.5, 0.0);
        add(&format!("{pre}.output.dense.bias"), vec![h], 0.2, 0.0);
        add(&format!("{pre}.output.LayerNorm.weight"), vec![h], 0.4, 1.0);
        add(&format!("{pre}.output.LayerNorm.bias"), vec![h], 0.2, 0.0);
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A model directory with the tiny config/tokenizer, random weights, and edits.
fn tiny_dir(name: &str, edit_config: impl Fn(&mut serde_json::Value), weights: bool) -> PathBuf {
    let d = tmp(name);
    let src = fixture("embed/tiny-bert");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit_config(&mut cfg);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(src.join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
    if weights {
        std::fs::write(d.join("model.safetensors"), tiny_weights()).unwrap();
    }
    d
}

const TINY_TEXTS: [&str; 6] = [
    "the toy story is a good movie",
    "heat",
    "action and drama, war and love and hate of the old star",
    "",
    "new comedy (1995): genres x",
    "a user likes great films",
];

#[test]
fn tiny_fused_encoder_matches_candle_bert() {
    let d = tiny_dir("tiny", |_| {}, true);
    let fused = LocalEmbedder::load(&d).unwrap().with_batch_size(4);
    assert_eq!(fused.backend(), Backend::Fused);
    assert_eq!((fused.dim(), fused.max_len()), (16, 12)); // tokenizer.json truncation
    let candle = LocalEmbedder::load(&d)
        .unwrap()
        .with_batch_size(4)
        .with_backend(Backend::Candle)
        .unwrap();
    let texts = strings(&TINY_TEXTS);
    let a = fused.embed(&texts).unwrap();
    let b = candle.embed(&texts).unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.len(), 16);
        assert!(
            max_abs_diff(x, y) < 1e-5,
            "text {i}: {}",
            max_abs_diff(x, y)
        );
        let norm: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // the vectors are not all alike (a broken model would give one vector)
    assert!(cosine(&a[0], &a[1]) < 0.999);
    // one at a time gives the same vectors as the mixed-length batches
    for (i, t) in texts.iter().enumerate() {
        let single = candle.embed(std::slice::from_ref(t)).unwrap();
        assert!(max_abs_diff(&single[0], &b[i]) < 1e-5, "text {i}");
    }
    // the 14-token text is truncated to 12 tokens
    let ids = fused.tokenize(&texts).unwrap();
    assert_eq!(ids[2].len(), 12);
    assert_eq!((ids[1].len(), ids[3].len()), (3, 2)); // [CLS] heat [SEP]; [CLS] [SEP]
    assert!(fused.embed(&[]).unwrap().is_empty());
}

fn load_err(dir: &Path) -> String {
    format!("{:#}", LocalEmbedder::load(dir).unwrap_err())
}

#[test]
fn loader_errors_name_the_problem() {
    let d = tiny_dir("noweights", |_| {}, false);
    let e = load_err(&d);
    assert!(e.contains("missing model.safetensors"), "{e}");
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("missing tokenizer.json, model.safetensors"),
        "{e}"
    );

    let e = load_err(&std::env::temp_dir().join("darec-no-such-model-dir"));
    assert!(e.contains("model directory not found"), "{e}");

    let d = tiny_dir("vocab", |c| c["vocab_size"] = 30.into(), true);
    let e = load_err(&d);
    assert!(
        e.contains("do not match") && e.contains("vocab_size 30") && e.contains("up to 39"),
        "{e}"
    );

    let d = tiny_dir("roberta", |c| c["model_type"] = "roberta".into(), true);
    let e = load_err(&d);
    assert!(e.contains("model_type `roberta` is not supported"), "{e}");

    let d = tiny_dir("heads", |c| c["num_attention_heads"] = 5.into(), true);
    let e = load_err(&d);
    assert!(e.contains("not a multiple of num_attention_heads 5"), "{e}");

    let d = tiny_dir("hidden", |c| c["hidden_size"] = 32.into(), true);
    let e = load_err(&d);
    assert!(e.contains("weights do not fit config.json"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Numeric helpers, hand-computed
// ---------------------------------------------------------------------------------------

#[test]
fn mean_pooling_skips_padding_and_normalises() {
    // batch 2, length 3, hidden 2; row 0 has one padded position, row 1 none
    let hidden = [
        1.0, 2.0, 3.0, 4.0, 100.0, 100.0, 3.0, 0.0, 0.0, 4.0, 0.0, 0.0,
    ];
    let mask = [1, 1, 0, 1, 1, 1];
    let v = pool_normalize(&hidden, &mask, 2, 3, 2);
    // mean (2, 3) / sqrt(13); mean (1, 4/3) / (5/3)
    assert!(max_abs_diff(&v[0], &[0.5547002, 0.8320503]) < 1e-6);
    assert!(max_abs_diff(&v[1], &[0.6, 0.8]) < 1e-6);
    // an all-zero vector stays zero instead of NaN
    let z = pool_normalize(&[0.0, 0.0], &[1], 1, 1, 2);
    assert_eq!(z[0], vec![0.0, 0.0]);
}

#[test]
fn length_batches_sort_longest_first() {
    assert_eq!(
        length_batches(&[3, 5, 1, 5, 2], 2),
        vec![vec![1, 3], vec![0, 4], vec![2]]
    );
    assert_eq!(length_batches(&[], 4), Vec::<Vec<usize>>::new());
}

#[test]
fn elementwise_kernels_match_hand_values() {
    // erf against the f64 reference over [-6, 6]
    let mut worst = 0f64;
    for k in -6000..=6000 {
        let x = k as f64 / 1000.0;
        let r = candle_core::cpu::erf::erf_f64(x);
        worst = worst.max((erf(x as f32) as f64 - r).abs());
    }
    assert!(worst < 1e-6, "erf error {worst}");
    // exp: relative error against f64 over [-87, 88]
    let mut worst = 0f64;
    for k in -8700..=8800 {
        let x = k as f32 / 100.0;
        let r = (x as f64).exp();
        worst = worst.max(((exp(x) as f64 - r) / r).abs());
    }
    assert!(worst < 3e-7, "exp relative error {worst}");
    assert_eq!(exp(0.0), 1.0);
    assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 1e-6);
    assert!((gelu_erf(-1.0) + 0.158_655_3).abs() < 1e-6);
    assert!((gelu_erf(0.5) - 0.345_731_4).abs() < 1e-6);
    let mut x = [1.0, 2.0, 3.0];
    layer_norm_row(&mut x, &[1.0, 1.0, 2.0], &[0.0, 0.5, 0.0], 0.0);
    assert!(max_abs_diff(&x, &[-1.224_744_9, 0.5, 2.449_489_7]) < 1e-6);
    // 19 values: exercises the 8-lane reductions and their tails
    let mut x: Vec<f32> = (1..=19).map(|v| v as f32).collect();
    let (ones, zeros) = (vec![1.0; 19], vec![0.0; 19]);
    layer_norm_row(&mut x, &ones, &zeros, 0.0);
    // mean 10, variance (19^2 - 1) / 12 = 30
    assert!((x[0] + 9.0 / 30f32.sqrt()).abs() < 1e-6 && x[9].abs() < 1e-6);
    let mut s = [0.0, 2f32.ln(), -200.0];
    softmax_row(&mut s);
    assert!(max_abs_diff(&s, &[1.0 / 3.0, 2.0 / 3.0, 0.0]) < 1e-7);
    let mut s: Vec<f32> = (0..19).map(|v| if v == 11 { 1.0 } else { 0.0 }).collect();
    softmax_row(&mut s);
    let e = std::f32::consts::E;
    assert!((s[11] - e / (e + 18.0)).abs() < 1e-7 && (s[0] - 1.0 / (e + 18.0)).abs() < 1e-7);
}

// ---------------------------------------------------------------------------------------
// Vector store
// ---------------------------------------------------------------------------------------

fn toy_dataset(n_users: usize, n_items: usize) -> Dataset {
    Dataset {
        name: "toy".into(),
        user_ids: IdMap::from_external((0..n_users).map(|i| format!("u{i}")).collect()),
        item_ids: IdMap::from_external((0..n_items).map(|i| format!("i{i}")).collect()),
        ..Default::default()
    }
}

fn toy_vectors() -> SemanticVectors {
    SemanticVectors {
        users: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        items: vec![-1.0, 0.5],
        n_users: 3,
        n_items: 1,
        dim: 2,
        model: "m".into(),
        source: "template".into(),
    }
}

/// The same vectors give the same file, byte for byte, from any process: the metadata
/// map is written in sorted key order, not in `HashMap` order (which differs between
/// maps, so five keys rarely come out twice in one order).
#[test]
fn the_same_vectors_give_the_same_file_bytes() {
    let d = tmp("same-bytes");
    let v = toy_vectors();
    let first = d.join("0.safetensors");
    v.save(&first).unwrap();
    let want = std::fs::read(&first).unwrap();
    let header_len = u64::from_le_bytes(want[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&want[8..8 + header_len]).unwrap();
    assert!(
        header.starts_with(r#"{"__metadata__":{"dim":"2","model":"m","n_items":"1","n_users":"3","source":"template"},"items":"#),
        "{header}"
    );
    for i in 1..8 {
        let p = d.join(format!("{i}.safetensors"));
        v.save(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), want, "save {i} differs");
    }
    assert_eq!(SemanticVectors::load(&first).unwrap(), v);
}

#[test]
fn vectors_round_trip_through_safetensors() {
    let d = tmp("store");
    let p = d.join("sub/vectors.safetensors");
    let v = toy_vectors();
    v.save(&p).unwrap();
    // only the file itself: no temporary left behind
    let names: Vec<String> = std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["vectors.safetensors".to_string()]);
    assert_eq!(SemanticVectors::load(&p).unwrap(), v);
    assert_eq!(v.user(2), &[5.0, 6.0]);
    assert_eq!(v.item(0), &[-1.0, 0.5]);

    // tensor names and metadata as documented
    let bytes = std::fs::read(&p).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let m = meta.metadata().clone().unwrap();
    let want: HashMap<String, String> = [
        ("model", "m"),
        ("source", "template"),
        ("dim", "2"),
        ("n_users", "3"),
        ("n_items", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(m, want);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("users").unwrap().shape(), &[3, 2]);
    assert_eq!(st.tensor("items").unwrap().shape(), &[1, 2]);

    let (u, i) = v.to_tensors(&candle_core::Device::Cpu).unwrap();
    assert_eq!(u.dims(), &[3, 2]);
    assert_eq!(i.to_vec2::<f32>().unwrap(), vec![vec![-1.0, 0.5]]);

    assert!(v.check_against(&toy_dataset(3, 1)).is_ok());
    let e = v.check_against(&toy_dataset(3, 2)).unwrap_err().to_string();
    assert!(
        e.contains("3 user rows and 1 item rows") && e.contains("3 users and 2 items"),
        "{e}"
    );
}

#[test]
fn vectors_reject_non_finite_values_naming_the_row() {
    let mut v = toy_vectors();
    v.users[3] = f32::NAN;
    let e = v.check_against(&toy_dataset(3, 1)).unwrap_err().to_string();
    assert!(e.contains("`users` row 1 (column 1) is NaN"), "{e}");
    assert!(v.save(&tmp("nan").join("v.safetensors")).is_err());
    let mut v = toy_vectors();
    v.items[0] = f32::INFINITY;
    let e = v.check_against(&toy_dataset(3, 1)).unwrap_err().to_string();
    assert!(e.contains("`items` row 0 (column 0) is inf"), "{e}");

    // a file edited to hold inf is rejected on load, naming file and row
    let d = tmp("nanload");
    let p = d.join("v.safetensors");
    toy_vectors().save(&p).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let (start, _) = meta.info("items").unwrap().data_offsets;
    let at = 8 + header_len + start + 4; // item row 0, column 1
    bytes[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    std::fs::write(&p, bytes).unwrap();
    let e = SemanticVectors::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("v.safetensors") && e.contains("`items` row 0 (column 1) is inf"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// .npy reader and importers
// ---------------------------------------------------------------------------------------

const FIXTURE_MATRIX: [f32; 6] = [0.5, -1.25, 2.0, 3.0, 1e-3, -7.5];

#[test]
fn npy_reader_reads_numpy_files() {
    for f in ["f8_v1.npy", "f4_v2.npy", "f4_v3.npy"] {
        let a = read_npy(&fixture("embed").join(f)).unwrap();
        assert_eq!(a.shape, vec![2, 3], "{f}");
        assert_eq!(a.data, FIXTURE_MATRIX.to_vec(), "{f}");
    }
    let bytes = write_npy_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(bytes.len() % 64, 16); // header padded to 64 bytes, then 16 data bytes
    let a = parse_npy(&bytes).unwrap();
    assert_eq!((a.shape, a.data), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    let a = parse_npy(&write_npy_f32(&[3], &[1.0, 2.0, 3.0])).unwrap();
    assert_eq!(a.shape, vec![3]);
}

#[test]
fn npy_reader_rejects_what_it_cannot_read() {
    let err = |f: &str| read_npy(&fixture("embed").join(f)).unwrap_err().to_string();
    let e = err("be_f4.npy");
    assert!(
        e.contains("be_f4.npy") && e.contains("dtype `>f4` is not supported"),
        "{e}"
    );
    assert!(err("i8.npy").contains("dtype `<i8` is not supported"));
    assert!(err("fortran.npy").contains("Fortran order"));
    assert!(parse_npy(b"not numpy").unwrap_err().contains("magic"));
    let mut b = write_npy_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    b.truncate(b.len() - 1);
    assert!(parse_npy(&b)
        .unwrap_err()
        .contains("needs 16 bytes of data, found 15"));
}

fn safetensors_file(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| (*n, TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn import_reads_npy_safetensors_and_rlmrec_pickles() {
    let d = tmp("import");
    // 2 users x 3 dims (numpy .npy, float64), 3 items x 3 dims (safetensors)
    let users = fixture("embed/f8_v1.npy");
    let items = d.join("items.safetensors");
    let item_data: Vec<f32> = (0..9).map(|x| x as f32).collect();
    safetensors_file(
        &items,
        &[
            ("embeddings", vec![3, 3], item_data.clone()),
            ("other", vec![1, 1], vec![0.0]),
        ],
    );
    let v = import_vectors(&toy_dataset(2, 3), &users, &items).unwrap();
    assert_eq!((v.n_users, v.n_items, v.dim), (2, 3, 3));
    assert_eq!(v.users, FIXTURE_MATRIX.to_vec());
    assert_eq!(v.items, item_data);
    assert_eq!(v.source, "import:f8_v1.npy,items.safetensors");

    // RLMRec pickles (2x3 float32), and a lone safetensors tensor with another name
    let pkl = fixture("pickle/emb_f32.pkl");
    let lone = d.join("lone.safetensors");
    safetensors_file(&lone, &[("itm", vec![2, 3], FIXTURE_MATRIX.to_vec())]);
    let v = import_vectors(&toy_dataset(2, 2), &pkl, &lone).unwrap();
    assert_eq!(v.items, FIXTURE_MATRIX.to_vec());
    assert_eq!(v.users, vec![0.5, -1.25, 2.0, 3.0, 1e-3, -7.5]);
}

#[test]
fn import_checks_shapes_and_values() {
    let d = tmp("import-bad");
    let users = fixture("embed/f4_v2.npy"); // 2 x 3
    let msg = |ds: Dataset, u: &Path, i: &Path| import_vectors(&ds, u, i).unwrap_err().to_string();

    // row count: both numbers and the file
    let e = msg(toy_dataset(5, 2), &users, &users);
    assert!(
        e.contains("f4_v2.npy") && e.contains("has 2 rows but the dataset has 5 users"),
        "{e}"
    );
    let e = msg(toy_dataset(2, 4), &users, &users);
    assert!(e.contains("has 2 rows but the dataset has 4 items"), "{e}");

    // dimension mismatch between users (3) and items (2)
    let items = fixture("pickle/emb_f64.pkl"); // 3 x 2
    let e = msg(toy_dataset(2, 3), &users, &items);
    assert!(
        e.contains("dimension 3") && e.contains("dimension 2"),
        "{e}"
    );

    // not 2-D
    let flat = d.join("flat.npy");
    std::fs::write(&flat, write_npy_f32(&[6], &FIXTURE_MATRIX)).unwrap();
    let e = msg(toy_dataset(2, 2), &flat, &users);
    assert!(
        e.contains("must be a 2-D array") && e.contains("[6]"),
        "{e}"
    );

    // NaN named by row
    let nan = d.join("nan.npy");
    let mut data = FIXTURE_MATRIX;
    data[4] = f32::NAN;
    std::fs::write(&nan, write_npy_f32(&[2, 3], &data)).unwrap();
    let e = msg(toy_dataset(2, 2), &users, &nan);
    assert!(
        e.contains("nan.npy") && e.contains("item row 1 (column 1) is NaN"),
        "{e}"
    );

    // several tensors, none named `embeddings`
    let many = d.join("many.safetensors");
    safetensors_file(
        &many,
        &[
            ("a", vec![2, 3], FIXTURE_MATRIX.to_vec()),
            ("b", vec![1], vec![1.0]),
        ],
    );
    let e = msg(toy_dataset(2, 2), &users, &many);
    assert!(e.contains("holds 2 tensors (a, b)"), "{e}");

    // unknown extension
    let e = msg(toy_dataset(2, 2), &users, &d.join("x.csv"));
    assert!(e.contains("expected .npy, .safetensors or .pkl"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Profiles -> vectors, resumable
// ---------------------------------------------------------------------------------------

/// A deterministic embedder: `[len, #spaces, 1]`; records every text it is given and can
/// be told to fail on its n-th call.
struct Fake {
    name: String,
    seen: Mutex<Vec<String>>,
    calls: AtomicUsize,
    fail_on_call: Option<usize>,
}

impl Fake {
    fn new(name: &str, fail_on_call: Option<usize>) -> Self {
        Self {
            name: name.into(),
            seen: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            fail_on_call,
        }
    }
    fn vector(t: &str) -> Vec<f32> {
        vec![t.len() as f32, t.matches(' ').count() as f32, 1.0]
    }
    fn seen(&self) -> Vec<String> {
        let mut s = self.seen.lock().unwrap().clone();
        s.sort();
        s
    }
}

impl TextEmbedder for Fake {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn dim(&self) -> usize {
        3
    }
    fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_on_call == Some(call) {
            anyhow::bail!("simulated interruption");
        }
        self.seen.lock().unwrap().extend(texts.iter().cloned());
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
}

fn profile(kind: ProfileKind, id: &str, text: &str) -> Profile {
    Profile {
        kind,
        id: id.into(),
        text: text.into(),
        source: "template".into(),
        model: "template".into(),
        prompt_hash: String::new(),
    }
}

/// 3 users, 2 items; texts of distinct lengths (longest first: u1, i0, u2, i1, u0).
fn toy_profiles() -> Vec<Profile> {
    vec![
        profile(ProfileKind::User, "u0", "a"),
        profile(ProfileKind::Item, "i1", "bb b"),
        profile(ProfileKind::User, "u1", "ccc cc c c"),
        profile(ProfileKind::Item, "i0", "dddd dd d"),
        profile(ProfileKind::User, "u2", "eeeee e"),
    ]
}

fn opts(out: &Path) -> EmbedOptions {
    EmbedOptions {
        chunk_size: 2,
        progress: Some(false),
        ..EmbedOptions::for_output(out)
    }
}

#[test]
fn embed_profiles_puts_rows_in_internal_id_order() {
    let ds = toy_dataset(3, 2);
    let fake = Fake::new("fake", None);
    let v = embed_profiles(&ds, &toy_profiles(), &fake, &EmbedOptions::default()).unwrap();
    assert_eq!((v.n_users, v.n_items, v.dim), (3, 2, 3));
    assert_eq!(v.user(0), Fake::vector("a").as_slice());
    assert_eq!(v.user(1), Fake::vector("ccc cc c c").as_slice());
    assert_eq!(v.user(2), &[7.0, 1.0, 1.0]);
    assert_eq!(v.item(0), Fake::vector("dddd dd d").as_slice());
    assert_eq!(v.item(1), &[4.0, 1.0, 1.0]);
    assert_eq!((v.model.as_str(), v.source.as_str()), ("fake", "template"));
    // default chunk 512: one call
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn embed_profiles_names_missing_profiles() {
    let ds = toy_dataset(4, 3);
    let e = embed_profiles(
        &ds,
        &toy_profiles(),
        &Fake::new("f", None),
        &EmbedOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no profile for 1 items (first: i2) and 1 users (first: u3)"),
        "{e}"
    );
}

#[test]
fn embed_profiles_resumes_after_an_interruption() {
    let d = tmp("resume");
    let out = d.join("vectors.safetensors");
    let ds = toy_dataset(3, 2);
    let profiles = toy_profiles();
    let reference = embed_profiles(
        &ds,
        &profiles,
        &Fake::new("fake", None),
        &EmbedOptions::default(),
    )
    .unwrap();

    // chunks of 2: the second call fails after the first chunk (u1, i0) was cached
    let first = Fake::new("fake", Some(2));
    let e = embed_profiles(&ds, &profiles, &first, &opts(&out)).unwrap_err();
    assert!(format!("{e:#}").contains("simulated interruption"));
    assert!(partial_path(&out).is_file() && !out.exists());

    // a torn record at the end (crash mid-write) is ignored
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(partial_path(&out))
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        b"{\"kind\":\"user\",\"id\":\"u2\",\"sha\":\"00\"}\n\x01\x02",
    )
    .unwrap();
    drop(f);

    // the rerun embeds only the three texts not cached, saves, removes the partial file
    let second = Fake::new("fake", None);
    let v = embed_profiles(&ds, &profiles, &second, &opts(&out)).unwrap();
    assert_eq!(second.seen(), strings(&["a", "bb b", "eeeee e"]));
    assert_eq!(v, reference);
    assert_eq!(SemanticVectors::load(&out).unwrap(), reference);
    assert!(!partial_path(&out).exists());
}

#[test]
fn embed_profiles_recomputes_changed_texts_and_other_models() {
    let d = tmp("resume-changed");
    let out = d.join("v.safetensors");
    let ds = toy_dataset(3, 2);
    let mut profiles = toy_profiles();
    let _ = embed_profiles(&ds, &profiles, &Fake::new("fake", Some(2)), &opts(&out));
    // u1's text changed since: its cached vector no longer counts
    profiles[2].text = "changed".into();
    let second = Fake::new("fake", None);
    let v = embed_profiles(&ds, &profiles, &second, &opts(&out)).unwrap();
    assert_eq!(second.seen(), strings(&["a", "bb b", "changed", "eeeee e"]));
    assert_eq!(v.user(1), Fake::vector("changed").as_slice());

    // a partial cache of another model is discarded
    let _ = embed_profiles(&ds, &profiles, &Fake::new("fake", Some(2)), &opts(&out));
    let other = Fake::new("other-model", None);
    embed_profiles(&ds, &profiles, &other, &opts(&out)).unwrap();
    assert_eq!(other.seen().len(), 5);
    assert_eq!(SemanticVectors::load(&out).unwrap().model, "other-model");
}
