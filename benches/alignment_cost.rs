//! What an alignment costs per training epoch, relative to the plain backbone in the same
//! run (issue 13: DaRec at the paper's `N_hat = 4096`, `K` in [4, 8], and each variant
//! kept). One epoch is sampling plus every training step, as `darec train` runs it.
//!
//! `cargo bench --bench alignment_cost` — settings from the environment:
//! `DAREC_BENCH_CONFIG` (default `configs/ml-1m-lightgcn.toml`), `DAREC_BENCH_VECTORS`
//! (default ML-1M's MiniLM template vectors in the cache; random vectors of width 384 when
//! the file is missing, with a note), `DAREC_BENCH_EPOCHS` (2), `DAREC_BENCH_THREADS` (2),
//! `DAREC_BENCH_VARIANTS` (a `;`-separated subset of the labels below).

#[path = "support/median.rs"]
mod median_support;
use median_support::median;

use darec::config::Config;
use darec::data::load::load_dataset;
use darec::train::{EpochRunner, Model};
use std::path::Path;
use std::time::Instant;

/// (label, `;`-separated overrides on top of the base config; `darec.` stands for
/// `align.darec.` and implies `align.kind = "darec"`).
const VARIANTS: &[(&str, &str)] = &[
    ("LightGCN", "align.kind=\"none\""),
    ("RLMRec-Con", "align.kind=\"rlmrec_con\""),
    ("RLMRec-Gen", "align.kind=\"rlmrec_gen\""),
    (
        "DaRec N_hat 512 K 4 (ML-1M tuned)",
        "darec.n_hat=512;darec.k=4",
    ),
    ("DaRec N_hat 4096 K 4", "darec.n_hat=4096;darec.k=4"),
    ("DaRec N_hat 4096 K 8", "darec.n_hat=4096;darec.k=8"),
    (
        "DaRec N_hat 4096 K 4 uni_rows 1024",
        "darec.n_hat=4096;darec.k=4;darec.uni_rows=1024",
    ),
    (
        "DaRec N_hat 4096 K 8 uni_rows 1024",
        "darec.n_hat=4096;darec.k=8;darec.uni_rows=1024",
    ),
    (
        "DaRec N_hat 4096 K 4 linear l_heads uni_rows 1024",
        "darec.n_hat=4096;darec.k=4;darec.uni_rows=1024;darec.l_heads=\"linear\"",
    ),
    (
        "DaRec N_hat 4096 K 8 linear l_heads uni_rows 1024",
        "darec.n_hat=4096;darec.k=8;darec.uni_rows=1024;darec.l_heads=\"linear\"",
    ),
    (
        "DaRec 512/4 centred",
        "darec.n_hat=512;darec.k=4;darec.centred=true",
    ),
    (
        "DaRec 512/4 centred global_all",
        "darec.n_hat=512;darec.k=4;darec.centred=true;darec.global_all=true",
    ),
    (
        "DaRec 512/4 split_nodes centred",
        "darec.n_hat=512;darec.k=4;darec.centred=true;darec.split_nodes=true",
    ),
    (
        "DaRec 512/4 var_floor",
        "darec.n_hat=512;darec.k=4;darec.var_floor=0.15",
    ),
    (
        "DaRec 512/4 score_shared",
        "darec.n_hat=512;darec.k=4;darec.score_shared=true",
    ),
    (
        "DaRec 512/4 plus_con centred",
        "darec.n_hat=512;darec.k=4;darec.centred=true;darec.plus_con=true",
    ),
];

/// The overrides of a variant, with `darec.` expanded.
fn overrides_of(sets: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sets.split(';') {
        match s.strip_prefix("darec.") {
            Some(rest) => {
                if out.is_empty() {
                    out.push("align.kind=\"darec\"".into());
                }
                out.push(format!("align.darec.{rest}"));
            }
            None => out.push(s.to_string()),
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let base = env("DAREC_BENCH_CONFIG", "configs/ml-1m-lightgcn.toml");
    let vectors = env(
        "DAREC_BENCH_VECTORS",
        "@cache/embeddings/ml-1m-template-all-MiniLM-L6-v2.safetensors",
    );
    let epochs: usize = env("DAREC_BENCH_EPOCHS", "2").parse()?;
    let threads: usize = env("DAREC_BENCH_THREADS", "2").parse()?;
    let only = std::env::var("DAREC_BENCH_VARIANTS").ok();
    darec::threads::configure(threads)?;
    darec::alloc::keep_freed_memory();
    let resolved = darec::config::resolve_cache_path(&vectors);
    let random = !resolved.exists();
    if random {
        eprintln!(
            "note: {} is missing (run scripts/fetch_data.sh and darec embed); random 384-d vectors stand in (same cost)",
            resolved.display()
        );
    }
    let mut rows: Vec<(String, f64)> = Vec::new();
    for (label, sets) in VARIANTS {
        if let Some(o) = &only {
            if !o.split(';').any(|l| l.trim() == *label) {
                continue;
            }
        }
        let mut overrides = overrides_of(sets);
        overrides.push("train.progress=false".into());
        overrides.push(format!("align.vectors=\"{vectors}\""));
        let cfg = Config::load(Some(Path::new(&base)), &overrides)?;
        let ds = load_dataset(&cfg.data)?;
        let dev = candle_core::Device::Cpu;
        let mut model = if cfg.align.kind == darec::align::AlignKind::None {
            Model::from_config(&cfg, &ds, &dev)?
        } else if random {
            let mut r = darec::rng::Rng::new(3);
            let mut rand = |n: usize| {
                candle_core::Tensor::from_vec(
                    (0..n * 384).map(|_| r.f32() - 0.5).collect::<Vec<_>>(),
                    (n, 384),
                    &dev,
                )
            };
            let sem = darec::align::SemanticTables::new(rand(ds.n_users())?, rand(ds.n_items())?)?;
            let mut m = Model::build(&cfg, &ds, Box::new(darec::align::NoAlignment), &dev)?;
            let mut rng = darec::rng::Rng::derive(cfg.train.seed, "align-init");
            let (o, e) = (m.backbone.out_dim(), m.backbone.ego_dim());
            m.align = darec::align::build(&cfg.align, Some(sem), o, e, &dev, &mut rng)?;
            m
        } else {
            Model::from_config(&cfg, &ds, &dev)?
        };
        let mut runner = EpochRunner::new(&model, &ds, &cfg)?;
        let mut times = Vec::new();
        for epoch in 1..=epochs {
            model.align.start_epoch(epoch);
            let t0 = Instant::now();
            runner.run(&mut model)?;
            times.push(t0.elapsed().as_secs_f64());
        }
        eprintln!("{label}: epochs {times:.2?} s");
        rows.push((label.to_string(), median(&times)));
    }
    let reference = rows
        .iter()
        .find(|r| r.0 == "LightGCN")
        .map(|r| r.1)
        .unwrap_or(f64::NAN);
    println!(
        "\n{} (batch 4096), {threads} threads, median of {epochs} epochs{}\n",
        base,
        if random { ", random vectors" } else { "" }
    );
    // the added seconds as well as the ratio: LightGCN's memory-bound epoch varies more
    // between days than the alignments' added compute does
    println!(
        "| variant | epoch (s) | relative to LightGCN | added to LightGCN's epoch (s) |\n|---|---|---|---|"
    );
    for (label, s) in &rows {
        println!(
            "| {label} | {s:.2} | {:.2}x | {:.2} |",
            s / reference,
            s - reference
        );
    }
    Ok(())
}
