//! Profile writers and cache: template texts, prompts listing only training items,
//! resume after an interrupted run, regeneration on changed prompts, fallback on
//! unparsable answers, and the local SmolLM2 model (tokenizer from GGUF metadata, one
//! real generation), skipped with a note when the model file is missing.

#[path = "support/inputs.rs"]
mod inputs;

use darec::text::profile::gguf_tokenizer::gguf_tokenizer;
use darec::text::profile::prompt::{item_prompt, item_system, parse_summarization, user_system};
use darec::text::profile::smollm::chat_prompt;
use darec::text::profile::template::Describer;
use darec::text::profile::LocalGguf;
use darec::text::ChatRequest;
use std::path::PathBuf;
use std::time::Instant;

fn gguf_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    inputs::require(&p, "run bash scripts/fetch_data.sh")
}

#[test]
fn gguf_tokenizer_round_trips_and_keeps_special_tokens() {
    let Some(path) = gguf_path() else { return };
    let mut f = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let tok = gguf_tokenizer(&content).unwrap();
    for text in [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "  leading spaces, tabs\tand\nnew lines; unicode: café — naïve 東京 🙂",
        "{\"summarization\": \"Fans of film-noir.\", \"reasoning\": \"x\"}",
    ] {
        let enc = tok.encode(text, false).unwrap();
        let back = tok.decode(enc.get_ids(), false).unwrap();
        assert_eq!(back, text);
    }
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    let prompt = chat_prompt("sys", "hi");
    let ids = tok
        .encode(prompt.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids[0], 1, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2, "{ids:?}");
    // smollm pre-tokenizer: digits one by one.
    let ids = tok.encode("1995", false).unwrap().get_ids().to_vec();
    assert_eq!(ids.len(), 4, "{ids:?}");
    eprintln!(
        "ids of chat prompt: {:?}",
        tok.encode(prompt.as_str(), false).unwrap().get_ids()
    );
    eprintln!(
        "tokens: {:?}",
        tok.encode("Hello world, Toy Story!", false)
            .unwrap()
            .get_tokens()
    );
}

/// ML-100K from the download cache, or `None` with a note.
fn ml100k() -> Option<Dataset> {
    let cfg = darec::config::Config::for_dataset("ml-100k").unwrap();
    let mut data = cfg.data.clone();
    data.path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/data/ml-100k")
        .display()
        .to_string();
    match darec::data::load::load_dataset(&data) {
        Ok(ds) => Some(ds),
        Err(e) => inputs::missing(&format!("ML-100K not available ({e:#})")),
    }
}

#[test]
fn smollm2_generates_for_one_ml100k_item() {
    let Some(path) = gguf_path() else { return };
    let Some(ds) = ml100k() else { return };
    let t = Instant::now();
    let m = LocalGguf::load(&path).unwrap();
    let load = t.elapsed().as_secs_f64();
    assert_eq!(m.name(), "smollm2-135m-instruct-q4_1");
    let d = Describer::new(&ds);
    let p = item_prompt(&d, 0, ds.item_ids.external(0));
    let req = ChatRequest {
        system: p.system,
        user: p.user,
        max_tokens: 40,
        temperature: 0.0,
        seed: 1,
    };
    let g = m.generate(&req).unwrap();
    eprintln!(
        "load {load:.2}s; prompt {} tok, prefill {:.2}s; {} tok in {:.2}s ({:.1} tok/s): {}",
        g.prompt_tokens,
        g.prefill_seconds,
        g.generated_tokens,
        g.decode_seconds,
        g.tokens_per_second(),
        g.text
    );
    assert!(g.generated_tokens > 0 && g.generated_tokens <= 40);
    assert!(g.text.starts_with("{\"summarization\": \""), "{}", g.text);
    assert!(
        g.text.len() > "{\"summarization\": \"".len() + 10,
        "{}",
        g.text
    );
}

// ---------------------------------------------------------------------------------------
// Datasets and fake chat models.

