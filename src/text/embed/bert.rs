//! [`LocalEmbedder`]: a BERT-family sentence-transformer directory (`config.json`,
//! `tokenizer.json`, `model.safetensors`) run with candle weights (SPEC section 3:
//! all-MiniLM-L6-v2, mean pooling over the attention mask, then L2 normalisation, as
//! sentence-transformers' `Transformer -> Pooling(mean) -> Normalize`).
//!
//! Sequence length: `max_seq_length` of `sentence_bert_config.json` when present (256 for
//! MiniLM, which is what sentence-transformers uses, not tokenizer.json's 128), else the
//! tokenizer's truncation length, capped by `max_position_embeddings`.
//!
//! Batching: every text is tokenized once (truncated, no fixed padding), the texts are
//! sorted by token count and cut into batches of `batch_size`, and each batch is padded
//! only to its longest text (the tokenizer's `BatchLongest` strategy) for candle's
//! `BertModel`; the fused CPU encoder ([`FastBert`], the default on the CPU) packs a batch
//! with no padding at all and runs one batch per thread. Vectors come back in the caller's
//! order. Padding never changes a vector: the attention mask hides padded keys and pooling
//! skips padded positions.

use super::encoder::FastBert;
use crate::data::DataError;
use crate::text::TextEmbedder;
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// The three files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Default number of texts per forward pass.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Which forward pass runs the transformer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// darec's fused CPU encoder ([`FastBert`]): same weights and maths as candle's
    /// `BertModel`, with each sequence attended without its padding (the default).
    #[default]
    Fused,
    /// candle-transformers' `models::bert::BertModel` (reference, and the path on GPUs).
    Candle,
}

/// A local sentence-transformer (BERT family) implementing [`TextEmbedder`].
pub struct LocalEmbedder {
    /// Loaded on the first switch to [`Backend::Candle`] (always off the CPU).
    candle: Option<BertModel>,
    fused: Option<FastBert>,
    config: BertConfig,
    weights_path: PathBuf,
    backend: Backend,
    tokenizer: Tokenizer,
    device: Device,
    name: String,
    dim: usize,
    max_len: usize,
    pad_id: u32,
    batch_size: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .field("max_len", &self.max_len)
            .field("batch_size", &self.batch_size)
            .field("backend", &self.backend)
            .finish()
    }
}

/// Reads `dir/name`, naming the file when it is missing.
fn model_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    if !p.is_file() {
        let missing: Vec<&str> = MODEL_FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        anyhow::bail!(
            "{}: not a sentence-transformer directory: missing {} (it needs {})",
            dir.display(),
            missing.join(", "),
            MODEL_FILES.join(", ")
        );
    }
    Ok(p)
}

/// Parses `config.json`, accepting only BERT models.
fn read_config(path: &Path) -> anyhow::Result<BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| DataError::file(path, format!("not valid JSON: {e}")))?;
    let model_type = v.get("model_type").and_then(|m| m.as_str());
    let archs: Vec<&str> = v
        .get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let is_bert = match model_type {
        Some(t) => t == "bert",
        None => archs.iter().any(|a| a.starts_with("Bert")),
    };
    if !is_bert {
        let what = model_type
            .map(|t| format!("model_type `{t}`"))
            .unwrap_or_else(|| format!("architectures {archs:?}"));
        return Err(DataError::file(
            path,
            format!("{what} is not supported: only BERT models (model_type \"bert\") load"),
        )
        .into());
    }
    let cfg: BertConfig = serde_json::from_value(v)
        .map_err(|e| DataError::file(path, format!("not a BERT config: {e}")))?;
    if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
        return Err(DataError::file(
            path,
            format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            ),
        )
        .into());
    }
    Ok(cfg)
}

