//! A trainable model: a backbone plus an alignment plug-in, with saving and loading of
//! all their parameters as one safetensors file (`backbone.<name>`, `align.<name>`).

use crate::align::Alignment;
use crate::backbone::{self, Backbone, BuildContext, Mode};
use crate::config::Config;
use crate::data::graph::BipartiteGraph;
use crate::data::Dataset;
use crate::rng::Rng;
use crate::step::Batch;
use crate::step::LossTerm;
use anyhow::Context;
use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub struct Model {
    pub backbone: Box<dyn Backbone>,
    pub align: Box<dyn Alignment>,
    pub n_users: usize,
    pub n_items: usize,
    device: Device,
}

/// Copies of the `[users + items, dim]` table that training holds at once: parameters,
/// gradients, Adam's two moments, the best weights, a checkpoint's copies, and the
/// propagation's per-layer buffers (`layers + 1`), forward and backward.
fn table_copies(layers: usize) -> usize {
    6 + 2 * (layers + 1)
}

/// Refuses a model whose embedding tables cannot fit in the memory this machine has free,
/// with the size it would need, instead of aborting on a failed allocation later.
fn check_memory(cfg: &Config, nodes: usize) -> anyhow::Result<()> {
    let dim = cfg.model.dim;
    let need = (nodes as u128) * (dim as u128) * 4 * table_copies(cfg.model.layers) as u128;
    let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
    let available = crate::run::available_memory_bytes();
    if let Some(avail) = available {
        if need > avail as u128 {
            anyhow::bail!(
                "model.dim = {dim} needs about {:.1} GiB for {nodes} users and items ({} copies of \
                 the {:.2} GiB embedding table: parameters, gradients, Adam's moments, best \
                 weights, propagation buffers), but only {:.1} GiB of memory is available: \
                 lower model.dim",
                gib(need),
                table_copies(cfg.model.layers),
                gib((nodes as u128) * (dim as u128) * 4),
                gib(avail as u128)
            );
        }
    }
    Ok(())
}

impl Model {
    /// Builds the backbone of `cfg` over the training graph of `ds`, initialised from
    /// `train.seed`.
    pub fn build(
        cfg: &Config,
        ds: &Dataset,
        align: Box<dyn Alignment>,
        device: &Device,
    ) -> anyhow::Result<Self> {
        check_memory(cfg, ds.n_users() + ds.n_items())?;
        let train = ds.user_items(&ds.train);
        let graph = Arc::new(BipartiteGraph::from_train(
            ds.n_users(),
            ds.n_items(),
            &train,
        ));
        let mut rng = Rng::derive(cfg.train.seed, "init");
        let ctx = BuildContext {
            n_users: ds.n_users(),
            n_items: ds.n_items(),
            graph,
            device,
            rng: &mut rng,
        };
        let backbone = backbone::build(&cfg.model, ctx)?;
        Ok(Self {
            backbone,
            align,
            n_users: ds.n_users(),
            n_items: ds.n_items(),
            device: device.clone(),
        })
    }

    /// Builds backbone and the configured alignment (`align.kind`, `align.vectors`).
    pub fn from_config(cfg: &Config, ds: &Dataset, device: &Device) -> anyhow::Result<Self> {
        let mut model = Self::build(cfg, ds, Box::new(crate::align::NoAlignment), device)?;
        if cfg.align.kind != crate::align::AlignKind::None {
            let sem = match &cfg.align.vectors {
                Some(p) => Some(crate::align::SemanticTables::load(
                    &crate::cache::resolve_cache_path(p),
                    ds.n_users(),
                    ds.n_items(),
                    device,
                )?),
                None => None,
            };
            let mut rng = Rng::derive(cfg.train.seed, "align-init");
            let (out_dim, ego_dim) = (model.backbone.out_dim(), model.backbone.ego_dim());
            model.align = crate::align::build(&cfg.align, sem, out_dim, ego_dim, device, &mut rng)?;
        }
        Ok(model)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// All parameters, named `backbone.*` and `align.*`.
    pub fn params(&self) -> Vec<(String, Var)> {
        let mut p: Vec<(String, Var)> = self
            .backbone
            .params()
            .into_iter()
            .map(|(n, v)| (format!("backbone.{n}"), v))
            .collect();
        p.extend(
            self.align
                .params()
                .into_iter()
                .map(|(n, v)| (format!("align.{n}"), v)),
        );
        p
    }

    /// The loss terms of one training step (BPR first).
    pub fn step_losses(&mut self, batch: &Batch, rng: &mut Rng) -> anyhow::Result<Vec<LossTerm>> {
        crate::train::forward_losses(self, batch, rng)
    }

    /// `sum ||W||^2` over all parameters.
    pub fn l2_penalty(&self) -> candle_core::Result<Tensor> {
        let mut total = Tensor::zeros((), candle_core::DType::F32, &self.device)?;
        for (_, v) in self.params() {
            total = (total + v.as_tensor().sqr()?.sum_all()?)?;
        }
        Ok(total)
    }

    /// Final user `[U, d]` and item `[I, d]` vectors on the full graph (inference mode), in
    /// the space ranking scores are dot products of (the alignment's score space when it
    /// has one, else the backbone's final embeddings).
    pub fn final_embeddings(&self) -> anyhow::Result<(Tensor, Tensor)> {
        let ego = self.backbone.ego()?;
        let nodes = self.backbone.encode(&ego, &mut Mode::Eval)?;
        let nodes = self.to_score_space(nodes)?;
        Ok((
            nodes.narrow(0, 0, self.n_users)?,
            nodes.narrow(0, self.n_users, self.n_items)?,
        ))
    }

    /// Backbone-space vectors (`[n, d_out]`: final embeddings, fold-in or cold-start
    /// vectors) in the space ranking scores are dot products of.
    pub fn to_score_space(&self, nodes: Tensor) -> anyhow::Result<Tensor> {
        Ok(self.align.score_space(&nodes)?.unwrap_or(nodes))
    }

    /// Copies of all parameter values.
    pub fn snapshot(&self) -> candle_core::Result<Vec<Tensor>> {
        self.params()
            .iter()
            .map(|(_, v)| v.as_tensor().copy())
            .collect()
    }

    pub fn restore(&self, values: &[Tensor]) -> candle_core::Result<()> {
        for ((_, v), t) in self.params().iter().zip(values) {
            v.set(t)?;
        }
        Ok(())
    }

    /// Saves all parameters atomically as safetensors.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tensors: HashMap<String, Tensor> = self
            .params()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        // `.<name>.tmp<pid>` beside it: a resumed run removes what a kill leaves
        let name = path.file_name().context("model path has no file name")?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        candle_core::safetensors::save(&tensors, &tmp)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        crate::fault::point("model written");
        std::fs::rename(&tmp, path)
            .with_context(|| format!("{}: cannot move into place", path.display()))?;
        Ok(())
    }

    /// Loads parameters saved by [`save`](Self::save); names and shapes must match.
    pub fn load(&self, path: &Path) -> anyhow::Result<()> {
        let saved = candle_core::safetensors::load(path, &self.device)
            .with_context(|| format!("{}: cannot read model", path.display()))?;
        for (name, var) in self.params() {
            let t = saved
                .get(&name)
                .with_context(|| format!("{}: parameter `{name}` is missing", path.display()))?;
            if t.shape() != var.shape() {
                anyhow::bail!(
                    "{}: parameter `{name}` has shape {:?}, the model expects {:?} (was the data prepared differently?)",
                    path.display(),
                    t.shape(),
                    var.shape()
                );
            }
            var.set(t)?;
        }
        Ok(())
    }
}
