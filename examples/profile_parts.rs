//! Per-part timing of a LightGCN step (development aid):
//! `cargo run --release --example profile_parts -- [dataset]` (default RLMRec amazon).
#[path = "support/timing.rs"]
mod timing;
use timing::time;

use candle_core::Device;
use darec::config::Config;
use darec::data::graph::BipartiteGraph;
use darec::data::load::load_dataset;
use darec::ops::adaptive::{adaptive_message, adaptive_message_reference, EdgeIndex};
use darec::ops::edge_attention::{edge_attention, edge_attention_reference, EdgeList};
use darec::ops::{propagate, Combine};
use darec::rng::Rng;
use darec::step::Batch;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    darec::threads::configure(0)?;
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
    let full = g.normalized(false);
    let adj = Arc::new(g.drop_edges(&full, 0.8, &mut rng));
    time("dropout build (incl. keep mask)", n, || {
        std::hint::black_box(g.drop_edges(&full, 0.8, &mut rng));
    });
    let mut rng = Rng::new(2);
    time("keep mask alone", n, || {
        let keep: Vec<bool> = (0..full.nnz() / 2).map(|_| rng.f32() < 0.8).collect();
        std::hint::black_box(keep);
    });
    let xv: Vec<f32> = ego.flatten_all()?.to_vec1()?;
    let mut outv = vec![0f32; xv.len()];
    let label = format!(
        "one spmm ({} nodes, {} stored entries, d=32)",
        adj.n,
        adj.indices.len()
    );
    time(&label, n, || adj.spmm(&xv, 32, &mut outv));
    time("propagate fwd", n, || {
        propagate(&ego, adj.clone(), 3, Combine::Sum).expect("propagate");
    });
    let train_ui = ds.user_items(&ds.train);
    let sampler = darec::train::sampler::BprSampler::new(
        (0..ds.n_users() as u32)
            .flat_map(|u| train_ui.row(u).iter().map(move |&i| (u, i)))
            .collect(),
        train_ui.clone(),
        ds.n_items(),
    )?;
    let mut rng = Rng::new(3);
    let epoch = sampler.epoch(&mut rng);
    let triples = &epoch[..4096.min(epoch.len())];
    let batch = Batch::new(triples, ds.n_users(), &Device::Cpu)?;
    time("propagate+bpr fwd+bwd", n, || {
        let nodes = propagate(&ego, adj.clone(), 3, Combine::Sum).expect("propagate");
        let l = darec::train::loss::bpr(&nodes, &batch).expect("bpr");
        l.backward().expect("backward");
    });
    time("batch", n, || {
        Batch::new(triples, ds.n_users(), &Device::Cpu).expect("batch");
    });
    time("sampling one epoch", 3, || {
        std::hint::black_box(sampler.epoch(&mut rng));
    });
    // DCCF's adaptive-edge message on the full graph, fused against plain candle
    let edges = Arc::new(EdgeIndex::new(Arc::new(full.clone()))?);
    let x = candle_core::Var::from_tensor(&propagate(&ego, adj.clone(), 1, Combine::Last)?)?;
    let e = candle_core::Var::from_tensor(&ego)?;
    time("adaptive message fwd (fused)", n, || {
        adaptive_message(&x, &e, &edges).expect("fwd");
    });
    time("adaptive message fwd+bwd (fused)", n, || {
        let y = adaptive_message(&x, &e, &edges).expect("fwd");
        y.sum_all().unwrap().backward().expect("bwd");
    });
    time("adaptive message fwd+bwd (plain candle)", 5, || {
        let y = adaptive_message_reference(&x, &e, &edges).expect("fwd");
        y.sum_all().unwrap().backward().expect("bwd");
    });
    // AutoCF's graph-transformer layer (4 heads) on the graph's edges, self loops and as
    // many random pairs again: the size of its decoder graph
    let nodes = full.n;
    let mut rows = full.entry_rows();
    let mut cols = full.indices.clone();
    rows.extend(0..nodes as u32);
    cols.extend(0..nodes as u32);
    for _ in 0..full.indices.len() {
        rows.push(rng.uniform_usize(nodes) as u32);
        cols.push(rng.uniform_usize(nodes) as u32);
    }
    let list = Arc::new(EdgeList::new(nodes, &rows, &cols)?);
    let label = format!("edge attention fwd+bwd, {} edges", list.len());
    let v = candle_core::Var::from_tensor(&(&ego * 0.5)?)?;
    time(&format!("{label} (fused)"), n, || {
        let y = edge_attention(&x, &e, &v, &list, 4).expect("fwd");
        y.sum_all().unwrap().backward().expect("bwd");
    });
    time(&format!("{label} (plain candle)"), 5, || {
        let y = edge_attention_reference(&x, &e, &v, &list, 4).expect("fwd");
        y.sum_all().unwrap().backward().expect("bwd");
    });
    Ok(())
}
