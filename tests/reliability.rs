//! Reliability (issue 16): every bad input and fault found by trying darec as a new user
//! would, each kept fixed by a test here: non-finite vectors and losses, mistyped
//! settings, run directories that must not be overwritten, errors that name their cause,
//! kills at every point where a run writes (every resume must end bit-identical to an
//! uninterrupted run), and thousands of mutated input files (an error or a valid data
//! set, never a panic or a hang).

#[path = "support/clustered.rs"]
mod clustered;
#[path = "support/inputs.rs"]
mod inputs;

use darec::config::Config;
use darec::data::load::load_dataset;
use darec::pipeline::{resume_run, train_on};
use darec::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("darec-rel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Settings of a small, quick LightGCN run on the clustered data in `data`.
fn small_run(data: &Path) -> Vec<String> {
    vec![
        "data.name=\"clustered\"".into(),
        "data.format=\"delimited\"".into(),
        format!("data.path=\"{}\"", data.display()),
        "data.delimited.rating_col=2".into(),
        "data.prepare.split=\"random\"".into(),
        "model.backbone=\"lightgcn\"".into(),
        "model.dim=16".into(),
        "model.layers=2".into(),
        "train.batch_size=256".into(),
        "train.max_epochs=9".into(),
        "train.lr=0.01".into(),
        "train.patience=100".into(),
        "train.progress=false".into(),
    ]
}

fn error_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

// ------------------------------------------------------------------ settings

#[test]
fn a_wrong_type_in_a_config_file_names_the_file_line_and_key() {
    let dir = tmpdir("cfgtype");
    let p = dir.join("run.toml");
    std::fs::write(
        &p,
        "[data]\nname = \"ml-100k\"\n\n[train]\nseed = 1\nlr = \"fast\"\n",
    )
    .unwrap();
    let e = error_text(Config::load(Some(&p), &[]));
    assert!(e.contains("run.toml:6"), "{e}");
    assert!(
        e.contains("`train.lr`") && e.contains("expected f64"),
        "{e}"
    );
    // from --set: the key and the override that set it
    let e = error_text(Config::load(None, &["train.lr=fast".into()]));
    assert!(
        e.contains("`train.lr`") && e.contains("--set train.lr=fast"),
        "{e}"
    );
    // a value that starts like TOML must be valid TOML
    let e = error_text(Config::load(None, &["eval.ks=[5,10".into()]));
    assert!(e.contains("not valid TOML") && e.contains("eval.ks"), "{e}");
    // a bare word is still a string
    let c = Config::load(None, &["model.backbone=mf".into()]).unwrap();
    assert_eq!(c.model.backbone, "mf");
}

#[test]
fn non_finite_settings_are_refused() {
    for (set, key) in [
        ("train.lr=inf", "train.lr"),
        ("train.lr=nan", "train.lr"),
        ("model.reg=nan", "model.reg"),
        ("align.darec.lambda=inf", "align.darec.lambda"),
        ("openai.timeout_s=nan", "openai.timeout_s"),
    ] {
        let e = error_text(Config::load(None, &[set.into()]));
        assert!(e.contains(key) && e.contains("finite"), "{set}: {e}");
    }
}

#[test]
fn unknown_early_stopping_metrics_are_refused() {
    let e = error_text(Config::load(None, &["train.metric=\"Recall@20\"".into()]));
    assert!(e.contains("lower case") && e.contains("recall@20"), "{e}");
    let e = error_text(Config::load(None, &["train.metric=\"foo@20\"".into()]));
    assert!(
        e.contains("foo@20") && e.contains("recall, ndcg, precision, hit"),
        "{e}"
    );
    assert!(Config::load(None, &["train.metric=\"recall@7\"".into()]).is_err());
    assert!(Config::load(None, &["train.metric=\"recall\"".into()]).is_err());
    for ok in ["recall@20", "ndcg@10", "precision@5", "hit@20"] {
        Config::load(None, &[format!("train.metric=\"{ok}\"")]).unwrap();
    }
}

#[test]
fn openai_timeouts_and_retries_come_from_the_config() {
    let c = Config::load(
        None,
        &["openai.timeout_s=2.5".into(), "openai.max_retries=1".into()],
    )
    .unwrap();
    let client = c
        .openai
        .with_target("http://127.0.0.1:9/v1#some-model")
        .unwrap();
    assert_eq!((client.timeout_s, client.max_retries), (2.5, 1));
    assert_eq!(client.model, "some-model");
    assert!(Config::load(None, &["openai.timeout_z=1".into()]).is_err());
}

// ------------------------------------------------------------------ inputs

#[test]
fn an_empty_or_header_only_data_file_names_its_path() {
    let dir = tmpdir("empty");
    for (name, text) in [("empty.csv", ""), ("header.csv", "user,item\n")] {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        let cfg = Config::load(
            None,
            &[
                "data.name=\"mine\"".into(),
                "data.format=\"delimited\"".into(),
                format!("data.path=\"{}\"", p.display()),
                "data.delimited.sep=\",\"".into(),
                "data.delimited.has_header=true".into(),
            ],
        )
        .unwrap();
        let e = error_text(load_dataset(&cfg.data));
        assert!(e.contains(name) && e.contains("no interactions"), "{e}");
    }
}

/// Writes vectors for `users` x `items` of width `du` / `di` as a plain safetensors file
/// (no metadata, as another tool would write it), with `bad` put at item row 1, column 0.
fn write_vectors(p: &Path, users: usize, items: usize, du: usize, di: usize, bad: Option<f32>) {
    use candle_core::{Device, Tensor};
    let mut iv = vec![0.5f32; items * di];
    if let Some(b) = bad {
        iv[di] = b;
    }
    let map = std::collections::HashMap::from([
        (
            "users".to_string(),
            Tensor::from_vec(vec![0.25f32; users * du], (users, du), &Device::Cpu).unwrap(),
        ),
        (
            "items".to_string(),
            Tensor::from_vec(iv, (items, di), &Device::Cpu).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&map, p).unwrap();
}

#[test]
fn every_semantic_vector_file_is_checked_naming_file_tensor_and_row() {
    use darec::align::SemanticTables;
    let dir = tmpdir("vectors");
    let dev = candle_core::Device::Cpu;
    let p = dir.join("v.safetensors");
    write_vectors(&p, 3, 4, 8, 8, None);
    assert!(SemanticTables::load(&p, 3, 4, &dev).is_ok());
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        write_vectors(&p, 3, 4, 8, 8, Some(bad));
        let e = error_text(SemanticTables::load(&p, 3, 4, &dev));
        assert!(
            e.contains("v.safetensors") && e.contains("`items` row 1 (column 0)"),
            "{e}"
        );
    }
    write_vectors(&p, 3, 4, 8, 6, None);
    let e = error_text(SemanticTables::load(&p, 3, 4, &dev));
    assert!(
        e.contains("v.safetensors") && e.contains("8 dimensions"),
        "{e}"
    );
    write_vectors(&p, 3, 4, 8, 8, None);
    let e = error_text(SemanticTables::load(&p, 5, 4, &dev));
    assert!(e.contains("v.safetensors") && e.contains("5 users"), "{e}");
}

#[test]
fn darec_training_on_vectors_with_a_nan_stops_with_the_file_named() {
    // used to hang in the local alignment's matching
    let dir = tmpdir("nanvec");
    let data = clustered::write_clustered(&dir, 2, true);
    let mut set = small_run(&data);
    let ds = load_dataset(&Config::load(None, &set).unwrap().data).unwrap();
    let p = dir.join("nan.safetensors");
    write_vectors(&p, ds.n_users(), ds.n_items(), 8, 8, Some(f32::NAN));
    for kind in ["darec", "rlmrec_gen", "rlmrec_con"] {
        set.push(format!("align.kind=\"{kind}\""));
        set.push(format!("align.vectors=\"{}\"", p.display()));
        let cfg = Config::load(None, &set).unwrap();
        let e = error_text(train_on(&cfg, &ds, Some(dir.join(kind))));
        assert!(
            e.contains("nan.safetensors") && e.contains("NaN"),
            "{kind}: {e}"
        );
    }
}

#[test]
fn an_embedding_table_too_large_for_memory_is_an_error_with_its_size() {
    let dir = tmpdir("bigdim");
    let data = clustered::write_clustered(&dir, 2, true);
    let mut set = small_run(&data);
    set.push("model.dim=100000000000".into());
    let cfg = Config::load(None, &set).unwrap();
    let ds = load_dataset(&cfg.data).unwrap();
    let e = error_text(train_on(&cfg, &ds, Some(dir.join("r"))));
    assert!(e.contains("model.dim") && e.contains("GiB"), "{e}");
}

// ------------------------------------------------------------------ training

#[test]
fn divergence_stops_training_naming_epoch_and_term_and_keeps_the_checkpoint() {
    let dir = tmpdir("diverge");
    let data = clustered::write_clustered(&dir, 2, true);
    let mut set = small_run(&data);
    set.push("train.lr=1e30".into());
    let cfg = Config::load(None, &set).unwrap();
    let ds = load_dataset(&cfg.data).unwrap();
    let e = error_text(train_on(&cfg, &ds, Some(dir.join("a"))));
    assert!(
        e.contains("diverged in epoch 1") && e.contains("`bpr` is NaN"),
        "{e}"
    );
    assert!(!dir.join("a/metrics.json").exists(), "no result is written");

    // a run that trained well for 6 epochs, then diverges: the epoch-6 checkpoint stays
    let mut good = small_run(&data);
    good.push("train.max_epochs=6".into());
    let run = dir.join("b");
    train_on(&Config::load(None, &good).unwrap(), &ds, Some(run.clone())).unwrap();
    let ck = std::fs::read_to_string(run.join("checkpoint.json")).unwrap();
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let text = text
        .replace("max_epochs = 6", "max_epochs = 12")
        .replace("lr = 0.01", "lr = 1e30");
    std::fs::write(run.join("config.toml"), text).unwrap();
    let e = error_text(resume_run(&run));
    assert!(
        e.contains("diverged in epoch 7") && e.contains("epoch 6"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("checkpoint.json")).unwrap(),
        ck
    );
}

// ------------------------------------------------------------------ run directories

#[test]
fn an_existing_run_is_never_overwritten_unasked() {
    let dir = tmpdir("overwrite");
    let data = clustered::write_clustered(&dir, 2, true);
    let mut set = small_run(&data);
    set.push("train.max_epochs=3".into());
    let cfg = Config::load(None, &set).unwrap();
    let run = dir.join("run");
    darec::pipeline::train_run(&cfg, Some(run.clone()), false).unwrap();
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let e = error_text(darec::pipeline::train_run(&cfg, Some(run.clone()), false));
    assert!(
        e.contains("already holds a run") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
        log,
        "the old run is untouched"
    );
    // --overwrite clears the directory first: nothing of the old run stays
    std::fs::write(run.join("notes.txt"), "old").unwrap();
    darec::pipeline::train_run(&cfg, Some(run.clone()), true).unwrap();
    assert!(!run.join("notes.txt").exists());
    // a directory that is not a run is refused even with --overwrite
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("thesis.tex"), "keep me").unwrap();
    let e = error_text(darec::pipeline::train_run(&cfg, Some(other.clone()), true));
    assert!(
        e.contains("not a run directory") && e.contains("thesis.tex"),
        "{e}"
    );
    assert!(other.join("thesis.tex").exists());
}

#[test]
fn a_resumed_run_drops_temporaries_and_logs_each_validation_once() {
    let dir = tmpdir("trim");
    let data = clustered::write_clustered(&dir, 2, true);
    let mut set = small_run(&data);
    set.push("train.max_epochs=6".into());
    let cfg = Config::load(None, &set).unwrap();
    let ds = load_dataset(&cfg.data).unwrap();
    let run = dir.join("run");
    train_on(&cfg, &ds, Some(run.clone())).unwrap();
    // what a kill leaves: temporaries, and a validation line written after the checkpoint
    std::fs::write(run.join(".items.json.tmp4242"), "{").unwrap();
    std::fs::write(run.join(".checkpoint-e9.safetensors.tmp"), "x").unwrap();
    let mut log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    log.push_str("{\"epoch\":9,\"split\":\"valid\",\"recall@20\":0.5}\n{\"epoch\":12,\"spl");
    std::fs::write(run.join("metrics.jsonl"), log).unwrap();
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(
        run.join("config.toml"),
        text.replace("max_epochs = 6", "max_epochs = 9"),
    )
    .unwrap();
    resume_run(&run).unwrap();
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    let epochs: Vec<(String, u64)> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["split"].as_str().unwrap().to_string(),
                v["epoch"].as_u64().unwrap(),
            )
        })
        .collect();
    let valid: Vec<u64> = epochs
        .iter()
        .filter(|e| e.0 == "valid")
        .map(|e| e.1)
        .collect();
    assert_eq!(valid, vec![3, 6, 9], "{epochs:?}");
    assert_eq!(epochs.iter().filter(|e| e.0 == "test").count(), 1);
}

