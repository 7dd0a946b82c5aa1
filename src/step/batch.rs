//! A training batch of (user, positive item, negative item) triples, with the node
//! indices (items offset by the number of users) ready as tensors for gathering.

use candle_core::{Device, Result, Tensor};
use std::sync::Arc;

pub struct Batch {
    pub users: Vec<u32>,
    pub pos: Vec<u32>,
    pub neg: Vec<u32>,
    /// Node indices `[B]` (u32) of users, positive items and negative items.
    pub user_nodes: Tensor,
    pub pos_nodes: Tensor,
    pub neg_nodes: Tensor,
    /// The same node indices as shared vectors (for fused CPU ops).
    pub user_idx: Arc<Vec<u32>>,
    pub pos_idx: Arc<Vec<u32>>,
    pub neg_idx: Arc<Vec<u32>>,
}

impl Batch {
    pub fn new(triples: &[(u32, u32, u32)], n_users: usize, device: &Device) -> Result<Self> {
        let users: Vec<u32> = triples.iter().map(|t| t.0).collect();
        let pos: Vec<u32> = triples.iter().map(|t| t.1).collect();
        let neg: Vec<u32> = triples.iter().map(|t| t.2).collect();
        let off = n_users as u32;
        let b = triples.len();
        let user_idx = Arc::new(users.clone());
        let pos_idx = Arc::new(pos.iter().map(|i| i + off).collect::<Vec<_>>());
        let neg_idx = Arc::new(neg.iter().map(|i| i + off).collect::<Vec<_>>());
        let user_nodes = Tensor::from_slice(&user_idx, b, device)?;
        let pos_nodes = Tensor::from_slice(&pos_idx, b, device)?;
        let neg_nodes = Tensor::from_slice(&neg_idx, b, device)?;
        Ok(Self {
            users,
            pos,
            neg,
            user_nodes,
            pos_nodes,
            neg_nodes,
            user_idx,
            pos_idx,
            neg_idx,
        })
    }
    /// The distinct node indices among `ids` (one of the `*_idx` lists), ascending, as a
    /// tensor on the batch's device.
    pub fn distinct_nodes(&self, ids: &[u32]) -> Result<Tensor> {
        let v = distinct_with_counts(ids).0;
        Tensor::from_slice(&v, v.len(), self.user_nodes.device())
    }
    pub fn len(&self) -> usize {
        self.users.len()
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Distinct ids in ascending order with how often each occurs (repeated batch rows are
/// computed once and weighted by their count).
pub fn distinct_with_counts(ids: &[u32]) -> (Vec<u32>, Arc<Vec<f32>>) {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut distinct = Vec::new();
    let mut counts: Vec<f32> = Vec::new();
    for id in sorted {
        if distinct.last() == Some(&id) {
            *counts.last_mut().expect("non-empty") += 1.0;
        } else {
            distinct.push(id);
            counts.push(1.0);
        }
    }
    (distinct, Arc::new(counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ids_and_counts() {
        let (d, c) = distinct_with_counts(&[5, 1, 5, 3, 1, 5]);
        assert_eq!(d, vec![1, 3, 5]);
        assert_eq!(*c, vec![2.0, 1.0, 3.0]);
    }
}
