//! Embedding throughput: darec's [`LocalEmbedder`] (fused CPU encoder, and candle's
//! `BertModel` for reference) against PyTorch sentence-transformers (bench/embed_torch.py)
//! on the same texts, the same number of threads, in the same run. Prints a markdown table
//! with texts/second and the ratio to PyTorch, and the largest difference between the two
//! sides' vectors.
//!
//! Workloads from ML-1M (`Config::for_dataset("ml-1m")`, fetched by scripts/fetch_data.sh):
//! `items`: every item's template profile (`Toy Story (1995). Genres: Animation, ...`, short);
//! `users`: template profiles of the first 500 users listing 10 training items each (long,
//! 150-256 tokens).
//!
//! `cargo bench --bench embed_throughput` — settings from the environment:
//! `DAREC_BENCH_THREADS` (2), `DAREC_EMBED_MODEL` (`.cache/models/all-MiniLM-L6-v2`),
//! `DAREC_EMBED_SETS` (`items,users`), `DAREC_EMBED_BATCH` (32), `DAREC_EMBED_REPEATS` (1,
//! best of), `DAREC_EMBED_CANDLE` (1: also time candle's BertModel; 0: skip),
//! `DAREC_EMBED_TORCH` (1; 0: skip the PyTorch side), `DAREC_TORCH_PYTHON` (default `.venv-bench/bin/python`, else `python3`; the PyTorch side
//! is skipped with a note when sentence-transformers is not importable).

#[path = "support/torch.rs"]
mod torch_support;
use torch_support::{env_or, python_with};

use darec::config::Config;
use darec::data::load::load_dataset;
use darec::data::Dataset;
use darec::text::embed::npy::read_npy;
use darec::text::embed::{Backend, LocalEmbedder};
use darec::text::profile::template::Describer;
use darec::text::TextEmbedder;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn workload(ds: &Dataset, which: &str) -> anyhow::Result<Vec<String>> {
    let d = Describer::new(ds);
    Ok(match which {
        "items" => (0..ds.n_items() as u32)
            .map(|i| d.item_template(i))
            .collect(),
        "users" => {
            let train = ds.user_items(&ds.train);
            (0..ds.n_users().min(500) as u32)
                .map(|u| {
                    let items: Vec<u32> = train.row(u).iter().take(10).copied().collect();
                    d.user_template(u, &items)
                })
                .collect()
        }
        other => anyhow::bail!("unknown workload `{other}` (items, users)"),
    })
}

struct Row {
    set: String,
    implementation: String,
    texts: usize,
    tokens: usize,
    seconds: f64,
    /// CPU seconds (user + system) of the timed pass: less sensitive than wall time to
    /// other processes competing for the cores.
    cpu_seconds: f64,
    note: String,
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // fields after the command name (which is in parentheses and may hold spaces)
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name
    (ticks(11) + ticks(12)) / 100.0
}

/// Best of `repeats` timed passes after a warm-up on 64 texts; returns (wall seconds, CPU
/// seconds of that pass, vectors).
fn time_embed(
    m: &LocalEmbedder,
    texts: &[String],
    repeats: usize,
) -> anyhow::Result<(f64, f64, Vec<Vec<f32>>)> {
    m.embed(&texts[..texts.len().min(64)])?;
    let (mut best, mut best_cpu) = (f64::INFINITY, f64::NAN);
    let mut out = Vec::new();
    for _ in 0..repeats.max(1) {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        out = m.embed(texts)?;
        let s = t0.elapsed().as_secs_f64();
        if s < best {
            (best, best_cpu) = (s, cpu_seconds() - c0);
        }
    }
    Ok((best, best_cpu, out))
}

