//! How darec's costs grow with the data: `darec data synth` data sets of 1M, 4M, 16M and
//! 64M interactions (RLMRec's random 3:1:1 split), and on each the time to prepare the
//! data, the epoch time of MF and LightGCN in the protocol mode (batches of 4096, dense
//! Adam) and in the large-data mode (MF: `train.optimizer = "lazy_adam"`; LightGCN:
//! `train.steps_per_epoch`; both with `train.sampler = "parallel"`), the time of a
//! validation (full ranking where the users x items matrix is small enough, and on a
//! fixed sample of users beside it) and the peak memory (of the whole run: reading and
//! preparing included); beside them implicit's BPR and ALS iterations and its top-20 for
//! every user on the same training matrix (bench/implicit_scale.py), when a Python with
//! implicit is found. Every darec cell runs in its own child process, so its peak memory
//! is its own. A protocol epoch too long to run whole is timed over steps of its own
//! (after two steps that bring the buffers in) and extrapolated (marked `~`); MF's
//! large-data epoch is timed after a first, untimed one, as implicit's iterations after
//! its first. Prints a markdown table and, per model and mode, how the epoch time grows
//! from the second size to the last.
//!
//! `cargo bench --bench scale` — settings from the environment:
//! `DAREC_SCALE_SIZES` (`1M,4M,16M,64M`), `DAREC_SCALE_THREADS` (2),
//! `DAREC_SCALE_STEPS` (16: LightGCN's `train.steps_per_epoch` in the large-data mode),
//! `DAREC_SCALE_SAMPLE_USERS` (10000), `DAREC_SCALE_TIMED_STEPS` (10: the steps of a
//! protocol epoch that are run, the epoch time extrapolated from them when it has more), `DAREC_SCALE_FULL_EVAL` (2e10: full
//! ranking only where users x items is at most this), `DAREC_SCALE_MODELS`
//! (`mf,lightgcn`), `DAREC_SCALE_MODES` (`protocol,large`), `DAREC_SCALE_IMPLICIT` (1; 0
//! leaves implicit out), `DAREC_IMPLICIT_PYTHON` (`.venv-implicit/bin/python`, then
//! `python3`).
//! Data go to `<cache>/synth/synth-<size>-s1.tsv` (made when missing).

#[path = "support/torch.rs"]
mod torch_support;
use torch_support::env_or;

use darec::config::Config;
use darec::data::load::load_dataset;
use darec::train::{evaluate_split, EpochRunner, Model};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CELL: &str = "DAREC_SCALE_CELL";

fn parse_size(s: &str) -> anyhow::Result<usize> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('M' | 'm') => (&t[..t.len() - 1], 1_000_000.0),
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000.0),
        _ => (t, 1.0),
    };
    Ok((num.parse::<f64>()? * mult) as usize)
}

fn data_path(size: &str) -> PathBuf {
    darec::config::cache_dir()
        .join("synth")
        .join(format!("synth-{}-s1.tsv", size.to_lowercase()))
}

fn config(size: &str, model: &str, mode: &str) -> anyhow::Result<Config> {
    let steps = env_or("DAREC_SCALE_STEPS", "16");
    let sample = env_or("DAREC_SCALE_SAMPLE_USERS", "10000");
    let mut set = vec![
        "data.name=\"synth\"".to_string(),
        format!("data.path=\"{}\"", data_path(size).display()),
        format!("model.backbone=\"{model}\""),
        "train.progress=false".into(),
        format!("eval.sample_users={sample}"),
    ];
    match (model, mode) {
        ("mf", "large") => set.push("train.optimizer=\"lazy_adam\"".into()),
        (_, "large") => set.push(format!("train.steps_per_epoch={steps}")),
        _ => {}
    }
    if mode == "large" {
        set.push("train.sampler=\"parallel\"".into());
    }
    Config::load(None, &set)
}