/// A run config file of the small run (for the `darec` processes below).
fn small_run_file(dir: &Path, data: &Path, extra: &[&str]) -> PathBuf {
    let mut set = small_run(data);
    set.extend(extra.iter().map(|s| s.to_string()));
    let cfg = Config::load(None, &set).unwrap();
    let p = dir.join("run.toml");
    std::fs::write(&p, cfg.to_toml()).unwrap();
    p
}

/// A directory that another process is writing is refused, by `darec train` with the
/// holder's pid and exit status 75 and by a resume, and nothing is written into it; once
/// the holder ends, both work.
#[test]
fn a_run_directory_in_use_is_refused_until_its_writer_ends() {
    let dir = tmpdir("inuse");
    let data = clustered::write_clustered(&dir, 2, true);
    let config = small_run_file(&dir, &data, &["train.max_epochs=3"]);
    let run = dir.join("run");
    let held = darec::run_lock::RunLock::acquire(&run).unwrap();
    let out = train_cmd(&config, &run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(darec::run_lock::BUSY_EXIT), "{err}");
    assert!(
        err.contains("in use by another darec process")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(!run.join("config.toml").exists(), "nothing written");
    drop(held);
    let ok = train_cmd(&config, &run).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // a finished run's lock is free; a resume of a held run is refused too
    let held = darec::run_lock::RunLock::acquire(&run).unwrap();
    let e = error_text(resume_run(&run));
    assert!(e.contains("in use by another darec process"), "{e}");
    drop(held);
}

/// The `[[variant]]`s of a small comparison on `config`: 2 variants x 2 seeds.
fn small_compare(dir: &Path, config: &Path) -> PathBuf {
    let p = dir.join("compare.toml");
    std::fs::write(
        &p,
        format!(
            "base = \"{}\"\nseeds = [1, 2]\n\n[[variant]]\nname = \"A\"\n\n\
             [[variant]]\nname = \"B\"\nset = [\"model.layers=1\"]\n",
            config.display()
        ),
    )
    .unwrap();
    p
}

/// `darec compare --config <compare> --out <out>`, logging which runs it starts.
fn compare_cmd(compare: &Path, out: &Path) -> Command {
    let mut c = darec_cmd_logging("info");
    c.args(["compare", "--config"])
        .arg(compare)
        .arg("--out")
        .arg(out);
    c
}

/// Lines of a grid process's log that start a run (`training <dir>` or `resuming <dir>`;
/// the grid's own lines, not its children's `resuming after epoch ...`).
fn started_runs(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| {
            l.split_once("darec::experiment::grid: training ")
                .or_else(|| l.split_once("darec::experiment::grid: resuming "))
                .map(|(_, d)| d.trim().to_string())
        })
        .collect()
}