use darec::data::{Dataset, Features, IdMap};
use darec::text::profile::{
    read_profiles, write_profiles, ChatWriter, Profile, ProfileKind, ProfileOptions, TemplateWriter,
};
use darec::text::ChatModel;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn features(columns: &[&str], rows: &[&[&str]]) -> Features {
    Features {
        columns: columns.iter().map(|s| s.to_string()).collect(),
        rows: rows
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect(),
    }
}

/// ML-100K-like: 4 items, 3 users; item `4` ("Secret ...") is only in valid/test.
fn ml100k_like() -> Dataset {
    Dataset {
        name: "ml100k-like".into(),
        user_ids: IdMap::from_external(vec!["1".into(), "2".into(), "3".into()]),
        item_ids: IdMap::from_external(vec!["1".into(), "2".into(), "3".into(), "4".into()]),
        item_features: Some(features(
            &["movie_title", "release_year", "class"],
            &[
                &["Toy Story", "1995", "Animation Children's Comedy"],
                &["GoldenEye", "1995", "Action Adventure Thriller"],
                &["unknown", "", ""],
                &["Secret Valid Movie", "1999", "Drama"],
            ],
        )),
        user_features: Some(features(
            &["age", "gender", "occupation", "zip_code"],
            &[
                &["24", "M", "technician", "85711"],
                &["53", "F", "other", "94043"],
                &["", "", "", ""],
            ],
        )),
        train: vec![(0, 0), (0, 1), (1, 1), (1, 2)],
        valid: vec![(0, 3), (2, 3)],
        test: vec![(1, 3), (2, 0)],
    }
}

/// Answers with a JSON summarization derived from the prompt; counts calls; optionally
/// answers some prompts with prose (unparsable) or an error.
struct FakeChat {
    name: String,
    calls: AtomicUsize,
    batches: AtomicUsize,
    requests: Mutex<Vec<ChatRequest>>,
    prose_if_contains: Option<String>,
    fail_if_contains: Option<String>,
}