/// Child process: one (size, model, mode) cell, printed as one JSON line.
fn run_cell(spec: &Value) -> anyhow::Result<()> {
    let size = spec["size"].as_str().unwrap_or("1M");
    let model_name = spec["model"].as_str().unwrap_or("mf");
    let mode = spec["mode"].as_str().unwrap_or("protocol");
    let t0 = Instant::now();
    let backbone = if model_name == "prepare" {
        "mf"
    } else {
        model_name
    };
    let cfg = config(size, backbone, mode)?;
    let ds = load_dataset(&cfg.data)?;
    let prepare_s = t0.elapsed().as_secs_f64();
    let mut out = json!({
        "size": size, "model": model_name, "mode": mode, "prepare_s": prepare_s,
        "users": ds.n_users(), "items": ds.n_items(), "train": ds.train.len(),
    });
    if model_name == "prepare" {
        // the training matrix for implicit: little-endian u32 (user, item) pairs
        let pairs = data_path(size).with_extension("train.u32");
        if !pairs.exists() {
            let mut bytes = Vec::with_capacity(ds.train.len() * 8);
            for &(u, i) in &ds.train {
                bytes.extend_from_slice(&u.to_le_bytes());
                bytes.extend_from_slice(&i.to_le_bytes());
            }
            darec::run::write_atomic(&pairs, &bytes)?;
        }
        out["peak_mib"] = json!(darec::run::peak_rss_mib());
        println!("{out}");
        return Ok(());
    }
    let mut model = Model::from_config(&cfg, &ds, &candle_core::Device::Cpu)?;
    let mut runner = EpochRunner::new(&model, &ds, &cfg)?;
    let steps = runner.steps_per_epoch();
    // the large-data modes run whole epochs; a protocol epoch its first steps
    let timed: usize = match mode {
        "large" => usize::MAX,
        _ => env_or("DAREC_SCALE_TIMED_STEPS", "10").parse()?,
    };
    if timed < steps || model_name == "mf" {
        // the first steps fault the buffers in (implicit's first iteration is reported
        // apart too): an extrapolated epoch is timed after two steps, MF's cheap epoch
        // after a whole one
        let warm = if timed < steps { 2 } else { usize::MAX };
        runner.run_steps(&mut model, warm)?;
    }
    let t1 = Instant::now();
    let sums = runner.run_steps(&mut model, timed)?;
    let elapsed = t1.elapsed().as_secs_f64();
    let run = runner.steps_last_epoch;
    let sample = runner.sample_seconds_last_epoch;
    let epoch_s = sample + (elapsed - sample) * steps as f64 / run as f64;
    out["steps"] = json!(steps);
    out["steps_run"] = json!(run);
    out["batch"] = json!(runner.batch_size());
    out["extrapolated"] = json!(run < steps);
    out["epoch_s"] = json!(epoch_s);
    out["sample_s"] = json!(sample);
    out["loss"] = json!(sums.first().map(|s| s.1 / run as f64));
    let t2 = Instant::now();
    let m = evaluate_split(&model, &ds, "valid", &cfg)?;
    out["eval_sampled_s"] = json!(t2.elapsed().as_secs_f64());
    out["recall_sampled"] = json!(m.get("recall@20"));
    out["recall_se"] = json!(m.se.get("recall@20"));
    let full_max: f64 = env_or("DAREC_SCALE_FULL_EVAL", "2e10").parse()?;
    if (ds.n_users() as f64) * (ds.n_items() as f64) <= full_max {
        let mut full = cfg.clone();
        full.eval.sample_users = 0;
        let t3 = Instant::now();
        let m = evaluate_split(&model, &ds, "valid", &full)?;
        out["eval_full_s"] = json!(t3.elapsed().as_secs_f64());
        out["recall_full"] = json!(m.get("recall@20"));
    }
    out["peak_mib"] = json!(darec::run::peak_rss_mib());
    println!("{out}");
    Ok(())
}

