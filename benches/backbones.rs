//! Epoch time of every backbone on one data set (default RLMRec amazon) relative to
//! LightGCN, and for SGL and SimGCL against the same step in PyTorch written as RLMRec
//! writes it (bench/lightgcn_torch.py --model sgl|simgcl), on the same machine in the same
//! run with the same threads. Each darec backbone runs in its own child process so that its
//! peak memory is its own. Prints a markdown table.
//!
//! `cargo bench --bench backbones` — settings from the environment:
//! `DAREC_BENCH_DATASET` (default `amazon`), `DAREC_BENCH_BACKBONES` (default
//! `lightgcn,gccf,sgl,simgcl,dccf,autocf`; each reads `configs/<dataset>-<backbone>.toml`),
//! `DAREC_BENCH_EPOCHS` (2), `DAREC_BENCH_THREADS` (2), `DAREC_TORCH_PYTHON` (as in
//! benches/lightgcn.rs; the PyTorch rows are skipped with a note when torch is missing).

#[path = "support/median.rs"]
mod median_support;
#[path = "support/torch.rs"]
mod torch_support;
use median_support::median;
use torch_support::{env_or, python_with, torch_run};

use darec::config::Config;
use darec::data::load::load_dataset;
use darec::train::{EpochRunner, Model};
use std::process::Command;
use std::time::Instant;

const ONE: &str = "DAREC_BENCH_ONE";

struct Row {
    backbone: String,
    implementation: String,
    epoch_s: f64,
    peak_mib: f64,
}

fn config(dataset: &str, backbone: &str) -> anyhow::Result<Config> {
    let path = format!("configs/{dataset}-{backbone}.toml");
    Config::load(
        Some(std::path::Path::new(&path)),
        &["train.progress=false".into()],
    )
}

/// Child process: times `epochs` epochs of one backbone and prints `epoch_s peak_mib`.
fn run_one(dataset: &str, backbone: &str, epochs: usize) -> anyhow::Result<()> {
    let cfg = config(dataset, backbone)?;
    let ds = load_dataset(&cfg.data)?;
    let mut model = Model::from_config(&cfg, &ds, &candle_core::Device::Cpu)?;
    let mut runner = EpochRunner::new(&model, &ds, &cfg)?;
    let mut times = Vec::new();
    for _ in 0..epochs {
        let t0 = Instant::now();
        runner.run(&mut model)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    eprintln!("darec {backbone}: epochs {times:.3?} s");
    println!(
        "{} {}",
        median(&times),
        darec::run::peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dataset = env_or("DAREC_BENCH_DATASET", "amazon");
    let epochs: usize = env_or("DAREC_BENCH_EPOCHS", "2").parse()?;
    let threads: usize = env_or("DAREC_BENCH_THREADS", "2").parse()?;
    darec::threads::configure(threads)?;
    if let Ok(backbone) = std::env::var(ONE) {
        return run_one(&dataset, &backbone, epochs);
    }
    let backbones = env_or(
        "DAREC_BENCH_BACKBONES",
        "lightgcn,gccf,sgl,simgcl,dccf,autocf",
    );
    let python = python_with("torch");
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for backbone in backbones.split(',') {
        let out = Command::new(&exe).env(ONE, backbone).output()?;
        if !out.status.success() {
            eprintln!(
                "{backbone} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text
            .split_whitespace()
            .map(|s| s.parse::<f64>().unwrap_or(f64::NAN));
        rows.push(Row {
            backbone: backbone.into(),
            implementation: "darec".into(),
            epoch_s: it.next().unwrap_or(f64::NAN),
            peak_mib: it.next().unwrap_or(f64::NAN),
        });
        if backbone != "sgl" && backbone != "simgcl" {
            continue;
        }
        let Some(py) = &python else {
            eprintln!("PyTorch side skipped: no python with torch (set DAREC_TORCH_PYTHON)");
            continue;
        };
        let cfg = config(&dataset, backbone)?;
        let m = &cfg.model;
        let (cl, tau) = if backbone == "sgl" {
            (m.sgl.cl_weight, m.sgl.tau)
        } else {
            (m.simgcl.cl_weight, m.simgcl.tau)
        };
        let dir = cfg.data.resolved_path();
        let out = Command::new(py)
            .args(["bench/lightgcn_torch.py", "--json", "--model", backbone])
            .args(["--layers", &m.layers.to_string()])
            .args(["--keep-rate", &m.keep_rate.to_string()])
            .args(["--reg", &m.reg.to_string()])
            .args(["--cl-weight", &cl.to_string(), "--tau", &tau.to_string()])
            .args(["--eps", &m.simgcl.eps.to_string()])
            .args(["--train", &dir.join("trn.tsv").to_string_lossy()])
            .args(["--test", &dir.join("tst.tsv").to_string_lossy()])
            .args(["--epochs", &epochs.to_string()])
            .args(["--threads", &threads.to_string()])
            .env_remove("GLIBC_TUNABLES")
            .output()?;
        let Some((v, ep)) = torch_run(&out, backbone)? else {
            continue;
        };
        rows.push(Row {
            backbone: backbone.into(),
            implementation: format!("PyTorch {}", v["torch"].as_str().unwrap_or("?")),
            epoch_s: median(&ep),
            peak_mib: v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        });
    }
    println!("\nBackbones on {dataset} (configs/{dataset}-<backbone>.toml), {threads} threads, median of {epochs} epochs\n");
    println!("| backbone | implementation | epoch (s) | vs darec LightGCN | darec's speed-up | peak memory (MiB) |");
    println!("|---|---|---|---|---|---|");
    let lightgcn = rows
        .iter()
        .find(|r| r.backbone == "lightgcn" && r.implementation == "darec")
        .map(|r| r.epoch_s);
    for r in &rows {
        let rel = lightgcn
            .map(|l| format!("{:.1}x", r.epoch_s / l))
            .unwrap_or_default();
        let speedup = match rows
            .iter()
            .find(|d| d.backbone == r.backbone && d.implementation == "darec")
        {
            Some(d) if r.implementation != "darec" => format!("{:.1}x", r.epoch_s / d.epoch_s),
            _ => String::new(),
        };
        println!(
            "| {} | {} | {:.3} | {rel} | {speedup} | {:.0} |",
            r.backbone, r.implementation, r.epoch_s, r.peak_mib
        );
    }
    Ok(())
}