/// Two `darec compare` processes on one grid share its runs out: both succeed, every run
/// is trained by exactly one of them, and both write the same table.
#[test]
fn two_compares_on_one_grid_train_each_run_once() {
    let dir = tmpdir("twocompare");
    let data = clustered::write_clustered(&dir, 2, true);
    let config = small_run_file(&dir, &data, &["train.max_epochs=6"]);
    let compare = small_compare(&dir, &config);
    let out = dir.join("grid");
    let start = || {
        compare_cmd(&compare, &out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // both may reach for the same run at the same moment: one child then finds it locked
    // and hands it back ("took it first"), so starts less hand-backs are the runs trained
    let mut started = started_runs(&a.stderr);
    started.extend(started_runs(&b.stderr));
    let handed_back = [&a, &b]
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .matches("took it first")
                .count()
        })
        .sum::<usize>();
    assert_eq!(started.len() - handed_back, 4, "{started:?}");
    started.sort();
    started.dedup();
    let mut want: Vec<String> = ["a-s1", "a-s2", "b-s1", "b-s2"]
        .iter()
        .map(|r| out.join(r).display().to_string())
        .collect();
    want.sort();
    assert_eq!(started, want, "every run started");
    // one run per directory: each validation logged once, one test line
    for r in &want {
        let log = std::fs::read_to_string(Path::new(r).join("metrics.jsonl")).unwrap();
        let valid = log.lines().filter(|l| l.contains("\"valid\"")).count();
        assert_eq!(valid, 2, "{r}: {log}");
        assert_eq!(log.lines().filter(|l| l.contains("\"test\"")).count(), 1);
    }
    // the children log each validation at the grid's level (their bars are hidden): 4 runs
    // of 2 validations, each from the one process that trained it
    let progress: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| l.contains(": valid recall@20="))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(progress.len(), 8, "{progress:#?}");
    for e in ["epoch 3/6", "epoch 6/6"] {
        assert_eq!(progress.iter().filter(|l| l.contains(e)).count(), 4, "{e}");
    }
    // (the children's own results go to the same stdout before it)
    let table = std::fs::read_to_string(out.join("compare.md")).unwrap();
    for o in [&a, &b] {
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&table),
            "the same table from both"
        );
    }
}