fn implicit_python() -> Option<String> {
    [
        std::env::var("DAREC_IMPLICIT_PYTHON").ok(),
        Some(".venv-implicit/bin/python".into()),
        Some("python3".into()),
    ]
    .into_iter()
    .flatten()
    .find(|py| {
        Command::new(py)
            .args(["-c", "import implicit, threadpoolctl"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

fn child(exe: &Path, spec: Value, threads: usize) -> Option<Value> {
    let t = Instant::now();
    let out = Command::new(exe)
        .env(CELL, spec.to_string())
        .env("DAREC_SCALE_THREADS", threads.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{spec} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'))?;
    eprintln!("{line}  ({:.0} s)", t.elapsed().as_secs_f64());
    serde_json::from_str(line).ok()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn secs(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.0}")
    }
}

fn main() -> anyhow::Result<()> {
    let threads: usize = env_or("DAREC_SCALE_THREADS", "2").parse()?;
    darec::threads::configure(threads)?;
    if let Ok(spec) = std::env::var(CELL) {
        return run_cell(&serde_json::from_str(&spec)?);
    }
    let sizes: Vec<String> = env_or("DAREC_SCALE_SIZES", "1M,4M,16M,64M")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let modes: Vec<String> = env_or("DAREC_SCALE_MODES", "protocol,large")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let with_implicit = env_or("DAREC_SCALE_IMPLICIT", "1") != "0";
    let models: Vec<String> = env_or("DAREC_SCALE_MODELS", "mf,lightgcn")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let exe = std::env::current_exe()?;
    let python = implicit_python();
    let mut rows: Vec<Value> = Vec::new();
    for size in &sizes {
        let path = data_path(size);
        if !path.exists() {
            let opts = darec::data::synth::SynthOptions {
                interactions: parse_size(size)?,
                ..Default::default()
            };
            let r = darec::data::synth::generate(&opts, &path, false)?;
            eprintln!("generated {} in {:.1} s", path.display(), r.seconds);
        }
        let Some(prep) = child(&exe, json!({"size": size, "model": "prepare"}), threads) else {
            continue;
        };
        rows.push(prep.clone());
        for model in &models {
            for mode in modes.iter().map(String::as_str) {
                if let Some(r) = child(
                    &exe,
                    json!({"size": size, "model": model, "mode": mode}),
                    threads,
                ) {
                    rows.push(r);
                }
            }
        }
        if !with_implicit {
            continue;
        }
        let Some(py) = &python else {
            eprintln!("implicit skipped: no Python with implicit (set DAREC_IMPLICIT_PYTHON)");
            continue;
        };
        let users = prep["users"].as_u64().unwrap_or(0);
        let out = Command::new(py)
            .args(["bench/implicit_scale.py", "--pairs"])
            .arg(path.with_extension("train.u32"))
            .args(["--users", &users.to_string()])
            .args(["--items", &prep["items"].as_u64().unwrap_or(0).to_string()])
            .args(["--threads", &threads.to_string()])
            .args([
                "--recommend-users",
                &env_or("DAREC_SCALE_SAMPLE_USERS", "10000"),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().rev().find(|l| l.starts_with('{')) {
            Some(line) if out.status.success() => {
                eprintln!("implicit {size}: {line}");
                let mut v: Value = serde_json::from_str(line)?;
                v["size"] = json!(size);
                v["model"] = json!("implicit");
                rows.push(v);
            }
            _ => eprintln!(
                "implicit {size} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    println!("\nScale on `darec data synth` data (3:1:1 split), {threads} threads; `~`: a protocol epoch timed over its first steps and extrapolated\n");
    println!("| data | train | users x items | what | epoch or iteration (s) | s per 1M train | validation, full (s) | validation, sampled users (s) | R@20 sampled ± se (full) | peak memory (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let size = r["size"].as_str().unwrap_or("?");
        let prep = rows
            .iter()
            .find(|p| p["size"] == r["size"] && p["model"] == "prepare");
        let train = prep.map(|p| f(p, "train")).unwrap_or(f64::NAN);
        let shape = prep
            .map(|p| format!("{} x {}", p["users"], p["items"]))
            .unwrap_or_default();
        let model = r["model"].as_str().unwrap_or("?");
        let per_m = |s: f64| secs(s / (train / 1e6));
        match model {
            "prepare" => println!(
                "| {size} | {train} | {shape} | read + prepare | {} | {} | | | | {:.0} |",
                secs(f(r, "prepare_s")),
                per_m(f(r, "prepare_s")),
                f(r, "peak_mib")
            ),
            "implicit" => {
                for (what, key) in [
                    ("implicit BPR", "bpr_iteration_s"),
                    ("implicit ALS", "als_iteration_s"),
                ] {
                    println!(
                        "| {size} | {train} | {shape} | {what} (factors {}) | {} | {} | | | | |",
                        r["factors"],
                        secs(f(r, key)),
                        per_m(f(r, key))
                    );
                }
                println!(
                    "| {size} | {train} | {shape} | implicit recommend top 20, all users | | | {} | | | |",
                    secs(f(r, "recommend_all_s"))
                );
            }
            _ => {
                let mode = r["mode"].as_str().unwrap_or("?");
                let tilde = if r["extrapolated"].as_bool().unwrap_or(false) {
                    "~"
                } else {
                    ""
                };
                let what = match (model, mode) {
                    ("mf", "large") => "mf, lazy Adam".to_string(),
                    (m, "large") => {
                        format!("{m}, {} steps/epoch (batch {})", r["steps"], r["batch"])
                    }
                    (m, _) => format!("{m}, protocol ({} steps/epoch)", r["steps"]),
                };
                let recall = format!(
                    "{:.4} ± {:.4}{}",
                    f(r, "recall_sampled"),
                    f(r, "recall_se"),
                    r["recall_full"]
                        .as_f64()
                        .map(|v| format!(" ({v:.4})"))
                        .unwrap_or_default()
                );
                println!(
                    "| {size} | {train} | {shape} | {what} | {tilde}{} | {tilde}{} | {} | {} | {recall} | {:.0} |",
                    secs(f(r, "epoch_s")),
                    per_m(f(r, "epoch_s")),
                    secs(f(r, "eval_full_s")),
                    secs(f(r, "eval_sampled_s")),
                    f(r, "peak_mib")
                );
            }
        }
    }
    // growth of the epoch time between the second size and the last, against the data
    if sizes.len() >= 3 {
        let (a, b) = (&sizes[1], &sizes[sizes.len() - 1]);
        println!("\nEpoch time from {a} to {b} against the data (1.0 = linear):\n");
        for model in &models {
            for mode in ["protocol", "large"] {
                let get = |s: &str| {
                    rows.iter()
                        .find(|r| {
                            r["size"] == s && r["model"] == model.as_str() && r["mode"] == mode
                        })
                        .map(|r| f(r, "epoch_s"))
                };
                let train = |s: &str| {
                    rows.iter()
                        .find(|r| r["size"] == s && r["model"] == "prepare")
                        .map(|r| f(r, "train"))
                };
                if let (Some(x), Some(y), Some(tx), Some(ty)) = (get(a), get(b), train(a), train(b))
                {
                    println!(
                        "- {model} {mode}: x{:.1} time for x{:.1} data ({:.2} per unit of data)",
                        y / x,
                        ty / tx,
                        (y / x) / (ty / tx)
                    );
                }
            }
        }
    }
    Ok(())
}