impl FakeChat {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            calls: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            prose_if_contains: None,
            fail_if_contains: None,
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ChatModel for FakeChat {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn complete_batch(&self, requests: &[ChatRequest]) -> Vec<anyhow::Result<String>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        requests
            .iter()
            .map(|r| {
                self.calls.fetch_add(1, Ordering::SeqCst);
                self.requests.lock().unwrap().push(r.clone());
                let first = r.user.lines().next().unwrap_or("").replace('"', "'");
                if self.fail_if_contains.as_ref().is_some_and(|s| r.user.contains(s)) {
                    anyhow::bail!("server unavailable");
                }
                if self.prose_if_contains.as_ref().is_some_and(|s| r.user.contains(s)) {
                    return Ok("I think many people would like it.".into());
                }
                Ok(format!(
                    "```json\n{{\"summarization\": \"Fans of <{first}>\", \"reasoning\": \"because\"}}\n```"
                ))
            })
            .collect()
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("darec-profiles-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("profiles.jsonl")
}

fn quiet() -> ProfileOptions {
    ProfileOptions {
        progress: Some(false),
        ..ProfileOptions::default()
    }
}

fn texts(ps: &[Profile], kind: ProfileKind) -> Vec<(String, String)> {
    ps.iter()
        .filter(|p| p.kind == kind)
        .map(|p| (p.id.clone(), p.text.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Template writer.

#[test]
fn template_texts_for_ml100k_like_data() {
    let ds = ml100k_like();
    let path = tmp("template");
    let r = write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap();
    assert_eq!(
        (r.items_written, r.users_written, r.reused, r.fallbacks),
        (4, 3, 0, 0)
    );
    let ps = read_profiles(&path).unwrap();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        texts(&ps, ProfileKind::Item),
        vec![
            s(
                "1",
                "Toy Story (1995). Genres: Animation, Children's, Comedy."
            ),
            s(
                "2",
                "GoldenEye (1995). Genres: Action, Adventure, Thriller."
            ),
            s("3", "unknown."),
            s("4", "Secret Valid Movie (1999). Genres: Drama."),
        ]
    );
    assert_eq!(
        texts(&ps, ProfileKind::User),
        vec![
            s(
                "1",
                "A user aged 24, male, occupation: technician. Liked: Toy Story (1995) \
                 [Animation, Children's, Comedy]; GoldenEye (1995) [Action, Adventure, Thriller]."
            ),
            s(
                "2",
                "A user aged 53, female, occupation: other. Liked: GoldenEye (1995) \
                 [Action, Adventure, Thriller]; unknown."
            ),
            s("3", "A user. Liked: no items in the training data."),
        ]
    );
    assert!(ps
        .iter()
        .all(|p| p.source == "template" && p.model == "template"));
    assert!(ps.iter().all(|p| p.prompt_hash.len() == 64));
    // A second run reuses everything and leaves the file byte-identical.
    let before = std::fs::read(&path).unwrap();
    let r = write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap();
    assert_eq!((r.items_written, r.users_written, r.reused), (0, 0, 7));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn template_texts_spell_out_ml1m_codes() {
    let mut ds = ml100k_like();
    ds.item_features = Some(features(
        &["movie_title", "release_year", "genre"],
        &[
            &["Toy Story", "1995.0", "Animation Children's Comedy"],
            &["Heat", "1995", "Action Crime Thriller"],
            &["Fargo", "1996", "Crime Drama Thriller"],
            &["Secret", "1999", "Drama"],
        ],
    ));
    ds.user_features = Some(features(
        &["age", "gender", "occupation", "zip_code"],
        &[
            &["25", "M", "12", "48067"],
            &["1", "F", "10", "70072"],
            &["56", "M", "0", "55117"],
        ],
    ));
    let path = tmp("ml1m");
    write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap();
    let ps = read_profiles(&path).unwrap();
    let users = texts(&ps, ProfileKind::User);
    assert_eq!(
        users[0].1,
        "A user aged 25-34 (ML-1M age code 25), male, occupation: programmer (ML-1M code 12). \
         Liked: Toy Story (1995) [Animation, Children's, Comedy]; Heat (1995) [Action, Crime, Thriller]."
    );
    assert_eq!(
        users[1].1,
        "A user aged under 18 (ML-1M age code 1), female, occupation: K-12 student (ML-1M code 10). \
         Liked: Heat (1995) [Action, Crime, Thriller]; Fargo (1996) [Crime, Drama, Thriller]."
    );
    assert!(users[2].1.starts_with(
        "A user aged 56+ (ML-1M age code 56), male, occupation: other or not specified (ML-1M code 0)."
    ));
    assert_eq!(
        texts(&ps, ProfileKind::Item)[0].1,
        "Toy Story (1995). Genres: Animation, Children's, Comedy."
    );
}

#[test]
fn template_without_features_lists_ids() {
    let mut ds = ml100k_like();
    ds.item_features = None;
    ds.user_features = None;
    let path = tmp("nofeat");
    write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap();
    let ps = read_profiles(&path).unwrap();
    assert_eq!(texts(&ps, ProfileKind::Item)[0].1, "Item 1.");
    assert_eq!(
        texts(&ps, ProfileKind::User)[1].1,
        "A user. Liked: item 2; item 3."
    );
}

// ---------------------------------------------------------------------------------------
// Chat writers.

#[test]
fn user_prompts_list_only_training_items() {
    let ds = ml100k_like();
    let fake = FakeChat::new("fake");
    let path = tmp("train-only");
    let r = write_profiles(&ds, &ChatWriter::new(&fake, "openai"), &path, &quiet()).unwrap();
    assert_eq!((r.items_written, r.users_written, r.fallbacks), (4, 3, 0));
    let reqs = fake.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 7);
    // Items come first, then users; user prompts carry item profiles.
    let users: Vec<&ChatRequest> = reqs
        .iter()
        .filter(|r| r.system == user_system("movie"))
        .collect();
    assert_eq!(users.len(), 3);
    assert!(reqs[..4].iter().all(|r| r.system == item_system("movie")));
    for u in &users {
        assert!(
            !u.user.contains("Secret"),
            "valid/test item leaked: {}",
            u.user
        );
    }
    assert_eq!(
        users[0].user,
        "Demographics: aged 24, male, occupation: technician.\nMovies the user liked:\n\
         1. Toy Story (1995) [Animation, Children's, Comedy]: Fans of <Title: Toy Story>\n\
         2. GoldenEye (1995) [Action, Adventure, Thriller]: Fans of <Title: GoldenEye>"
    );
    assert_eq!(
        reqs[0].user,
        "Title: Toy Story\nYear: 1995\nGenres: Animation, Children's, Comedy"
    );
    let ps = read_profiles(&path).unwrap();
    assert!(ps.iter().all(|p| p.source == "openai" && p.model == "fake"));
    assert_eq!(ps[0].text, "Fans of <Title: Toy Story>");
}

#[test]
fn users_with_many_training_items_list_a_capped_deterministic_sample() {
    let n_items = 30u32;
    let mut ds = ml100k_like();
    ds.item_features = None;
    ds.user_features = None;
    ds.item_ids = IdMap::from_external((0..n_items + 1).map(|i| format!("i{i}")).collect());
    ds.user_ids = IdMap::from_external(vec!["u".into()]);
    ds.train = (0..n_items).map(|i| (0, i)).collect();
    ds.valid = vec![(0, n_items)];
    ds.test = vec![];
    let opts = ProfileOptions {
        max_user_items: 5,
        ..quiet()
    };
    let fake = FakeChat::new("fake");
    write_profiles(&ds, &ChatWriter::new(&fake, "openai"), &tmp("cap"), &opts).unwrap();
    let user_prompt = fake.requests.lock().unwrap().last().unwrap().user.clone();
    let listed: Vec<&str> = user_prompt.lines().skip(1).collect();
    assert_eq!(listed.len(), 5, "{user_prompt}");
    assert!(!user_prompt.contains(&format!("item i{n_items}:")));
    // Same seed, same sample.
    let fake2 = FakeChat::new("fake");
    write_profiles(&ds, &ChatWriter::new(&fake2, "openai"), &tmp("cap2"), &opts).unwrap();
    assert_eq!(
        fake2.requests.lock().unwrap().last().unwrap().user,
        user_prompt
    );
}

#[test]
fn requests_go_out_in_batches() {
    let mut ds = ml100k_like();
    ds.item_features = None;
    ds.item_ids = IdMap::from_external((0..40).map(|i| format!("i{i}")).collect());
    let fake = FakeChat::new("fake");
    let opts = ProfileOptions {
        batch_size: 16,
        ..quiet()
    };
    write_profiles(
        &ds,
        &ChatWriter::new(&fake, "openai"),
        &tmp("batches"),
        &opts,
    )
    .unwrap();
    // 40 items in 16+16+8, 3 users in one batch.
    assert_eq!(fake.calls(), 43);
    assert_eq!(fake.batches.load(Ordering::SeqCst), 4);
}

#[test]
fn resume_generates_only_what_is_missing() {
    let ds = ml100k_like();
    let path = tmp("resume");
    let fake = FakeChat::new("fake");
    write_profiles(&ds, &ChatWriter::new(&fake, "local"), &path, &quiet()).unwrap();
    assert_eq!(fake.calls(), 7);
    let full = std::fs::read(&path).unwrap();
    // Interrupted run: the last profile was half written.
    let text = String::from_utf8(full.clone()).unwrap();
    let last_start = text.trim_end().rfind('\n').unwrap() + 1;
    std::fs::write(&path, &text[..last_start + 20]).unwrap();
    let fake2 = FakeChat::new("fake");
    let r = write_profiles(&ds, &ChatWriter::new(&fake2, "local"), &path, &quiet()).unwrap();
    assert_eq!(fake2.calls(), 1);
    assert_eq!((r.items_written, r.users_written, r.reused), (0, 1, 6));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        full,
        "compacted file equals the full run"
    );
    // Lose the last three lines entirely: three generated.
    let keep: Vec<&str> = text.lines().take(4).collect();
    std::fs::write(&path, keep.join("\n") + "\n").unwrap();
    let fake3 = FakeChat::new("fake");
    write_profiles(&ds, &ChatWriter::new(&fake3, "local"), &path, &quiet()).unwrap();
    assert_eq!(fake3.calls(), 3);
    assert_eq!(std::fs::read(&path).unwrap(), full);
}

#[test]
fn a_bad_line_inside_the_cache_is_an_error_naming_it() {
    let ds = ml100k_like();
    let path = tmp("bad-line");
    write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"kind\": \"item\", \"id\": 3}";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("profiles.jsonl:2:"), "{msg}");
    let err = read_profiles(&path).unwrap_err().to_string();
    assert!(err.contains("profiles.jsonl:2:"), "{err}");
}

#[test]
fn changed_prompts_are_regenerated() {
    let mut ds = ml100k_like();
    let path = tmp("changed");
    let fake = FakeChat::new("fake");
    write_profiles(&ds, &ChatWriter::new(&fake, "openai"), &path, &quiet()).unwrap();
    // GoldenEye's title changes: the item, and both users listing it, are rewritten.
    ds.item_features.as_mut().unwrap().rows[1][0] = "GoldenEye 007".into();
    let fake2 = FakeChat::new("fake");
    let r = write_profiles(&ds, &ChatWriter::new(&fake2, "openai"), &path, &quiet()).unwrap();
    assert_eq!((r.items_written, r.users_written, r.reused), (1, 2, 4));
    let ps = read_profiles(&path).unwrap();
    assert_eq!(ps[1].text, "Fans of <Title: GoldenEye 007>");
    assert_eq!(ps.len(), 7, "compacted: one line per profile");
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 7);
    // Other generation settings or another model: everything is rewritten.
    let fake3 = FakeChat::new("fake");
    let opts = ProfileOptions {
        max_tokens: 99,
        ..quiet()
    };
    write_profiles(&ds, &ChatWriter::new(&fake3, "openai"), &path, &opts).unwrap();
    assert_eq!(fake3.calls(), 7);
    let fake4 = FakeChat::new("other-model");
    write_profiles(&ds, &ChatWriter::new(&fake4, "openai"), &path, &opts).unwrap();
    assert_eq!(fake4.calls(), 7);
}

#[test]
fn unparsable_answers_fall_back_to_the_template() {
    let ds = ml100k_like();
    let path = tmp("fallback");
    let mut fake = FakeChat::new("fake");
    fake.prose_if_contains = Some("GoldenEye".into());
    let r = write_profiles(&ds, &ChatWriter::new(&fake, "local"), &path, &quiet()).unwrap();
    // GoldenEye's item prompt and both users listing it.
    assert_eq!(r.fallbacks, 3);
    let ps = read_profiles(&path).unwrap();
    assert_eq!(ps[1].source, "fallback");
    assert_eq!(
        ps[1].text,
        "GoldenEye (1995). Genres: Action, Adventure, Thriller."
    );
    assert_eq!(ps[0].source, "local");
    let u1 = ps
        .iter()
        .find(|p| p.kind == ProfileKind::User && p.id == "1")
        .unwrap();
    assert_eq!(u1.source, "fallback");
    assert!(u1.text.starts_with("A user aged 24, male"));
    // Fallbacks are cached like any answer: a rerun asks nothing.
    let r = write_profiles(&ds, &ChatWriter::new(&fake, "local"), &path, &quiet()).unwrap();
    assert_eq!((r.reused, r.fallbacks), (7, 0));
}

#[test]
fn a_failed_request_stops_the_run_and_keeps_what_was_written() {
    let ds = ml100k_like();
    let path = tmp("fail");
    let mut fake = FakeChat::new("fake");
    fake.fail_if_contains = Some("technician".into()); // user 1's prompt
    let err = write_profiles(&ds, &ChatWriter::new(&fake, "openai"), &path, &quiet()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("User `1`") && msg.contains("server unavailable"),
        "{msg}"
    );
    // Items and the other two users of the batch were kept.
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 6);
    let fake2 = FakeChat::new("fake");
    let r = write_profiles(&ds, &ChatWriter::new(&fake2, "openai"), &path, &quiet()).unwrap();
    assert_eq!((fake2.calls(), r.reused), (1, 6));
}