/// A grid passes its `--log` filter to its children as given, not just its level: with
/// `darec::experiment=info,warn` the grid says which runs it starts while the children's
/// per-validation lines (target `darec::train`) stay quiet.
#[test]
fn a_grid_passes_its_log_filter_to_its_children() {
    let dir = tmpdir("logfilter");
    let data = clustered::write_clustered(&dir, 2, true);
    let config = small_run_file(&dir, &data, &["train.max_epochs=3"]);
    let compare = dir.join("compare.toml");
    std::fs::write(
        &compare,
        format!(
            "base = \"{}\"\nseeds = [1]\n\n[[variant]]\nname = \"A\"\n",
            config.display()
        ),
    )
    .unwrap();
    let out = dir.join("grid");
    let run = |filter: &str| {
        let o = darec_cmd_logging(filter)
            .args(["compare", "--config"])
            .arg(&compare)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let quiet = run("darec::experiment=info,warn");
    assert_eq!(started_runs(quiet.as_bytes()).len(), 1, "{quiet}");
    assert!(!quiet.contains(": valid recall@20="), "{quiet}");
    // the same grid at plain `info` (a fresh directory) shows them
    std::fs::remove_dir_all(&out).unwrap();
    let loud = run("info");
    assert_eq!(loud.matches(": valid recall@20=").count(), 1, "{loud}");
}

/// A grid skips a run that another process holds, trains the rest seed-major, then waits;
/// when the holder ends without finishing it, the grid trains it itself.
#[test]
fn a_grid_waits_for_a_held_run_and_takes_it_over_when_left_unfinished() {
    let dir = tmpdir("heldgrid");
    let data = clustered::write_clustered(&dir, 2, true);
    let config = small_run_file(&dir, &data, &["train.max_epochs=3"]);
    let compare = small_compare(&dir, &config);
    let out = dir.join("grid");
    let held_dir = out.join("a-s1");
    let held = darec::run_lock::RunLock::acquire(&held_dir).unwrap();
    let mut child = compare_cmd(&compare, &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let others = ["a-s2", "b-s1", "b-s2"].map(|r| out.join(r).join("metrics.json"));
    let t0 = std::time::Instant::now();
    while !others.iter().all(|p| p.exists()) {
        assert!(
            t0.elapsed().as_secs() < 300,
            "the other runs did not finish"
        );
        assert!(child.try_wait().unwrap().is_none(), "the grid ended early");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the grid waits for the held run"
    );
    assert!(
        !held_dir.join("config.toml").exists(),
        "the held run is untouched"
    );
    drop(held);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("waiting for 1 run(s)"), "{err}");
    assert!(
        held_dir.join("metrics.json").exists(),
        "taken over and finished"
    );
    // the real process trains seed-major (every variant's seed 1, then seed 2), skipping
    // the held run, and takes that one over last
    let want: Vec<String> = ["b-s1", "a-s2", "b-s2", "a-s1"]
        .iter()
        .map(|r| out.join(r).display().to_string())
        .collect();
    assert_eq!(started_runs(&o.stderr), want, "{err}");
}

// ------------------------------------------------------------------ kills

fn darec_cmd() -> Command {
    darec_cmd_logging("warn")
}

/// `darec train --config <config> --out <run>`.
fn train_cmd(config: &Path, run: &Path) -> Command {
    let mut c = darec_cmd();
    c.arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(run);
    c
}

fn darec_cmd_logging(level: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_darec"));
    c.args(["--threads", "1", "--log", level]);
    c.env_remove("DAREC_FAULT_KILL_AT")
        .env_remove("DAREC_FAULT_TRACE");
    c
}

/// `model.safetensors` bytes and the validation/test metrics of a finished run, and the
/// epochs of its validation log lines.
fn outcome(run: &Path) -> (Vec<u8>, serde_json::Value, serde_json::Value, Vec<u64>) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let epochs = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"valid\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    (
        std::fs::read(run.join("model.safetensors")).unwrap(),
        m["test"].clone(),
        m["valid"].clone(),
        epochs,
    )
}