fn max_diff(a: &[Vec<f32>], b: &[f32], dim: usize) -> f32 {
    a.iter()
        .enumerate()
        .flat_map(|(i, v)| {
            v.iter()
                .zip(&b[i * dim..(i + 1) * dim])
                .map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

#[allow(clippy::too_many_arguments)]
fn run_torch(
    py: &str,
    model: &Path,
    texts_file: &Path,
    out: &Path,
    threads: usize,
    batch: usize,
    repeats: usize,
) -> anyhow::Result<serde_json::Value> {
    let o = Command::new(py)
        .arg("bench/embed_torch.py")
        .args(["--json", "--model", &model.to_string_lossy()])
        .args(["--texts", &texts_file.to_string_lossy()])
        .args(["--out", &out.to_string_lossy()])
        .args(["--threads", &threads.to_string()])
        .args(["--batch-size", &batch.to_string()])
        .args(["--repeats", &repeats.to_string()])
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "PyTorch run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("{}");
    Ok(serde_json::from_str(line)?)
}

fn main() -> anyhow::Result<()> {
    let threads: usize = env_or("DAREC_BENCH_THREADS", "2").parse()?;
    let batch: usize = env_or("DAREC_EMBED_BATCH", "32").parse()?;
    let repeats: usize = env_or("DAREC_EMBED_REPEATS", "1").parse()?;
    let with_candle = env_or("DAREC_EMBED_CANDLE", "1") != "0";
    let model_dir = PathBuf::from(env_or(
        "DAREC_EMBED_MODEL",
        ".cache/models/all-MiniLM-L6-v2",
    ));
    // candle's own matmul reads the same variable as rayon
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    darec::threads::configure(threads)?;

    let cfg = Config::for_dataset("ml-1m")?;
    let ds = load_dataset(&cfg.data)?;
    let t0 = Instant::now();
    let mut m = LocalEmbedder::load(&model_dir)?.with_batch_size(batch);
    eprintln!("darec: model loaded in {:.2} s", t0.elapsed().as_secs_f64());
    let python = if env_or("DAREC_EMBED_TORCH", "1") != "0" {
        python_with("torch, sentence_transformers")
    } else {
        None
    };
    if python.is_none() {
        eprintln!("PyTorch side skipped: no python with torch and sentence-transformers (set DAREC_TORCH_PYTHON)");
    }
    let tmp = std::env::temp_dir().join(format!("darec-embed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;

    let mut rows = Vec::new();
    for set in env_or("DAREC_EMBED_SETS", "items,users").split(',') {
        let texts = workload(&ds, set)?;
        let tokens: usize = m.tokenize(&texts)?.iter().map(Vec::len).sum();
        eprintln!(
            "{set}: {} texts, {:.1} tokens on average (after truncation to {})",
            texts.len(),
            tokens as f64 / texts.len() as f64,
            m.max_len()
        );
        let mut backends = vec![Backend::Fused];
        if with_candle {
            backends.push(Backend::Candle);
        }
        let mut fused_vecs = Vec::new();
        for b in backends {
            m = m.with_backend(b)?;
            let (s, cpu, v) = time_embed(&m, &texts, repeats)?;
            eprintln!(
                "darec {b:?} {set}: {:.2} s, {:.1} texts/s",
                s,
                texts.len() as f64 / s
            );
            rows.push(Row {
                set: set.into(),
                implementation: format!("darec ({b:?})"),
                texts: texts.len(),
                tokens,
                seconds: s,
                cpu_seconds: cpu,
                note: String::new(),
            });
            if b == Backend::Fused {
                fused_vecs = v;
            }
        }
        let Some(py) = &python else { continue };
        let texts_file = tmp.join(format!("{set}.json"));
        std::fs::write(&texts_file, serde_json::to_string(&texts)?)?;
        let out = tmp.join(format!("{set}.npy"));
        match run_torch(py, &model_dir, &texts_file, &out, threads, batch, repeats) {
            Ok(v) => {
                let diff = read_npy(&out)
                    .map(|a| max_diff(&fused_vecs, &a.data, m.dim()))
                    .unwrap_or(f32::NAN);
                eprintln!("pytorch {set}: {v}");
                rows.push(Row {
                    set: set.into(),
                    implementation: format!(
                        "PyTorch {} + sentence-transformers {}",
                        v["torch"].as_str().unwrap_or("?"),
                        v["sentence_transformers"].as_str().unwrap_or("?")
                    ),
                    texts: texts.len(),
                    tokens,
                    seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
                    cpu_seconds: v["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
                    note: format!("max |darec - torch| = {diff:.1e}"),
                });
            }
            Err(e) => eprintln!("{e:#}"),
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);

    println!(
        "\nMiniLM-L6 embedding throughput ({}), {threads} threads, batch {batch}, best of {repeats}\n",
        model_dir.display()
    );
    println!("| texts | implementation | n | tokens/text | wall s | texts/s | vs PyTorch | CPU s | texts/CPU-s | vs PyTorch (CPU) | note |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let torch = rows
            .iter()
            .find(|t| t.set == r.set && t.implementation.starts_with("PyTorch"));
        let ratio = |f: fn(&Row) -> f64| {
            torch.map_or("—".to_string(), |t| format!("{:.2}x", f(t) / f(r)))
        };
        println!(
            "| ML-1M {} | {} | {} | {:.1} | {:.2} | {:.1} | {} | {:.2} | {:.1} | {} | {} |",
            r.set,
            r.implementation,
            r.texts,
            r.tokens as f64 / r.texts as f64,
            r.seconds,
            r.texts as f64 / r.seconds,
            ratio(|x| x.seconds),
            r.cpu_seconds,
            r.texts as f64 / r.cpu_seconds,
            ratio(|x| x.cpu_seconds),
            r.note
        );
    }
    Ok(())
}
