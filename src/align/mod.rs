//! Alignment plug-ins between collaborative embeddings and language-model embeddings
//! (RLMRec-Con/Gen, DaRec). An alignment may rewrite layer-0 embeddings before the
//! backbone propagates them and adds loss terms computed from the final embeddings; it
//! never needs to know which backbone it is attached to.

pub mod darec;
pub mod hungarian;
pub mod inverse;
pub mod kmeans;
pub mod mlp;
pub mod rlmrec_con;
pub mod rlmrec_gen;

use crate::rng::Rng;
use crate::step::Batch;
use crate::step::LossTerm;
use anyhow::Context;
use candle_core::{Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Fixed semantic vectors `e_L` of all users and items.
#[derive(Clone)]
pub struct SemanticTables {
    pub users: Tensor,
    pub items: Tensor,
    /// Users then items, `[U+I, d_L]` (node order).
    pub all: Tensor,
    pub dim: usize,
}

impl SemanticTables {
    pub fn new(users: Tensor, items: Tensor) -> Result<Self> {
        let dim = users.dim(1)?;
        if items.dim(1)? != dim {
            candle_core::bail!(
                "user vectors have {dim} dimensions but item vectors {}",
                items.dim(1)?
            );
        }
        let all = Tensor::cat(&[&users, &items], 0)?;
        Ok(Self {
            users,
            items,
            all,
            dim,
        })
    }

    /// Loads the vectors of `align.vectors` through the one vector reader
    /// ([`SemanticVectors::load`]: finite values, equal widths, the file, tensor and row
    /// named on any error) and checks one row per user and per item.
    pub fn load(
        path: &Path,
        n_users: usize,
        n_items: usize,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let v = crate::text::embed::SemanticVectors::load(path).map_err(|e| match e {
            crate::data::DataError::Io { .. } => {
                anyhow::anyhow!("{e}: cannot read semantic vectors (run `darec embed` first)")
            }
            e => e.into(),
        })?;
        if v.n_users != n_users || v.n_items != n_items {
            anyhow::bail!(
                "{}: vectors for {} users x {} items, but the dataset has {n_users} users x {n_items} items",
                path.display(),
                v.n_users,
                v.n_items
            );
        }
        let (u, i) = v.to_tensors(device)?;
        Ok(Self::new(u, i)?)
    }
}

/// Which alignment, where its semantic vectors are, and each alignment's settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlignConfig {
    /// `none`, `rlmrec_con`, `rlmrec_gen` or `darec`.
    pub kind: AlignKind,
    /// Semantic vectors (safetensors with `users` and `items`); `@cache/` allowed.
    pub vectors: Option<String>,
    pub rlmrec_con: rlmrec_con::ConConfig,
    pub rlmrec_gen: rlmrec_gen::GenConfig,
    pub darec: darec::DarecConfig,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlignKind {
    #[default]
    None,
    RlmrecCon,
    RlmrecGen,
    Darec,
}

impl AlignKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AlignKind::None => "none",
            AlignKind::RlmrecCon => "rlmrec_con",
            AlignKind::RlmrecGen => "rlmrec_gen",
            AlignKind::Darec => "darec",
        }
    }
}

/// What an alignment is built from.
pub struct AlignContext<'a> {
    pub sem: SemanticTables,
    /// Width of the backbone's final embeddings.
    pub out_dim: usize,
    /// Width of the backbone's layer-0 embeddings.
    pub ego_dim: usize,
    pub device: &'a Device,
    pub rng: &'a mut Rng,
}

/// Builds the configured alignment; `sem` is required for every kind but `none`.
pub fn build(
    cfg: &AlignConfig,
    sem: Option<SemanticTables>,
    out_dim: usize,
    ego_dim: usize,
    device: &Device,
    rng: &mut Rng,
) -> anyhow::Result<Box<dyn Alignment>> {
    if cfg.kind == AlignKind::None {
        return Ok(Box::new(NoAlignment));
    }
    let sem = sem.with_context(|| {
        format!(
            "alignment `{}` needs semantic vectors: set align.vectors",
            cfg.kind.as_str()
        )
    })?;
    let ctx = AlignContext {
        sem,
        out_dim,
        ego_dim,
        device,
        rng,
    };
    Ok(match cfg.kind {
        AlignKind::None => unreachable!(),
        AlignKind::RlmrecCon => Box::new(rlmrec_con::RlmrecCon::new(&cfg.rlmrec_con, ctx)?),
        AlignKind::RlmrecGen => Box::new(rlmrec_gen::RlmrecGen::new(&cfg.rlmrec_gen, ctx)?),
        AlignKind::Darec => Box::new(darec::Darec::new(&cfg.darec, &cfg.rlmrec_con, ctx)?),
    })
}

/// What an alignment sees of a training step.
pub struct AlignInput<'a> {
    /// Layer-0 embeddings as propagated (after `before_encode`), `[U+I, d]`.
    pub ego: &'a Tensor,
    /// Final node embeddings of the backbone, `[U+I, d_out]`, users first.
    pub nodes: &'a Tensor,
    pub n_users: usize,
    pub batch: &'a Batch,
}

pub trait Alignment: Send {
    fn name(&self) -> &'static str;
    fn params(&self) -> Vec<(String, Var)>;
    /// Rewrites layer-0 embeddings before propagation (identity by default).
    fn before_encode(&mut self, ego: Tensor, _rng: &mut Rng) -> Result<Tensor> {
        Ok(ego)
    }
    /// Called before each training epoch (1-based), for schedules over epochs.
    fn start_epoch(&mut self, _epoch: usize) {}
    /// Weighted loss terms for this step.
    fn losses(&mut self, input: &AlignInput, rng: &mut Rng) -> Result<Vec<LossTerm>>;
    /// The shared-space projections of both sides for the given nodes, for alignments
    /// that have one (DaRec): `(collaborative, language)`, each `[n, d]`.
    fn shared_space(&self, _e_c: &Tensor, _nodes: &[u32]) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }
    /// The vectors that ranking scores are dot products of, from the backbone's final
    /// embeddings `nodes` (`[n, d_out]`), for alignments that add to the score (DaRec with
    /// `score_shared`: `[e_C ; P_C^sh(e_C)]`); `None`: the final embeddings themselves.
    /// Training's BPR, evaluation and serving all score in this space.
    fn score_space(&self, _nodes: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Cold start: collaborative-space vectors `[n, d_out]` for users or items known only
    /// by their semantic vectors `e_l` `[n, d_L]`, through the alignment's trained
    /// language-side projection, for alignments that have one (RLMRec-Con, DaRec).
    fn text_to_collaborative(&self, _e_l: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// The plain backbone: no alignment.
pub struct NoAlignment;

impl Alignment for NoAlignment {
    fn name(&self) -> &'static str {
        "none"
    }
    fn params(&self) -> Vec<(String, Var)> {
        Vec::new()
    }
    fn losses(&mut self, _input: &AlignInput, _rng: &mut Rng) -> Result<Vec<LossTerm>> {
        Ok(Vec::new())
    }
}