/// Runs `darec train` into `run` until it finishes, killed at `kills` (the n-th kill point
/// of each successive attempt) first; returns how many kills happened.
fn train_through_kills(config: &Path, run: &Path, kills: &[u64]) -> usize {
    let mut killed = 0;
    for attempt in 0..=kills.len() {
        let mut cmd = darec_cmd();
        if run.join("config.toml").exists() {
            cmd.arg("train").arg("--resume").arg(run);
        } else {
            // killed before the run was set up: start it again, as a user would
            cmd.arg("train")
                .arg("--config")
                .arg(config)
                .arg("--out")
                .arg(run);
        }
        if let Some(k) = kills.get(attempt) {
            cmd.env("DAREC_FAULT_KILL_AT", k.to_string());
        }
        let out = cmd.output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        if out.status.signal() == Some(libc_sigkill()) {
            killed += 1;
            continue;
        }
        assert!(
            out.status.success(),
            "attempt {attempt} (kills {kills:?}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if attempt < kills.len() {
            // finished before reaching the kill point: nothing left to kill
            break;
        }
    }
    assert!(
        run.join("metrics.json").exists(),
        "kills {kills:?}: run did not finish"
    );
    killed
}

fn libc_sigkill() -> i32 {
    9
}

#[test]
fn runs_killed_at_every_write_resume_bit_identical() {
    let dir = tmpdir("kills");
    let data = clustered::write_clustered(&dir, 2, true);
    let config = dir.join("run.toml");
    let toml = Config::load(None, &small_run(&data)).unwrap().to_toml();
    std::fs::write(&config, toml).unwrap();

    // the uninterrupted run, and the kill points it passes
    let straight = dir.join("straight");
    let trace = dir.join("trace.txt");
    let out = train_cmd(&config, &straight)
        .env("DAREC_FAULT_TRACE", &trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Test split") && stdout.contains("clustered lightgcn seed"),
        "{stdout}"
    );
    let points: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect();
    for must in [
        "checkpoint tensors written",
        "checkpoint.json written",
        "old checkpoint removed",
        "model written",
        "metrics.json written",
        "log line",
    ] {
        assert!(
            points.iter().any(|p| p == must),
            "no `{must}` point: {points:?}"
        );
    }
    let want = outcome(&straight);

    // killed once at each point; then at each point and again early in the resume
    let n = points.len() as u64;
    let mut kills = 0;
    let mut runs = 0;
    for k in 1..=n {
        let mut plans = vec![vec![k]];
        if k % 4 == 1 {
            plans.push(vec![k, 1 + k % 7]);
        }
        for plan in plans {
            let run = dir.join(format!("k{k}-{}", plan.len()));
            kills += train_through_kills(&config, &run, &plan);
            runs += 1;
            let got = outcome(&run);
            assert!(got.0 == want.0, "kill plan {plan:?}: model differs");
            assert_eq!(got.1, want.1, "kill plan {plan:?}: test metrics differ");
            assert_eq!(
                got.2, want.2,
                "kill plan {plan:?}: validation metrics differ"
            );
            assert_eq!(
                got.3, want.3,
                "kill plan {plan:?}: validation log lines differ"
            );
            std::fs::remove_dir_all(&run).ok();
        }
    }
    println!(
        "kill points in one run: {n}; runs killed and resumed: {runs}; SIGKILLs survived: \
         {kills}; every run bit-identical to the uninterrupted one"
    );
    assert!(kills as u64 >= n, "every point was killed at least once");
}