/// The sequence length sentence-transformers uses: `max_seq_length` of
/// `sentence_bert_config.json` when present, else the tokenizer's truncation length, else
/// the model's `max_position_embeddings`; never more than the latter.
fn max_length(dir: &Path, tokenizer: &Tokenizer, cfg: &BertConfig) -> anyhow::Result<usize> {
    let st = dir.join("sentence_bert_config.json");
    let from_st = if st.is_file() {
        let text = std::fs::read_to_string(&st).map_err(|e| DataError::io(&st, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| DataError::file(&st, format!("not valid JSON: {e}")))?;
        v.get("max_seq_length")
            .and_then(|m| m.as_u64())
            .map(|m| m as usize)
    } else {
        None
    };
    let n = from_st
        .or_else(|| tokenizer.get_truncation().map(|t| t.max_length))
        .unwrap_or(cfg.max_position_embeddings)
        .min(cfg.max_position_embeddings);
    anyhow::ensure!(
        n >= 2,
        "{}: maximum sequence length {n} is too short",
        dir.display()
    );
    Ok(n)
}

/// The weights file as a `VarBuilder` (f32).
fn var_builder(path: &Path, device: &Device) -> anyhow::Result<VarBuilder<'static>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
        .with_context(|| format!("{}: cannot read weights", path.display()))
}

fn misfit(path: &Path, cfg: &BertConfig) -> String {
    format!(
        "{}: weights do not fit config.json (hidden_size {}, {} layers)",
        path.display(),
        cfg.hidden_size,
        cfg.num_hidden_layers
    )
}

impl LocalEmbedder {
    /// Loads a sentence-transformer directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors`) on the CPU.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// Loads a sentence-transformer directory on `device`. The fused encoder is used on the
    /// CPU, candle's `BertModel` elsewhere.
    pub fn load_on(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("{}: model directory not found", dir.display());
        }
        let config_path = model_file(dir, "config.json")?;
        let tok_path = model_file(dir, "tokenizer.json")?;
        let weights_path = model_file(dir, "model.safetensors")?;
        let cfg = read_config(&config_path)?;

        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| DataError::file(&tok_path, format!("cannot load tokenizer: {e}")))?;
        let max_id = tokenizer
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .unwrap_or(0);
        if max_id as usize >= cfg.vocab_size {
            anyhow::bail!(
                "{} and {} do not match: the tokenizer has token ids up to {max_id} \
                 ({} tokens) but config.json has vocab_size {}",
                tok_path.display(),
                config_path.display(),
                tokenizer.get_vocab_size(true),
                cfg.vocab_size
            );
        }
        let max_len = max_length(dir, &tokenizer, &cfg)?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .unwrap_or(cfg.pad_token_id as u32);
        // No fixed padding: each batch is padded to its longest text below.
        tokenizer.with_padding(None);
        let trunc = TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        tokenizer
            .with_truncation(Some(trunc))
            .map_err(|e| DataError::file(&tok_path, format!("cannot set truncation: {e}")))?;

        let vb = var_builder(&weights_path, device)?;
        let (candle, fused, backend) = if device.is_cpu() {
            let f = FastBert::load(&vb, &cfg).with_context(|| misfit(&weights_path, &cfg))?;
            (None, Some(f), Backend::Fused)
        } else {
            let m = BertModel::load(vb, &cfg).with_context(|| misfit(&weights_path, &cfg))?;
            (Some(m), None, Backend::Candle)
        };
        let name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local-bert".into());
        Ok(Self {
            candle,
            fused,
            config: cfg.clone(),
            weights_path,
            backend,
            tokenizer,
            device: device.clone(),
            name,
            dim: cfg.hidden_size,
            max_len,
            pad_id,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Sets the number of texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Chooses the forward pass; [`Backend::Fused`] needs the CPU. Switching to
    /// [`Backend::Candle`] the first time reads the weights again.
    pub fn with_backend(mut self, backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Fused if self.fused.is_none() => {
                anyhow::bail!("the fused encoder runs on the CPU only")
            }
            Backend::Candle if self.candle.is_none() => {
                let vb = var_builder(&self.weights_path, &self.device)?;
                let m = BertModel::load(vb, &self.config)
                    .with_context(|| misfit(&self.weights_path, &self.config))?;
                self.candle = Some(m);
            }
            _ => {}
        }
        self.backend = backend;
        Ok(self)
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    pub fn backend(&self) -> Backend {
        self.backend
    }
    /// Longest input in tokens (special tokens included); longer texts are truncated.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids of each text, truncated to [`Self::max_len`], special tokens included.
    pub fn tokenize(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<u32>>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect(), true)
            .map_err(|e| anyhow::anyhow!("tokenizer failed: {e}"))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Embeds one batch of token-id sequences: padded to the longest, forward, mean
    /// pooling, L2 normalisation.
    fn embed_batch(&self, seqs: &[&[u32]], parallel: bool) -> anyhow::Result<Vec<Vec<f32>>> {
        if let (Backend::Fused, Some(f)) = (self.backend, &self.fused) {
            let hidden = f.forward(seqs, parallel);
            return Ok(seqs
                .iter()
                .zip(hidden)
                .map(|(s, h)| {
                    let mask = vec![1u32; s.len()];
                    pool_normalize(&h, &mask, 1, s.len(), self.dim).remove(0)
                })
                .collect());
        }
        let b = seqs.len();
        let l = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; b * l];
        let mut mask = vec![0u32; b * l];
        for (r, s) in seqs.iter().enumerate() {
            ids[r * l..r * l + s.len()].copy_from_slice(s);
            mask[r * l..r * l + s.len()].fill(1);
        }
        let ids_t = Tensor::from_vec(ids, (b, l), &self.device)?;
        let types = ids_t.zeros_like()?;
        let mask_t = Tensor::from_vec(mask.clone(), (b, l), &self.device)?;
        let model = self.candle.as_ref().context("candle backend not loaded")?;
        let out = model.forward(&ids_t, &types, Some(&mask_t))?;
        let hidden = out.flatten_all()?.to_vec1::<f32>()?;
        Ok(pool_normalize(&hidden, &mask, b, l, self.dim))
    }
}

