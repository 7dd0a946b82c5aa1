//! How much of the gradient that reaches the collaborative embeddings comes from each loss
//! term (issue 13: what limits DaRec's alignment). For a saved run, on a few training
//! batches drawn as training draws them: the norm of each term's gradient with respect to
//! the backbone's layer-0 table (what the optimiser updates), its ratio to BPR's, and its
//! cosine with BPR's gradient. Measured at the run's best weights, and at initialisation
//! (`--init`: the same config, untrained).
//!
//! `cargo run --release --example gradient_share -- runs/<run> [--init] [--batches 5]
//! [--set key=value ...] [--train-epochs N]` (overrides apply to the run's config, e.g.
//! another alignment at initialisation; `--train-epochs` trains that many epochs first, as
//! `darec train` does, and measures after them).
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::rng::Rng;
use darec::step::Batch;
use darec::train::sampler::BprSampler;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().expect("a run directory"));
    let init = args.iter().any(|a| a == "--init");
    // the value after `--name`, parsed, or the default
    let flag = |name: &str, default: usize| -> anyhow::Result<usize> {
        Ok(args
            .iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let n_batches = flag("--batches", 5)?;
    let train_epochs = flag("--train-epochs", 0)?;
    let sets: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--set")
        .map(|w| w[1].clone())
        .collect();
    darec::threads::configure(0)?;
    let cfg = Config::load(Some(&dir.join("config.toml")), &sets)?;
    let ds = load_dataset(&cfg.data)?;
    let dev = candle_core::Device::Cpu;
    let mut model = darec::train::Model::from_config(&cfg, &ds, &dev)?;
    if !init {
        model.load(&dir.join("model.safetensors"))?;
    }
    if train_epochs > 0 {
        let mut runner = darec::train::EpochRunner::new(&model, &ds, &cfg)?;
        for epoch in 1..=train_epochs {
            model.align.start_epoch(epoch);
            runner.run(&mut model)?;
        }
    }
    let table = model
        .backbone
        .params()
        .into_iter()
        .next()
        .expect("a backbone with parameters")
        .1;
    let train_ui = ds.user_items(&ds.train);
    let pairs: Vec<(u32, u32)> = (0..ds.n_users() as u32)
        .flat_map(|u| train_ui.row(u).iter().map(move |&i| (u, i)))
        .collect();
    let sampler = BprSampler::new(pairs, train_ui, ds.n_items())?;
    let triples = sampler.epoch(&mut Rng::new(11));
    let mut rng = Rng::new(12);
    // per term: (sum of norms, sum of cosines with BPR, batches)
    let mut acc: Vec<(String, f64, f64, usize)> = Vec::new();
    for chunk in triples.chunks(cfg.train.batch_size).take(n_batches) {
        let batch = Batch::new(chunk, model.n_users, &dev)?;
        let terms = model.step_losses(&batch, &mut rng)?;
        let mut bpr_grad: Option<Vec<f32>> = None;
        for term in &terms {
            let grads = term.value.backward()?;
            let Some(g) = grads.get(table.as_tensor()) else {
                continue;
            };
            let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
            let norm = g.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            let cos = match &bpr_grad {
                None => 1.0,
                Some(b) => {
                    let bn = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
                    let dot: f64 = b.iter().zip(&g).map(|(&x, &y)| x as f64 * y as f64).sum();
                    dot / (bn * norm).max(1e-30)
                }
            };
            if term.name == "bpr" {
                bpr_grad = Some(g);
            }
            match acc.iter_mut().find(|a| a.0 == term.name) {
                Some(a) => {
                    a.1 += norm;
                    a.2 += cos;
                    a.3 += 1;
                }
                None => acc.push((term.name.clone(), norm, cos, 1)),
            }
        }
    }
    let bpr = acc
        .iter()
        .find(|a| a.0 == "bpr")
        .map(|a| a.1 / a.3 as f64)
        .unwrap_or(f64::NAN);
    println!(
        "\n{} {} ({}), {n_batches} batches of {}\n",
        dir.display(),
        sets.join(" "),
        match (init, train_epochs) {
            (true, 0) => "at initialisation".to_string(),
            (true, n) => format!("after {n} epochs from initialisation"),
            (false, 0) => "best weights".to_string(),
            (false, n) => format!("best weights, then {n} more epochs"),
        },
        cfg.train.batch_size
    );
    println!("| term | gradient norm on the layer-0 table | relative to BPR | cosine with BPR |");
    println!("|---|---|---|---|");
    for (name, norm, cos, n) in &acc {
        let m = norm / *n as f64;
        println!(
            "| {name} | {m:.3e} | {:.3e} | {:.3} |",
            m / bpr,
            cos / *n as f64
        );
    }
    Ok(())
}