// ------------------------------------------------------------------ mutated inputs

/// One random mutation of `bytes`: bit flips, byte overwrites, deletions, insertions
/// (random bytes or separators), duplicated or swapped lines, truncation.
fn mutate(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..1 + rng.uniform_usize(4) {
        let len = b.len().max(1);
        let at = rng.uniform_usize(len).min(b.len());
        match rng.uniform_usize(8) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.uniform_usize(8);
            }
            1 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.uniform_usize(256) as u8;
            }
            2 => {
                let end = (at + 1 + rng.uniform_usize(16)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let junk: Vec<u8> = (0..1 + rng.uniform_usize(8))
                    .map(|_| {
                        *[b'\t', b',', b'\n', b'"', b'-', b'9', b'.', b'e', 0, 0xff]
                            .get(rng.uniform_usize(10))
                            .unwrap()
                    })
                    .collect();
                b.splice(at..at, junk);
            }
            4 => b.truncate(at),
            5 => {
                // duplicate a stretch (a repeated line or pickle opcode run)
                let end = (at + 1 + rng.uniform_usize(64)).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
            6 => {
                // a big number where a small one was
                let n = format!("{}", rng.uniform_usize(usize::MAX / 2));
                b.splice(at..at, n.into_bytes());
            }
            _ => {
                let i = rng.uniform_usize(len).min(b.len());
                let j = rng.uniform_usize(len).min(b.len());
                if i < j {
                    b[i..j].reverse();
                }
            }
        }
    }
    b
}

