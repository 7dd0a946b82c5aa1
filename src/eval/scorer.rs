//! Scorers: anything that scores every item for a batch of users (SPEC section 2, full
//! ranking), the dot-product scorer over final embeddings and the MostPop baseline.

use crate::data::UserItems;
use anyhow::{bail, Context};
use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

/// Anything that can score every item for a batch of users.
pub trait Scorer: Sync {
    /// Number of items scored per user (the width of one row of scores).
    fn n_items(&self) -> usize;
    /// Fills `out` (resized to `users.len() * n_items`, row-major) with the scores of all
    /// items for each user.
    fn score(&self, users: &[u32], out: &mut Vec<f32>) -> anyhow::Result<()>;
}

/// Dot-product scorer over final embeddings: `users` `[U, d]`, `items` `[I, d]` candle
/// tensors (any device and float dtype; the scores are copied to the CPU as f32). One
/// candle matmul per batch: `users[batch] @ items^T`.
pub struct EmbeddingScorer {
    pub users: Tensor,
    pub items: Tensor,
}

impl EmbeddingScorer {
    /// Checks shapes: both rank 2 with the same embedding width.
    fn dims(&self) -> anyhow::Result<(usize, usize, usize)> {
        let (n_users, du) = self
            .users
            .dims2()
            .context("user embeddings must be [users, d]")?;
        let (n_items, di) = self
            .items
            .dims2()
            .context("item embeddings must be [items, d]")?;
        if du != di {
            bail!("user embeddings are {du}-dimensional but item embeddings are {di}-dimensional");
        }
        Ok((n_users, n_items, du))
    }
}

impl Scorer for EmbeddingScorer {
    fn n_items(&self) -> usize {
        self.items.dims().first().copied().unwrap_or(0)
    }

    fn score(&self, users: &[u32], out: &mut Vec<f32>) -> anyhow::Result<()> {
        let (n_users, n_items, _) = self.dims()?;
        if let Some(&u) = users.iter().find(|&&u| u as usize >= n_users) {
            bail!("user {u} is out of range: the embedding table has {n_users} users");
        }
        let idx = Tensor::from_slice(users, users.len(), self.users.device())?;
        // detach: no autograd graph is recorded when the tables are training variables
        let batch = self.users.detach().index_select(&idx, 0)?;
        let scores = batch.matmul(&self.items.detach().t()?)?;
        let scores = scores
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .contiguous()?;
        // Copy straight out of the storage into the reused buffer (no extra Vec).
        let (storage, layout) = scores.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            bail!("internal error: scores are not f32 on the CPU");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("internal error: scores are not contiguous");
        };
        let data = &data[start..end];
        if data.len() != users.len() * n_items {
            bail!(
                "internal error: got {} scores for {} users x {n_items} items",
                data.len(),
                users.len()
            );
        }
        out.clear();
        out.extend_from_slice(data);
        Ok(())
    }
}

/// Popularity baseline: score = number of training interactions of the item.
#[derive(Clone, Debug, PartialEq)]
pub struct MostPop {
    pub counts: Vec<f32>,
}

impl MostPop {
    /// Counts the (deduplicated) training interactions of every item `0..n_items`.
    /// Item ids `>= n_items` are not counted (evaluation rejects them in the ground truth).
    pub fn fit(train: &UserItems, n_items: usize) -> Self {
        let mut counts = vec![0f32; n_items];
        for &i in &train.items {
            if let Some(c) = counts.get_mut(i as usize) {
                *c += 1.0;
            }
        }
        Self { counts }
    }
}

impl Scorer for MostPop {
    fn n_items(&self) -> usize {
        self.counts.len()
    }

    fn score(&self, users: &[u32], out: &mut Vec<f32>) -> anyhow::Result<()> {
        out.clear();
        out.reserve(users.len() * self.counts.len());
        for _ in users {
            out.extend_from_slice(&self.counts);
        }
        Ok(())
    }
}