#[test]
fn limits_write_the_first_profiles_and_keep_cached_others() {
    let ds = ml100k_like();
    let path = tmp("limits");
    write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap();
    let fake = FakeChat::new("fake");
    let opts = ProfileOptions {
        max_items: Some(2),
        max_users: Some(0),
        ..quiet()
    };
    let r = write_profiles(&ds, &ChatWriter::new(&fake, "local"), &path, &opts).unwrap();
    assert_eq!((r.items_written, r.users_written, fake.calls()), (2, 0, 2));
    let ps = read_profiles(&path).unwrap();
    let sources: Vec<&str> = ps.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(
        sources,
        ["local", "local", "template", "template", "template", "template", "template"]
    );
}

/// The README's sample: SmolLM2 profiles of the first five ML-100K items (greedy, at most
/// 120 tokens), printed with timings. Slow (~30 s); run with `--ignored --nocapture`.
#[test]
#[ignore]
fn smollm2_profiles_of_five_ml100k_items() {
    let Some(path) = gguf_path() else { return };
    let Some(ds) = ml100k() else { return };
    let m = LocalGguf::load(&path).unwrap();
    let d = Describer::new(&ds);
    let (mut toks, mut secs) = (0usize, 0f64);
    for i in 0..5u32 {
        let ext = ds.item_ids.external(i);
        let p = item_prompt(&d, i, ext);
        let req = ChatRequest {
            system: p.system,
            user: p.user.clone(),
            max_tokens: 120,
            temperature: 0.0,
            seed: 0,
        };
        let g = m.generate(&req).unwrap();
        toks += g.generated_tokens;
        secs += g.decode_seconds;
        eprintln!(
            "item {ext} | {} | prompt {} tok, prefill {:.2} s, {} tok in {:.2} s ({:.1} tok/s), parsed: {}\n{}\n",
            p.user.replace('\n', "; "),
            g.prompt_tokens,
            g.prefill_seconds,
            g.generated_tokens,
            g.decode_seconds,
            g.tokens_per_second(),
            parse_summarization(&g.text).is_some(),
            g.text
        );
    }
    eprintln!(
        "overall decode: {toks} tokens in {secs:.2} s = {:.1} tok/s",
        toks as f64 / secs
    );
    // The same through the writer and its cache, plus the first user.
    let cache = tmp("smollm2-five");
    let opts = ProfileOptions {
        max_tokens: 120,
        max_items: Some(5),
        max_users: Some(1),
        ..quiet()
    };
    let r = write_profiles(&ds, &ChatWriter::new(&m, "local"), &cache, &opts).unwrap();
    eprintln!("{r:?}");
    for p in read_profiles(&cache).unwrap() {
        eprintln!("{}", serde_json::to_string(&p).unwrap());
    }
}

#[test]
fn template_profiles_for_ml100k() {
    let Some(ds) = ml100k() else { return };
    let path = tmp("ml100k-template");
    let r = write_profiles(&ds, &TemplateWriter, &path, &quiet()).unwrap();
    assert_eq!(r.items_written, ds.n_items());
    assert_eq!(r.users_written, ds.n_users());
    let ps = read_profiles(&path).unwrap();
    assert_eq!(ps.len(), ds.n_items() + ds.n_users());
    let toy = ps
        .iter()
        .find(|p| p.kind == ProfileKind::Item && p.id == "1")
        .unwrap();
    assert_eq!(
        toy.text,
        "Toy Story (1995). Genres: Animation, Children's, Comedy."
    );
    let u1 = ps
        .iter()
        .find(|p| p.kind == ProfileKind::User && p.id == "1")
        .unwrap();
    assert!(
        u1.text
            .starts_with("A user aged 24, male, occupation: technician. Liked: "),
        "{}",
        u1.text
    );
    eprintln!(
        "ML-100K template: {} items + {} users in {:.2} s; user 1: {}",
        ds.n_items(),
        ds.n_users(),
        r.seconds,
        u1.text
    );
}
