//! Per-part timing of a LightGCN step on RLMRec amazon (development aid).
use candle_core::Device;
use darec::config::Config;
use darec::data::graph::BipartiteGraph;
use darec::data::load::load_dataset;
use darec::ops::{propagate, Combine};
use darec::rng::Rng;
use std::sync::Arc;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    darec::alloc::keep_freed_memory();
    let name = std::env::args().nth(1).unwrap_or("amazon".into());
    let cfg = Config::load(None, &[format!("data.name=\"{name}\"")])?;
    let ds = load_dataset(&cfg.data)?;
    let g = BipartiteGraph::from_train(ds.n_users(), ds.n_items(), &ds.user_items(&ds.train));
    let mut rng = Rng::new(1);
    let model =
        darec::train::Model::build(&cfg, &ds, Box::new(darec::align::NoAlignment), &Device::Cpu)?;
    let ego = model.backbone.ego()?;
    let n = 20;
    let t = Instant::now();
    let full = g.normalized(false);
    let mut adj = Arc::new(full.clone());
    for _ in 0..n {
        adj = Arc::new(g.drop_edges(&full, 0.8, &mut rng));
    }
    println!(
        "dropout build (incl. keep mask): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let keep: Vec<bool> = (0..full.nnz() / 2).map(|_| rng.f32() < 0.8).collect();
        std::hint::black_box(keep);
    }
    println!(
        "keep mask alone: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let xv: Vec<f32> = ego.flatten_all()?.to_vec1()?;
    let mut outv = vec![0f32; xv.len()];
    let t = Instant::now();
    for _ in 0..n {
        adj.spmm(&xv, 32, &mut outv);
    }
    println!(
        "one spmm ({} nodes, {} stored entries, d=32): {:.2} ms",
        adj.n,
        adj.indices.len(),
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let _ = propagate(&ego, adj.clone(), 3, Combine::Sum)?;
    }
    println!(
        "propagate fwd: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let triples: Vec<(u32, u32, u32)> = (0..4096)
        .map(|k| {
            (
                (k * 7 % ds.n_users()) as u32,
                (k * 13 % ds.n_items()) as u32,
                (k * 17 % ds.n_items()) as u32,
            )
        })
        .collect();
    let batch = darec::train::batch::Batch::new(&triples, ds.n_users(), &Device::Cpu)?;
    let t = Instant::now();
    for _ in 0..n {
        let nodes = propagate(&ego, adj.clone(), 3, Combine::Sum)?;
        let l = darec::train::loss::bpr(&nodes, &batch)?;
        let _ = l.backward()?;
    }
    println!(
        "propagate+bpr fwd+bwd: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let _ = Batch::new(&triples, ds.n_users(), &Device::Cpu)?;
    }
    println!(
        "batch: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let train_ui = ds.user_items(&ds.train);
    let s = darec::train::sampler::BprSampler::new(
        (0..ds.n_users() as u32)
            .flat_map(|u| train_ui.row(u).iter().map(move |&i| (u, i)))
            .collect(),
        train_ui.clone(),
        ds.n_items(),
    )?;
    let t = Instant::now();
    let _ = s.epoch(&mut rng);
    println!(
        "sampling one epoch: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
use darec::train::batch::Batch;
