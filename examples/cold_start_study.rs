//! Cold start measured (issue 14): hold out 10% of ML-1M's items from training entirely,
//! train LightGCN, LightGCN + RLMRec-Con and LightGCN + DaRec (the ML-1M-tuned setting) on
//! the rest, then give the held-out items vectors from their text alone and rank them for
//! every test user who has a test interaction with one: R@20 / N@20 over the held-out
//! items, against random and popularity ranking of those items.
//!
//! The semantic vectors are rebuilt for the reduced data set (template profiles; users'
//! profiles list only their remaining training items, so no held-out title leaks into
//! them), embedded with MiniLM. Popularity uses the held-out items' training interactions,
//! which a real cold-start system does not have: it is an oracle reference, not a method.
//!
//! `cargo run --release --example cold_start_study [-- <out dir> [variant ...]]`
//! (default runs/cold-start-study; variants lightgcn, rlmrec_con, darec). Trainings resume.

use candle_core::{Device, Tensor};
use darec::config::Config;
use darec::data::holdout::{sample_fraction, without_items};
use darec::data::load::load_dataset;
use darec::data::UserItems;
use darec::eval::{evaluate, markdown_table, EmbeddingScorer, Metrics, MostPop, Scorer};
use darec::serve::cold_start::{normalize_rows, rescale, text_knn, KNN};
use std::path::PathBuf;

/// Random scores, fixed by a seed.
struct RandomScorer {
    n_items: usize,
    seed: u64,
}

impl Scorer for RandomScorer {
    fn n_items(&self) -> usize {
        self.n_items
    }
    fn score(&self, users: &[u32], out: &mut Vec<f32>) -> anyhow::Result<()> {
        out.clear();
        for &u in users {
            let mut rng = darec::rng::Rng::derive(self.seed ^ u as u64, "random-scores");
            out.extend((0..self.n_items).map(|_| rng.f32()));
        }
        Ok(())
    }
}

fn host(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1()?)
}

