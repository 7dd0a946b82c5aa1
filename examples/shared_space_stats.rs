//! Spread of DaRec's shared space in a saved run (development aid): mean cosine between
//! random pairs of users and items on each side, and the global and local alignment
//! losses on a node sample. A mean cosine near 1 means the shared parts collapsed.
//! `cargo run --release --example shared_space_stats -- runs/<darec run>`
use darec::config::Config;
use darec::data::load::load_dataset;
use darec::ops::rowwise::l2_normalize;
use darec::ops::similarity::gram_mse;
use darec::rng::Rng;

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("run directory"));
    let cfg = Config::load(Some(&dir.join("config.toml")), &[])?;
    let ds = load_dataset(&cfg.data)?;
    let dev = candle_core::Device::Cpu;
    let model = darec::train::Model::from_config(&cfg, &ds, &dev)?;
    model.load(&dir.join("model.safetensors"))?;
    let ego = model.backbone.ego()?;
    let all = model
        .backbone
        .encode(&ego, &mut darec::backbone::Mode::Eval)?;
    let nodes: Vec<u32> = Rng::new(7)
        .sample_distinct(all.dim(0)?, 2000)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    let idx = candle_core::Tensor::from_slice(&nodes, nodes.len(), &dev)?;
    let e_c = all.index_select(&idx, 0)?;
    let (sh_c, sh_l) = model
        .align
        .shared_space(&e_c, &nodes)?
        .expect("a DaRec run");
    let mean_cos = |t: &candle_core::Tensor| -> anyhow::Result<f32> {
        let n = l2_normalize(t)?;
        let g = n.matmul(&n.t()?)?;
        let k = g.dim(0)? as f32;
        Ok((g.sum_all()?.to_scalar::<f32>()? - k) / (k * (k - 1.0)))
    };
    let (nc, nl) = (l2_normalize(&sh_c)?, l2_normalize(&sh_l)?);
    println!(
        "mean pairwise cosine: e_C {:.4}, collaborative shared {:.4}, language shared {:.4}; \
         global loss (unweighted) {:.6}",
        mean_cos(&e_c)?,
        mean_cos(&sh_c)?,
        mean_cos(&sh_l)?,
        gram_mse(&nc, &nl)?.to_scalar::<f32>()?
    );
    // Where does a collapse come from? Compare each shared head's bias with the part that
    // depends on the input (mean row norm of x W) on the same sample.
    let params: std::collections::HashMap<String, candle_core::Tensor> = model
        .align
        .params()
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect();
    let row_norm = |t: &candle_core::Tensor| -> anyhow::Result<f32> {
        Ok(t.sqr()?.sum(1)?.sqrt()?.mean_all()?.to_scalar::<f32>()?)
    };
    if let (Some(w), Some(b)) = (params.get("c_shared.weight"), params.get("c_shared.bias")) {
        println!(
            "collaborative shared head: mean |e_C W| {:.4}, |b| {:.4}",
            row_norm(&e_c.matmul(w)?)?,
            b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?
        );
    }
    if let (Some(b), Some(out)) = (params.get("l_shared.2.bias"), Some(&sh_l)) {
        let b_norm = b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
        let centred = out.broadcast_sub(b)?;
        println!(
            "language shared head: mean |output - b| {:.4}, |b| {:.4}",
            row_norm(&centred)?,
            b_norm
        );
    }
    Ok(())
}