/// Runs `f` on a worker thread: `Ok(true)` if it returned Ok, `Ok(false)` if it returned
/// an error, `Err` with a message on a panic or when it has not returned after `secs`.
fn guarded<F>(f: F, secs: u64) -> Result<bool, String>
where
    F: FnOnce() -> anyhow::Result<()> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(Ok(Ok(()))) => Ok(true),
        Ok(Ok(Err(_))) => Ok(false),
        Ok(Err(_)) => Err("panicked".into()),
        Err(_) => Err(format!("no answer after {secs} s (hang)")),
    }
}

/// A prepared data set must be internally consistent.
fn check_dataset(ds: &darec::data::Dataset) -> anyhow::Result<()> {
    let (nu, ni) = (ds.n_users() as u32, ds.n_items() as u32);
    for (u, i) in ds.train.iter().chain(&ds.valid).chain(&ds.test) {
        anyhow::ensure!(
            *u < nu && *i < ni,
            "id out of range: ({u}, {i}) of {nu} x {ni}"
        );
    }
    anyhow::ensure!(
        !ds.train.is_empty(),
        "a valid data set has training interactions"
    );
    Ok(())
}

struct Target {
    /// Describes the input in the report.
    what: &'static str,
    /// The file that is mutated.
    file: PathBuf,
    /// Reads the (mutated) input in `dir`, whose `file` was replaced.
    read: fn(&Path) -> anyhow::Result<()>,
    /// Files copied unchanged next to it.
    others: Vec<PathBuf>,
    tries: usize,
}

impl Target {
    /// The mutated file's name in the work directory (`x.pkl` for lone pickles).
    fn work_name(&self) -> String {
        if self.others.is_empty() && self.file.extension().is_some_and(|e| e == "pkl") {
            "x.pkl".into()
        } else {
            self.file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        }
    }
}

fn read_recbole_dir(dir: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(
        None,
        &[
            "data.name=\"tiny\"".into(),
            "data.format=\"recbole\"".into(),
            format!("data.path=\"{}\"", dir.display()),
            "data.prepare.user_core=0".into(),
            "data.prepare.item_core=0".into(),
        ],
    )?;
    check_dataset(&load_dataset(&cfg.data)?)
}

fn read_csv(dir: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(
        None,
        &[
            "data.name=\"mine\"".into(),
            "data.format=\"delimited\"".into(),
            format!("data.path=\"{}\"", dir.join("data.csv").display()),
            "data.delimited.sep=\",\"".into(),
            "data.delimited.has_header=true".into(),
            "data.delimited.rating_col=2".into(),
            "data.delimited.timestamp_col=3".into(),
            "data.prepare.user_core=0".into(),
            "data.prepare.item_core=0".into(),
        ],
    )?;
    check_dataset(&load_dataset(&cfg.data)?)
}

fn read_pickle_split(dir: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(
        None,
        &[
            "data.name=\"rl\"".into(),
            "data.format=\"rlmrec\"".into(),
            format!("data.path=\"{}\"", dir.display()),
            "data.rlmrec_format=\"pickle\"".into(),
        ],
    )?;
    check_dataset(&load_dataset(&cfg.data)?)
}

fn read_any_pickle(dir: &Path) -> anyhow::Result<()> {
    let p = dir.join("x.pkl");
    // the generic reader, then the two typed ones: one of them must accept a valid file
    darec::data::pickle::read_pickle(&p)?;
    if darec::data::pickle::read_coo(&p).is_ok() {
        return Ok(());
    }
    darec::data::pickle::read_ndarray(&p)?;
    Ok(())
}

