//! Rough per-part timing of one training step on RLMRec amazon (development aid).
use candle_core::{Device, Tensor, Var};
use darec::backbone::Mode;
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::train::batch::Batch;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let cfg = Config::load(
        None,
        &[
            "data.name=amazon".into(),
            "data.rlmrec_format=\"tsv\"".into(),
            format!(
                "model.backbone=\"{}\"",
                std::env::args().nth(1).unwrap_or("lightgcn".into())
            ),
        ],
    )?;
    let ds = load_dataset(&cfg.data)?;
    let mut model =
        darec::train::Model::build(&cfg, &ds, Box::new(darec::align::NoAlignment), &Device::Cpu)?;
    let mut rng = darec::rng::Rng::new(1);
    let triples: Vec<(u32, u32, u32)> = (0..4096)
        .map(|k| {
            (
                (k * 7 % ds.n_users()) as u32,
                (k * 13 % ds.n_items()) as u32,
                (k * 17 % ds.n_items()) as u32,
            )
        })
        .collect();
    let batch = Batch::new(&triples, ds.n_users(), &Device::Cpu)?;
    let params: Vec<Var> = model.params().into_iter().map(|p| p.1).collect();
    let mut adam = darec::ops::Adam::new(params, Default::default())?;
    let mut t = [0f64; 5];
    let n = 20;
    for _ in 0..n {
        let t0 = Instant::now();
        let ego = model.backbone.ego()?;
        let nodes = model.backbone.encode(&ego, &mut Mode::Train(&mut rng))?;
        let t1 = Instant::now();
        let loss = darec::train::loss::bpr(&nodes, &batch)?;
        let t2 = Instant::now();
        let g = loss.backward()?;
        let t3 = Instant::now();
        adam.step(&g)?;
        let t4 = Instant::now();
        let _ = model.step_losses(&batch, &mut rng)?;
        let t5 = Instant::now();
        for (k, (a, b)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]
            .iter()
            .enumerate()
        {
            t[k] += (*b - *a).as_secs_f64() * 1000.0 / n as f64;
        }
    }
    println!(
        "encode {:.2} ms, bpr {:.2} ms, backward {:.2} ms, adam {:.2} ms, step_losses {:.2} ms",
        t[0], t[1], t[2], t[3], t[4]
    );
    let x = Tensor::zeros((20332, 32), candle_core::DType::F32, &Device::Cpu)?;
    let t0 = Instant::now();
    for _ in 0..20 {
        let _ = (&x + &x)?;
    }
    println!("add [20k,32]: {:.2} ms", t0.elapsed().as_secs_f64() * 50.0);
    Ok(())
}