/// Mean of each row's hidden states over the positions where `mask` is 1, then L2
/// normalised (`x / max(||x||, 1e-12)`, as `torch.nn.functional.normalize`).
/// `hidden` is `[b, l, h]` row-major, `mask` `[b, l]`.
pub fn pool_normalize(hidden: &[f32], mask: &[u32], b: usize, l: usize, h: usize) -> Vec<Vec<f32>> {
    (0..b)
        .map(|r| {
            let mut acc = vec![0f32; h];
            let mut n = 0f32;
            for t in 0..l {
                if mask[r * l + t] != 0 {
                    n += 1.0;
                    let row = &hidden[(r * l + t) * h..(r * l + t + 1) * h];
                    acc.iter_mut().zip(row).for_each(|(a, x)| *a += x);
                }
            }
            let n = n.max(1e-9);
            acc.iter_mut().for_each(|a| *a /= n);
            let norm = acc.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            acc.iter_mut().for_each(|a| *a /= norm);
            acc
        })
        .collect()
}

/// Indices of `lengths` sorted longest first (stable), cut into batches of `batch_size`.
pub fn length_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect()
}

impl TextEmbedder for LocalEmbedder {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let ids = self.tokenize(texts)?;
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let batches = length_batches(&lengths, self.batch_size);
        let run = |batch: &Vec<usize>, parallel: bool| {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            self.embed_batch(&seqs, parallel)
        };
        // The fused encoder runs one batch per thread when there are enough batches (no
        // synchronisation inside a forward); otherwise each product uses every thread.
        let per_thread = self.backend == Backend::Fused
            && rayon::current_num_threads() > 1
            && batches.len() >= rayon::current_num_threads();
        let results: Vec<anyhow::Result<Vec<Vec<f32>>>> = if per_thread {
            batches.par_iter().map(|b| run(b, false)).collect()
        } else {
            batches.iter().map(|b| run(b, true)).collect()
        };
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for (batch, vecs) in batches.iter().zip(results) {
            for (&i, v) in batch.iter().zip(vecs?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
