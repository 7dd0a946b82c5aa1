//! LightGCN training and evaluation speed: darec against a PyTorch implementation of the
//! same step (bench/lightgcn_torch.py), on the same machine in the same run, both on the
//! same number of threads. Prints a markdown table with the ratios.
//!
//! `cargo bench --bench lightgcn` — settings from the environment:
//! `DAREC_BENCH_DATASETS` (default `amazon,yelp`), `DAREC_BENCH_EPOCHS` (3),
//! `DAREC_BENCH_THREADS` (2), `DAREC_BENCH_TORCH` (PyTorch variants as format/backward,
//! default `csr/symmetric,coo/autograd`: our optimised step and RLMRec's own), `DAREC_TORCH_PYTHON` (default `.venv-bench/bin/python`,
//! else `python3`; the PyTorch side is skipped with a note when torch is not importable).

#[path = "support/median.rs"]
mod median_support;
#[path = "support/torch.rs"]
mod torch_support;
use median_support::median;
use torch_support::{env_or, python_with, torch_run};

use darec::config::Config;
use darec::data::load::load_dataset;
use darec::train::{evaluate_split, EpochRunner, Model};
use std::process::Command;
use std::time::Instant;

struct Row {
    dataset: String,
    implementation: String,
    epoch_s: f64,
    eval_s: f64,
    peak_mib: f64,
}

fn main() -> anyhow::Result<()> {
    let datasets = env_or("DAREC_BENCH_DATASETS", "amazon,yelp");
    let epochs: usize = env_or("DAREC_BENCH_EPOCHS", "3").parse()?;
    let threads: usize = env_or("DAREC_BENCH_THREADS", "2").parse()?;
    let torch_variants = env_or("DAREC_BENCH_TORCH", "csr/symmetric,coo/autograd");
    darec::threads::configure(threads)?;
    let python = python_with("torch");
    let mut rows = Vec::new();
    for name in datasets.split(',') {
        let cfg = Config::load(
            None,
            &[
                format!("data.name=\"{name}\""),
                "train.progress=false".into(),
            ],
        )?;
        let ds = load_dataset(&cfg.data)?;
        let mut model = Model::build(
            &cfg,
            &ds,
            Box::new(darec::align::NoAlignment),
            &candle_core::Device::Cpu,
        )?;
        let mut runner = EpochRunner::new(&model, &ds, &cfg)?;
        let mut times = Vec::new();
        for _ in 0..epochs {
            let t0 = Instant::now();
            runner.run(&mut model)?;
            times.push(t0.elapsed().as_secs_f64());
        }
        let t0 = Instant::now();
        let m = evaluate_split(&model, &ds, "test", &cfg)?;
        let eval_s = t0.elapsed().as_secs_f64();
        eprintln!("darec {name}: epochs {times:.3?} s, eval {eval_s:.3} s, test R@20 after {epochs} epochs {:.4}", m.get("recall@20").unwrap_or(f64::NAN));
        rows.push(Row {
            dataset: name.into(),
            implementation: "darec".into(),
            epoch_s: median(&times),
            eval_s,
            peak_mib: darec::run::peak_rss_mib().unwrap_or(f64::NAN),
        });
        let Some(py) = &python else {
            eprintln!("PyTorch side skipped: no python with torch (set DAREC_TORCH_PYTHON)");
            continue;
        };
        let dir = cfg.data.resolved_path();
        for variant in torch_variants.split(',') {
            let (format, backward) = variant.split_once('/').unwrap_or((variant, "symmetric"));
            let out = Command::new(py)
                .args([
                    "bench/lightgcn_torch.py",
                    "--json",
                    "--layers",
                    &cfg.model.layers.to_string(),
                    "--format",
                    format,
                    "--backward",
                    backward,
                ])
                .args([
                    "--train",
                    &dir.join("trn.tsv").to_string_lossy(),
                    "--test",
                    &dir.join("tst.tsv").to_string_lossy(),
                ])
                .args([
                    "--epochs",
                    &epochs.to_string(),
                    "--threads",
                    &threads.to_string(),
                ])
                // PyTorch runs with glibc's default allocator settings, as users run it
                .env_remove("GLIBC_TUNABLES")
                .output()?;
            let Some((v, ep)) = torch_run(&out, &format!("{name} {variant}"))? else {
                continue;
            };
            rows.push(Row {
                dataset: name.into(),
                implementation: format!(
                    "PyTorch {} ({format}, {backward} backward)",
                    v["torch"].as_str().unwrap_or("?")
                ),
                epoch_s: median(&ep),
                eval_s: v["eval_s"].as_f64().unwrap_or(f64::NAN),
                peak_mib: v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            });
        }
    }
    println!(
        "\nLightGCN (3 layers, d=32, batch 4096), {threads} threads, median of {epochs} epochs\n"
    );
    println!("| dataset | implementation | epoch (s) | full evaluation (s) | peak memory (MiB) | darec's epoch speed-up | darec's eval speed-up |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        let darec = rows
            .iter()
            .find(|d| d.dataset == r.dataset && d.implementation == "darec");
        let (se, sv) = match darec {
            Some(d) if r.implementation != "darec" => (
                format!("{:.2}x", r.epoch_s / d.epoch_s),
                format!("{:.2}x", r.eval_s / d.eval_s),
            ),
            _ => ("".into(), "".into()),
        };
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.0} | {se} | {sv} |",
            r.dataset, r.implementation, r.epoch_s, r.eval_s, r.peak_mib
        );
    }
    Ok(())
}