fn main() -> anyhow::Result<()> {
    darec::threads::configure(0)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(args.first().map_or("runs/cold-start-study", |s| s.as_str()));
    let variants: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec!["lightgcn".into(), "darec".into(), "rlmrec_con".into()]
    };
    let base = Config::load(
        Some(std::path::Path::new("configs/ml-1m-lightgcn.toml")),
        &["train.progress=false".into()],
    )?;
    let ds = load_dataset(&base.data)?;
    let held = sample_fraction(ds.n_items(), 0.1, base.train.seed, "cold-start-study items");
    let (reduced, kept) = without_items(&ds, &held);
    println!(
        "{} of {} items held out; training interactions {} -> {}",
        held.len(),
        ds.n_items(),
        ds.train.len(),
        reduced.train.len()
    );

    // semantic vectors of the reduced data set (resumable, cached)
    let vectors = out.join("vectors.safetensors");
    let model_dir = darec::config::cache_dir().join("models/all-MiniLM-L6-v2");
    let embedder = darec::text::embed::LocalEmbedder::load(&model_dir)?;
    if !vectors.exists() {
        use darec::text::profile as prof;
        let profiles = out.join("profiles.jsonl");
        prof::write_profiles(
            &reduced,
            &prof::TemplateWriter,
            &profiles,
            &Default::default(),
        )?;
        let ps = prof::read_profiles(&profiles)?;
        let t = std::time::Instant::now();
        darec::text::embed::embed_profiles(
            &reduced,
            &ps,
            &embedder,
            &darec::text::embed::EmbedOptions::for_output(&vectors),
        )?;
        println!(
            "embedded the reduced data set's profiles in {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }
    // the held-out items' own text: their template profiles (title, year, genres)
    let describe = darec::text::profile::template::Describer::new(&ds);
    let texts: Vec<String> = held.iter().map(|&i| describe.item_template(i)).collect();
    use darec::text::TextEmbedder;
    let mut e_l: Vec<f32> = embedder.embed(&texts)?.concat();
    let dl = embedder.dim();
    normalize_rows(&mut e_l, dl);
    let sem = darec::text::embed::SemanticVectors::load(&vectors)?;
    let mut item_sem = sem.items.clone();
    normalize_rows(&mut item_sem, dl);

    // ground truth: test interactions with held-out items, items numbered 0..|held|
    let pos: std::collections::HashMap<u32, u32> = held
        .iter()
        .enumerate()
        .map(|(k, &i)| (i, k as u32))
        .collect();
    let truth_pairs: Vec<(u32, u32)> = ds
        .test
        .iter()
        .filter_map(|&(u, i)| pos.get(&i).map(|&k| (u, k)))
        .collect();
    let truth = UserItems::from_pairs(ds.n_users(), &truth_pairs);
    let none = UserItems::from_pairs(ds.n_users(), &[]);
    let users_with = (0..ds.n_users() as u32)
        .filter(|&u| !truth.row(u).is_empty())
        .count();
    println!(
        "{} test interactions with held-out items, from {users_with} users",
        truth_pairs.len()
    );
    let _ = kept;

    let mut rows: Vec<(String, Metrics)> = Vec::new();
    rows.push((
        "random".into(),
        evaluate(
            &RandomScorer {
                n_items: held.len(),
                seed: 7,
            },
            &truth,
            &[&none],
            &base.eval,
        )?,
    ));
    let full_train: Vec<(u32, u32)> = ds
        .train
        .iter()
        .filter_map(|&(u, i)| pos.get(&i).map(|&k| (u, k)))
        .collect();
    let pop = MostPop::fit(
        &UserItems::from_pairs(ds.n_users(), &full_train),
        held.len(),
    );
    rows.push((
        "popularity (oracle: uses the held-out items' training interactions)".into(),
        evaluate(&pop, &truth, &[&none], &base.eval)?,
    ));

    for v in &variants {
        let mut set = vec![
            "train.progress=false".to_string(),
            format!("align.vectors=\"{}\"", vectors.display()),
        ];
        match v.as_str() {
            "lightgcn" => {}
            "rlmrec_con" => set.push("align.kind=\"rlmrec_con\"".into()),
            "darec" => set.extend([
                "align.kind=\"darec\"".to_string(),
                "align.darec.lambda=0.01".into(),
                "align.darec.k=4".into(),
                "align.darec.n_hat=512".into(),
            ]),
            other => anyhow::bail!("unknown variant `{other}` (lightgcn, rlmrec_con, darec)"),
        }
        let cfg = Config::load(
            Some(std::path::Path::new("configs/ml-1m-lightgcn.toml")),
            &set,
        )?;
        let dir = out.join(v);
        let t = std::time::Instant::now();
        if !dir.join("metrics.json").exists() {
            if dir.join("config.toml").exists() {
                darec::pipeline::resume_run(&dir)?;
            } else {
                darec::pipeline::train_on(&cfg, &reduced, Some(dir.clone()))?;
            }
            println!("{v}: trained in {:.0} s", t.elapsed().as_secs_f64());
        }
        let model = darec::train::Model::from_config(&cfg, &reduced, &Device::Cpu)?;
        model.load(&dir.join("model.safetensors"))?;
        let (users, items) = model.final_embeddings()?;
        let d = users.dim(1)?;
        let items_h = host(&items)?;
        let mean_norm = items_h
            .chunks_exact(d)
            .map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt())
            .sum::<f32>()
            / reduced.n_items() as f32;
        let mut methods: Vec<(String, Vec<f32>)> = Vec::new();
        let knn: Vec<f32> = e_l
            .chunks_exact(dl)
            .flat_map(|q| text_knn(q, &item_sem, dl, &items_h, d, KNN))
            .collect();
        methods.push((format!("{}: text-kNN (k = {KNN})", cfg.label()), knn));
        let t_el = Tensor::from_slice(&e_l, (held.len(), dl), &Device::Cpu)?;
        if let Some(p) = model.align.text_to_collaborative(&t_el)? {
            let mut p = host(&p)?;
            p.chunks_exact_mut(d).for_each(|r| rescale(r, mean_norm));
            methods.push((format!("{}: alignment projection", cfg.label()), p));
        }
        for (name, vecs) in methods {
            let scorer = EmbeddingScorer {
                users: users.clone(),
                items: Tensor::from_vec(vecs, (held.len(), d), &Device::Cpu)?,
            };
            rows.push((name, evaluate(&scorer, &truth, &[&none], &base.eval)?));
        }
    }
    let table = markdown_table(&rows);
    println!(
        "\nRanking the {} held-out items for the {users_with} test users who have one:\n\n{table}",
        held.len()
    );
    darec::run::write_atomic(&out.join("cold-start.md"), table.as_bytes())?;
    Ok(())
}
