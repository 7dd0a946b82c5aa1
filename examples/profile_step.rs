//! Rough timing of training steps on RLMRec amazon for a backbone and an alignment, with
//! random 384-d semantic vectors, on one batch drawn as training draws it (development aid;
//! the benchmark is benches/lightgcn.rs).
//! `cargo run --release --example profile_step -- lightgcn darec [dataset] [n_hat]`
//! (`PROFILE_SET="k=v;k2=v2"` adds config overrides, `PROFILE_STEPS` sets the step count)
use candle_core::{Device, Tensor};
use darec::align::{AlignConfig, AlignKind, SemanticTables};
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::rng::Rng;
use darec::step::Batch;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    darec::threads::configure(0)?;
    darec::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let backbone = args.get(1).cloned().unwrap_or("lightgcn".into());
    let align = args.get(2).cloned().unwrap_or("none".into());
    let dataset = args.get(3).cloned().unwrap_or("amazon".into());
    let n_hat: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(4096);
    // PROFILE_SET="model.dccf.cl_weight=0;model.layers=2" adds overrides, e.g. to time a
    // backbone without its auxiliary term.
    let mut sets = vec![
        format!("data.name={dataset}"),
        format!("model.backbone=\"{backbone}\""),
    ];
    sets.extend(
        std::env::var("PROFILE_SET")
            .unwrap_or_default()
            .split(';')
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    let cfg = Config::load(None, &sets)?;
    let ds = load_dataset(&cfg.data)?;
    let dev = Device::Cpu;
    let mut model =
        darec::train::Model::build(&cfg, &ds, Box::new(darec::align::NoAlignment), &dev)?;
    let kind: AlignKind = serde_json::from_str(&format!("\"{align}\""))?;
    if kind != AlignKind::None {
        let mut r = Rng::new(3);
        let mut rand = |n: usize| {
            Tensor::from_vec(
                (0..n * 384).map(|_| r.f32() - 0.5).collect::<Vec<_>>(),
                (n, 384),
                &dev,
            )
        };
        let sem = SemanticTables::new(rand(ds.n_users())?, rand(ds.n_items())?)?;
        // from the config, so PROFILE_SET reaches the alignment's settings too
        let mut acfg = AlignConfig {
            kind,
            ..cfg.align.clone()
        };
        acfg.darec.n_hat = n_hat;
        // PROFILE_OFF=or,uni,global,local switches DaRec terms off to time them one by one.
        let off = std::env::var("PROFILE_OFF").unwrap_or_default();
        acfg.darec.use_or &= !off.contains("or");
        acfg.darec.use_uni &= !off.contains("uni");
        acfg.darec.use_global &= !off.contains("global");
        acfg.darec.use_local &= !off.contains("local");
        let (out_dim, ego_dim) = (model.backbone.out_dim(), model.backbone.ego_dim());
        model.align =
            darec::align::build(&acfg, Some(sem), out_dim, ego_dim, &dev, &mut Rng::new(1))?;
    }
    let mut rng = Rng::new(1);
    // a real batch: the first 4096 triples of a shuffled epoch (repeats as in training)
    let train_ui = ds.user_items(&ds.train);
    let pairs: Vec<(u32, u32)> = (0..ds.n_users() as u32)
        .flat_map(|u| train_ui.row(u).iter().map(move |&i| (u, i)))
        .collect();
    let sampler = darec::train::sampler::BprSampler::new(pairs, train_ui.clone(), ds.n_items())?;
    let triples: Vec<(u32, u32, u32)> = sampler.epoch(&mut Rng::new(2))[..4096].to_vec();
    let batch = Batch::new(&triples, ds.n_users(), &dev)?;
    let params: Vec<_> = model.params().into_iter().map(|p| p.1).collect();
    let mut adam = darec::ops::Adam::new(params, Default::default())?;
    let n: usize = std::env::var("PROFILE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // per step: (forward + losses, backward, adam) in seconds
    let mut steps: Vec<[f64; 3]> = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let terms = model.step_losses(&batch, &mut rng)?;
        let mut total = terms[0].value.clone();
        for t in &terms[1..] {
            total = (total + &t.value)?;
        }
        let t1 = Instant::now();
        let g = total.backward()?;
        let t2 = Instant::now();
        adam.step(&g)?;
        steps.push([
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64(),
        ]);
    }
    // medians are robust to the other tenants of a shared machine; the fastest step shows
    // the uncontended cost
    let median = |k: usize| {
        let mut v: Vec<f64> = steps.iter().map(|s| s[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3
    };
    let fastest = steps
        .iter()
        .map(|s| s.iter().sum::<f64>())
        .fold(f64::INFINITY, f64::min);
    println!(
        "{backbone}+{align}: median forward+losses {:.1} ms, backward {:.1} ms, adam {:.1} ms; fastest step {:.1} ms ({n} steps)",
        median(0),
        median(1),
        median(2),
        fastest * 1e3
    );
    Ok(())
}