/// The first `n` lines of `src` as a comma-separated file with a header, written to `dst`.
fn csv_from_ml100k(src: &Path, dst: &Path, n: usize) {
    let text = std::fs::read_to_string(src).unwrap();
    let mut out = String::from("user,item,rating,time\n");
    for l in text.lines().skip(1).take(n) {
        out.push_str(&l.split('\t').collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    std::fs::write(dst, out).unwrap();
}

#[test]
fn thousands_of_mutated_input_files_give_an_error_or_a_valid_data_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tmpdir("mutate");
    let fixtures = root.join("tests/fixtures");
    let pk = fixtures.join("pickle");
    let rb = fixtures.join("recbole_tiny");
    let mut targets = vec![
        Target {
            what: "RecBole .inter (fixture)",
            file: rb.join("tiny.inter"),
            read: read_recbole_dir,
            others: vec![rb.join("tiny.item"), rb.join("tiny.user")],
            tries: 800,
        },
        Target {
            what: "RecBole .item (fixture)",
            file: rb.join("tiny.item"),
            read: read_recbole_dir,
            others: vec![rb.join("tiny.inter"), rb.join("tiny.user")],
            tries: 400,
        },
        Target {
            what: "scipy COO pickle (fixture)",
            file: pk.join("coo_f64_i32.pkl"),
            read: read_any_pickle,
            others: vec![],
            tries: 800,
        },
        Target {
            what: "scipy CSR pickle (fixture)",
            file: pk.join("csr_f64.pkl"),
            read: read_any_pickle,
            others: vec![],
            tries: 400,
        },
        Target {
            what: "numpy embedding pickle (fixture)",
            file: pk.join("emb_f32.pkl"),
            read: read_any_pickle,
            others: vec![],
            tries: 400,
        },
    ];
    // real files: ML-100K's RecBole files (first 400 interactions), as RecBole and as CSV,
    // and RLMRec's real amazon validation pickle as one split of three
    if let Some(ml) = inputs::cached("data/ml-100k/ml-100k.inter") {
        let real = dir.join("ml100k-src");
        std::fs::create_dir_all(&real).unwrap();
        let text = std::fs::read_to_string(&ml).unwrap();
        let head: String = text.lines().take(401).map(|l| format!("{l}\n")).collect();
        std::fs::write(real.join("tiny.inter"), head).unwrap();
        std::fs::copy(ml.with_extension("item"), real.join("tiny.item")).unwrap();
        csv_from_ml100k(&ml, &real.join("data.csv"), 400);
        targets.push(Target {
            what: "ML-100K .inter (real, 400 rows)",
            file: real.join("tiny.inter"),
            read: read_recbole_dir,
            others: vec![real.join("tiny.item")],
            tries: 600,
        });
        targets.push(Target {
            what: "ML-100K as CSV (real, 400 rows)",
            file: real.join("data.csv"),
            read: read_csv,
            others: vec![],
            tries: 800,
        });
    }
    if let Some(am) = inputs::shared_rlmrec("amazon") {
        let small = dir.join("amazon-src");
        std::fs::create_dir_all(&small).unwrap();
        for s in ["trn", "val", "tst"] {
            std::fs::copy(am.join("val_mat.pkl"), small.join(format!("{s}_mat.pkl"))).unwrap();
        }
        targets.push(Target {
            what: "RLMRec amazon val_mat.pkl (real, as trn)",
            file: small.join("trn_mat.pkl"),
            read: read_pickle_split,
            others: vec![small.join("val_mat.pkl"), small.join("tst_mat.pkl")],
            tries: 300,
        });
    }

    let mut rng = Rng::new(16);
    let (mut total, mut valid, mut errors) = (0usize, 0usize, 0usize);
    let mut report = Vec::new();
    for t in &targets {
        let original = std::fs::read(&t.file).unwrap();
        let work = dir.join("work");
        // the unmutated input reads (so mutations start from a valid file)
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        for o in &t.others {
            std::fs::copy(o, work.join(o.file_name().unwrap())).unwrap();
        }
        std::fs::write(work.join(t.work_name()), &original).unwrap();
        if let Err(e) = (t.read)(&work) {
            panic!("{}: the unmutated input fails: {e:#}", t.what);
        }
        let (mut ok_here, mut err_here) = (0, 0);
        for n in 0..t.tries {
            let _ = std::fs::remove_dir_all(&work);
            std::fs::create_dir_all(&work).unwrap();
            for o in &t.others {
                std::fs::copy(o, work.join(o.file_name().unwrap())).unwrap();
            }
            let name = t.work_name();
            let bytes = mutate(&mut rng, &original);
            std::fs::write(work.join(&name), &bytes).unwrap();
            let (read, w) = (t.read, work.clone());
            match guarded(move || read(&w), 20) {
                Ok(true) => ok_here += 1,
                Ok(false) => err_here += 1,
                Err(why) => {
                    let keep = dir.join(format!("failing-{name}"));
                    std::fs::write(&keep, &bytes).unwrap();
                    panic!(
                        "{}: mutation {n} {why}; input kept at {}",
                        t.what,
                        keep.display()
                    );
                }
            }
        }
        report.push(format!(
            "{}: {} mutations, {ok_here} valid data sets, {err_here} errors",
            t.what, t.tries
        ));
        total += t.tries;
        valid += ok_here;
        errors += err_here;
    }
    println!("{}", report.join("\n"));
    println!("mutated inputs: {total} ({valid} valid data sets, {errors} clean errors), no panic, no hang");
    assert!(total >= 3000, "{total}");
}
