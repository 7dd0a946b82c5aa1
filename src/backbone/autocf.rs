//! AutoCF (Xia et al., WWW 2023, "Automated Self-Supervised Learning for Recommendation")
//! as RLMRec runs it (SPEC.md section 2): a masked graph autoencoder.
//! - Every `fix_steps` training steps, each node gets a local-global consistency score
//!   `s_v = sigmoid(cos(e_v, mean of its 1- and 2-hop neighbourhood))` (computed on the
//!   all-ones adjacency exactly as RLMRec's code, quirks included); `seeds` nodes are drawn
//!   by Gumbel top-k on `log s_v`. The edges within `mask_depth` hops of the seeds are
//!   removed; the encoder graph is the rest, normalised `D^-1/2 A D^-1/2` anew. The
//!   decoder graph joins random pairs of masked nodes (as many as the graph's directed
//!   edges, both directions), every self loop and the kept edges. The masked set is the
//!   seeds, their neighbours and `extra_mask_rate * (U + I)` random nodes.
//!   The step that draws the mask adds the infomax term `-mean(log s_v + gumbel_v)`.
//! - Encoder: `gcn` layers of LightGCN on the encoder graph; decoder: one graph-transformer
//!   layer (`heads` heads, query/key/value `d x d`, logits clamped to [-10, 10], softmax over
//!   each node's decoder edges); the embedding is the sum of all layers and the decoder's
//!   output. Inference uses the full graph for both.
//! - Loss (it replaces BPR): `-mean <e_u, e_pos>` + `ssl_reg * (LSE_users + LSE_items)` +
//!   `LSE_user-item`, where `LSE_users` is the mean over the batch's distinct users of
//!   `log sum_{all users} exp(<e_u, e_v>)` (raw dot products, no temperature), `LSE_items`
//!   the same for distinct positive items, and `LSE_user-item` the mean over the batch's
//!   users (repeats included) of `log sum_{all items} exp(<e_u, e_i>)`.

use super::ModelConfig;
use super::{xavier_matrix, xavier_node_table, Backbone, BuildContext, Mode};
use crate::data::graph::{BipartiteGraph, Csr};
use crate::ops::edge_attention::{edge_attention, EdgeList};
use crate::ops::rowwise::l2_normalize;
use crate::ops::similarity::{info_nce, info_nce_weighted};
use crate::ops::{propagate, Combine};
use crate::rng::Rng;
use crate::step::{distinct_with_counts, Batch, LossTerm};
use candle_core::{Result, Tensor, Var, D};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// AutoCF's own settings (`[model.autocf]`; RLMRec's amazon values).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AutoCfConfig {
    /// Weight of the user-user and item-item uniformity terms.
    pub ssl_reg: f64,
    /// Attention heads of the decoder (must divide `model.dim`).
    pub heads: usize,
    /// Seed nodes per mask (RLMRec's 100 suits graphs of thousands of nodes; on a graph of
    /// a few hundred, 100 seeds and two hops mask every edge).
    pub seeds: usize,
    /// Hops around the seeds whose edges are masked.
    pub mask_depth: usize,
    /// Random nodes added to the masked set, as a fraction of all nodes (RLMRec's
    /// `keep_rate`).
    pub extra_mask_rate: f64,
    /// Training steps between two masks.
    pub fix_steps: usize,
}

impl Default for AutoCfConfig {
    fn default() -> Self {
        Self {
            ssl_reg: 5.0,
            heads: 4,
            seeds: 100,
            mask_depth: 2,
            extra_mask_rate: 0.2,
            fix_steps: 10,
        }
    }
}

impl AutoCfConfig {
    pub fn validate(&self, dim: usize) -> anyhow::Result<()> {
        if !(self.ssl_reg >= 0.0) {
            anyhow::bail!("model.autocf.ssl_reg must be >= 0, got {}", self.ssl_reg);
        }
        if self.heads == 0 || !dim.is_multiple_of(self.heads) {
            anyhow::bail!(
                "model.autocf.heads must be positive and divide model.dim ({dim}), got {}",
                self.heads
            );
        }
        if self.seeds == 0 || self.mask_depth == 0 || self.fix_steps == 0 {
            anyhow::bail!("model.autocf.seeds, mask_depth and fix_steps must be positive");
        }
        if !(0.0..=1.0).contains(&self.extra_mask_rate) {
            anyhow::bail!(
                "model.autocf.extra_mask_rate must be in [0, 1], got {}",
                self.extra_mask_rate
            );
        }
        Ok(())
    }
}

/// The graphs of the current mask and the infomax term still to be added.
struct MaskState {
    step: usize,
    encoder: Option<Arc<Csr>>,
    decoder: Option<Arc<EdgeList>>,
    infomax: Option<Tensor>,
}

pub struct AutoCf {
    table: Var,
    wq: Var,
    wk: Var,
    wv: Var,
    /// Undirected training edges `(user node, item node)`.
    pairs: Vec<(u32, u32)>,
    full: Arc<Csr>,
    full_edges: Arc<EdgeList>,
    /// All-ones adjacency (no self loops) and node degrees, for the consistency scores.
    ones: Arc<Csr>,
    degree: Vec<f32>,
    /// RLMRec's neighbourhood counts `fstNum + scdNum + 1e-8` (constants of the graph).
    hop_count: Vec<f32>,
    n_users: usize,
    layers: usize,
    cfg: AutoCfConfig,
    state: Mutex<MaskState>,
}

/// `D^-1/2 A D^-1/2` over the given undirected edges of an `n`-node graph (RLMRec's
/// `normalizeAdj`: degree + 1e-12).
fn normalized_csr(n: usize, pairs: &[(u32, u32)], values_one: bool) -> Csr {
    let mut deg = vec![0usize; n];
    for &(a, b) in pairs {
        deg[a as usize] += 1;
        deg[b as usize] += 1;
    }
    let mut indptr = vec![0usize; n + 1];
    for v in 0..n {
        indptr[v + 1] = indptr[v] + deg[v];
    }
    let mut fill = indptr.clone();
    let mut indices = vec![0u32; indptr[n]];
    for &(a, b) in pairs {
        indices[fill[a as usize]] = b;
        fill[a as usize] += 1;
        indices[fill[b as usize]] = a;
        fill[b as usize] += 1;
    }
    let inv: Vec<f32> = deg
        .iter()
        .map(|&d| (d as f64 + 1e-12).powf(-0.5) as f32)
        .collect();
    let mut values = vec![1f32; indices.len()];
    if !values_one {
        for v in 0..n {
            for k in indptr[v]..indptr[v + 1] {
                values[k] = inv[v] * inv[indices[k] as usize];
            }
        }
    }
    Csr {
        n,
        indptr,
        indices,
        values,
    }
}

impl AutoCf {
    pub fn new(cfg: &ModelConfig, ctx: BuildContext) -> Result<Self> {
        cfg.autocf
            .validate(cfg.dim)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let table = xavier_node_table(ctx.n_users, ctx.n_items, cfg.dim, ctx.device, ctx.rng)?;
        let wq = xavier_matrix(cfg.dim, cfg.dim, ctx.device, ctx.rng)?;
        let wk = xavier_matrix(cfg.dim, cfg.dim, ctx.device, ctx.rng)?;
        let wv = xavier_matrix(cfg.dim, cfg.dim, ctx.device, ctx.rng)?;
        let pairs = user_item_pairs(&ctx.graph);
        let n = ctx.n_users + ctx.n_items;
        let full = Arc::new(normalized_csr(n, &pairs, false));
        let ones = Arc::new(normalized_csr(n, &pairs, true));
        let degree: Vec<f32> = (0..n)
            .map(|v| (ones.indptr[v + 1] - ones.indptr[v]) as f32)
            .collect();
        let full_edges = Arc::new(EdgeList::new(n, &full.entry_rows(), &full.indices)?);
        // fstNum = deg; scdNum = A1 deg - deg - deg
        let hop_count: Vec<f32> = (0..n)
            .map(|v| {
                let nbrs = &ones.indices[ones.indptr[v]..ones.indptr[v + 1]];
                let a1_deg: f32 = nbrs.iter().map(|&t| degree[t as usize]).sum();
                degree[v] + (a1_deg - 2.0 * degree[v]) + 1e-8
            })
            .collect();
        Ok(Self {
            table,
            wq,
            wk,
            wv,
            pairs,
            full,
            full_edges,
            ones,
            degree,
            hop_count,
            n_users: ctx.n_users,
            layers: cfg.layers,
            cfg: cfg.autocf.clone(),
            state: Mutex::new(MaskState {
                step: 0,
                encoder: None,
                decoder: None,
                infomax: None,
            }),
        })
    }

    /// RLMRec's local-global consistency score `s_v` of every node (`[N]`, differentiable).
    fn consistency(&self, ego: &Tensor) -> Result<Tensor> {
        let dev = ego.device();
        let n = ego.dim(0)?;
        let a1 = |x: &Tensor| propagate(x, self.ones.clone(), 1, Combine::Last);
        let order = Tensor::from_slice(&self.degree, (n, 1), dev)?;
        let count = Tensor::from_slice(&self.hop_count, (n, 1), dev)?;
        let fst = (a1(ego)? - ego)?;
        let scd = ((a1(&fst)? - &fst)? - ego.broadcast_mul(&order)?)?;
        let sub = l2_normalize(&(fst + scd)?.broadcast_div(&count)?)?;
        let cos = (sub * l2_normalize(ego)?)?.sum(D::Minus1)?;
        // sigmoid
        (cos.neg()?.exp()? + 1.0)?.recip()
    }

    /// Draws a new mask: seeds by Gumbel top-k, edges within `mask_depth` hops removed.
    fn draw_mask(&self, ego: &Tensor, rng: &mut Rng) -> Result<(Arc<Csr>, Arc<EdgeList>, Tensor)> {
        let dev = ego.device();
        let n = ego.dim(0)?;
        let scores = self.consistency(ego)?;
        let gumbel: Vec<f32> = (0..n)
            .map(|_| {
                let u = rng.f64().max(1e-8);
                (-(-u.ln()).ln()) as f32
            })
            .collect();
        let noisy = (scores.log()? + Tensor::from_slice(&gumbel, n, dev)?)?;
        let infomax = noisy.mean_all()?.neg()?;
        let keys: Vec<f32> = noisy.detach().to_vec1()?;
        let mut order: Vec<u32> = (0..n as u32).collect();
        let k = self.cfg.seeds.min(n);
        // highest first; NaN last
        order.sort_by(|&a, &b| {
            let (x, y) = (keys[a as usize], keys[b as usize]);
            y.partial_cmp(&x)
                .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
        });
        let seeds = &order[..k];
        let (kept, masked) = mask_edges(n, &self.pairs, seeds, self.cfg.mask_depth);
        let encoder = Arc::new(normalized_csr(n, &kept, false));
        let mut masked_nodes = masked;
        let extra = (n as f64 * self.cfg.extra_mask_rate) as usize;
        masked_nodes.extend((0..extra).map(|_| rng.uniform_usize(n) as u32));
        masked_nodes.sort_unstable();
        masked_nodes.dedup();
        let decoder = decoder_edges(n, &kept, &masked_nodes, 2 * self.pairs.len(), rng);
        let decoder = Arc::new(EdgeList::new(n, &decoder.0, &decoder.1)?);
        Ok((encoder, decoder, infomax))
    }

    /// One graph-transformer layer over the directed `edges` (RLMRec's `GTLayer`).
    fn transformer(&self, e: &Tensor, edges: &Arc<EdgeList>) -> Result<Tensor> {
        let q = e.matmul(self.wq.as_tensor())?;
        let k = e.matmul(self.wk.as_tensor())?;
        let v = e.matmul(self.wv.as_tensor())?;
        edge_attention(&q, &k, &v, edges, self.cfg.heads)
    }

    fn forward(&self, ego: &Tensor, encoder: Arc<Csr>, decoder: &Arc<EdgeList>) -> Result<Tensor> {
        let mut layer = ego.clone();
        let mut sum = ego.clone();
        for _ in 0..self.layers {
            layer = propagate(&layer, encoder.clone(), 1, Combine::Last)?;
            sum = (sum + &layer)?;
        }
        sum + self.transformer(&layer, decoder)?
    }

    /// `mean_b log sum_m exp(<a_b, all_m>)` (raw dot products).
    fn mean_lse(a: &Tensor, all: &Tensor) -> Result<Tensor> {
        let rows = a.dim(0)?.max(1) as f64;
        info_nce(a, &a.zeros_like()?, all, 1.0)? / rows
    }
}

/// The undirected edges of the training graph as `(user node, item node)`.
fn user_item_pairs(graph: &BipartiteGraph) -> Vec<(u32, u32)> {
    let csr = graph.normalized(false);
    let mut pairs = Vec::with_capacity(graph.n_edges());
    for u in 0..graph.n_users {
        for k in csr.indptr[u]..csr.indptr[u + 1] {
            pairs.push((u as u32, csr.indices[k]));
        }
    }
    pairs
}

/// Removes the edges within `depth` hops of `seeds`: at each hop, every kept edge touching
/// the current frontier goes, and (before the last hop) its endpoints become the next
/// frontier. Returns the kept edges and the masked nodes (seeds and inner frontiers).
fn mask_edges(
    n: usize,
    pairs: &[(u32, u32)],
    seeds: &[u32],
    depth: usize,
) -> (Vec<(u32, u32)>, Vec<u32>) {
    let mut alive = vec![true; pairs.len()];
    let mut frontier = vec![false; n];
    seeds.iter().for_each(|&s| frontier[s as usize] = true);
    let mut masked: Vec<u32> = seeds.to_vec();
    for hop in 0..depth {
        let mut next = vec![false; n];
        for (e, &(a, b)) in pairs.iter().enumerate() {
            if alive[e] && (frontier[a as usize] || frontier[b as usize]) {
                alive[e] = false;
                if hop + 1 < depth {
                    next[a as usize] = true;
                    next[b as usize] = true;
                }
            }
        }
        masked.extend((0..n as u32).filter(|&v| next[v as usize]));
        frontier = next;
    }
    let kept = pairs
        .iter()
        .zip(&alive)
        .filter(|(_, &a)| a)
        .map(|(p, _)| *p)
        .collect();
    masked.sort_unstable();
    masked.dedup();
    (kept, masked)
}

/// The decoder's directed edges: `count` random pairs of masked nodes in both directions,
/// every self loop and the kept edges in both directions, without duplicates.
fn decoder_edges(
    n: usize,
    kept: &[(u32, u32)],
    masked: &[u32],
    count: usize,
    rng: &mut Rng,
) -> (Vec<u32>, Vec<u32>) {
    let mut keys: Vec<u64> = Vec::with_capacity(2 * count + n + 2 * kept.len());
    let key = |r: u32, c: u32| r as u64 * n as u64 + c as u64;
    if !masked.is_empty() {
        for _ in 0..count {
            let r = masked[rng.uniform_usize(masked.len())];
            let c = masked[rng.uniform_usize(masked.len())];
            keys.push(key(r, c));
            keys.push(key(c, r));
        }
    }
    keys.extend((0..n as u32).map(|v| key(v, v)));
    for &(a, b) in kept {
        keys.push(key(a, b));
        keys.push(key(b, a));
    }
    keys.sort_unstable();
    keys.dedup();
    keys.iter()
        .map(|&k| ((k / n as u64) as u32, (k % n as u64) as u32))
        .unzip()
}

impl Backbone for AutoCf {
    fn name(&self) -> &'static str {
        "autocf"
    }
    fn table(&self) -> &Var {
        &self.table
    }
    fn params(&self) -> Vec<(String, Var)> {
        vec![
            ("embedding".into(), self.table.clone()),
            ("gt.q".into(), self.wq.clone()),
            ("gt.k".into(), self.wk.clone()),
            ("gt.v".into(), self.wv.clone()),
        ]
    }
    fn encode(&self, ego: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        match mode {
            Mode::Eval => self.forward(ego, self.full.clone(), &self.full_edges),
            Mode::Train(rng) => {
                let mut st = self.state.lock().unwrap();
                if st.step.is_multiple_of(self.cfg.fix_steps) || st.encoder.is_none() {
                    let (enc, dec, infomax) = self.draw_mask(ego, rng)?;
                    st.encoder = Some(enc);
                    st.decoder = Some(dec);
                    st.infomax = Some(infomax);
                }
                st.step += 1;
                let enc = st.encoder.clone().expect("drawn above");
                self.forward(ego, enc, st.decoder.as_ref().expect("drawn above"))
            }
        }
    }
    /// `-mean <e_u, e_pos>` (AutoCF's reconstruction of the batch's edges).
    fn rank_loss(&self, scored: &Tensor, batch: &Batch) -> Result<LossTerm> {
        let u = scored.index_select(&batch.user_nodes, 0)?;
        let p = scored.index_select(&batch.pos_nodes, 0)?;
        let rec = (u * p)?.sum(D::Minus1)?.mean_all()?.neg()?;
        Ok(LossTerm::new("rec", rec))
    }
    fn aux_losses(
        &self,
        _ego: &Tensor,
        nodes: &Tensor,
        batch: &Batch,
        _rng: &mut Rng,
    ) -> Result<Vec<LossTerm>> {
        let n = nodes.dim(0)?;
        let users = nodes.narrow(0, 0, self.n_users)?;
        let items = nodes.narrow(0, self.n_users, n - self.n_users)?;
        let (user_ids, user_counts) = distinct_with_counts(&batch.user_idx);
        let du = nodes.index_select(
            &Tensor::from_slice(&user_ids, user_ids.len(), nodes.device())?,
            0,
        )?;
        let di = nodes.index_select(&batch.distinct_nodes(&batch.pos_idx)?, 0)?;
        let uniform =
            ((Self::mean_lse(&du, &users)? + Self::mean_lse(&di, &items)?)? * self.cfg.ssl_reg)?;
        // over the batch's user rows as drawn: each distinct user once, weighted by its
        // count (the same sum)
        let cross =
            (info_nce_weighted(&du, &du.zeros_like()?, &items, 1.0, Some(user_counts), None)?
                / batch.len().max(1) as f64)?;
        let mut terms = vec![LossTerm::new("cl", (uniform + cross)?)];
        if let Some(infomax) = self.state.lock().unwrap().infomax.take() {
            terms.push(LossTerm::new("infomax", infomax));
        }
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_gradient_matches_finite_differences, tiny_graph};
    use super::*;
    use candle_core::Device;

    /// A path u0-i0-u1-i1-u2-i2: masking around seed u1 with depth 2 removes u1's edges
    /// (i0-u1, u1-i1), then every edge touching i0, u1 or i1 (u0-i0, i1-u2), keeping u2-i2.
    #[test]
    fn mask_removes_two_hops() {
        // nodes: users 0..3, items 3..6
        let pairs = vec![(0, 3), (1, 3), (1, 4), (2, 4), (2, 5)];
        let (kept, masked) = mask_edges(6, &pairs, &[1], 2);
        assert_eq!(kept, vec![(2, 5)]);
        assert_eq!(masked, vec![1, 3, 4]);
        let (kept, masked) = mask_edges(6, &pairs, &[1], 1);
        assert_eq!(kept, vec![(0, 3), (2, 4), (2, 5)]);
        assert_eq!(masked, vec![1]);
    }

    /// The decoder holds every self loop and kept edge once, and random pairs only among
    /// masked nodes.
    #[test]
    fn decoder_edges_are_distinct_and_cover_loops() {
        let mut rng = Rng::new(1);
        let (r, c) = decoder_edges(5, &[(0, 3)], &[1, 2], 10, &mut rng);
        let mut seen = std::collections::HashSet::new();
        for (&a, &b) in r.iter().zip(&c) {
            assert!(seen.insert((a, b)), "duplicate {a}-{b}");
            let known = a == b || (a, b) == (0, 3) || (a, b) == (3, 0);
            assert!(
                known || ([1, 2].contains(&a) && [1, 2].contains(&b)),
                "{a}-{b}"
            );
        }
        assert!((0..5).all(|v| seen.contains(&(v, v))));
        assert!(seen.contains(&(0, 3)) && seen.contains(&(3, 0)));
        assert!(seen.contains(&(1, 2)) && seen.contains(&(2, 1)));
    }

    fn tiny(rng: &mut Rng) -> AutoCf {
        let graph = tiny_graph();
        let cfg = ModelConfig {
            backbone: "autocf".into(),
            dim: 4,
            layers: 2,
            autocf: AutoCfConfig {
                heads: 2,
                seeds: 1,
                ..AutoCfConfig::default()
            },
            ..ModelConfig::default()
        };
        AutoCf::new(
            &cfg,
            BuildContext {
                n_users: 3,
                n_items: 4,
                graph,
                device: &Device::Cpu,
                rng,
            },
        )
        .unwrap()
    }

    /// The transformer layer equals a hand-written per-node softmax attention.
    #[test]
    fn transformer_by_hand() {
        let mut rng = Rng::new(4);
        let m = tiny(&mut rng);
        let e: Vec<Vec<f32>> = (0..7)
            .map(|_| (0..4).map(|_| rng.f32() - 0.5).collect())
            .collect();
        let et = Tensor::new(e.clone(), &Device::Cpu).unwrap();
        let got: Vec<Vec<f32>> = m
            .transformer(&et, &m.full_edges)
            .unwrap()
            .to_vec2()
            .unwrap();
        let w = |v: &Var| -> Vec<Vec<f32>> { v.as_tensor().to_vec2().unwrap() };
        let (wq, wk, wv) = (w(&m.wq), w(&m.wk), w(&m.wv));
        let mul = |x: &[f32], w: &Vec<Vec<f32>>| -> Vec<f32> {
            (0..4)
                .map(|j| (0..4).map(|i| x[i] * w[i][j]).sum())
                .collect()
        };
        for r in 0..7 {
            let nbrs = &m.full.indices[m.full.indptr[r]..m.full.indptr[r + 1]];
            let q = mul(&e[r], &wq);
            let mut want = [0f32; 4];
            for h in 0..2 {
                let logits: Vec<f32> = nbrs
                    .iter()
                    .map(|&c| {
                        let k = mul(&e[c as usize], &wk);
                        (0..2)
                            .map(|j| q[2 * h + j] * k[2 * h + j])
                            .sum::<f32>()
                            .clamp(-10.0, 10.0)
                    })
                    .collect();
                let z: f32 = logits.iter().map(|l| l.exp()).sum();
                for (&c, l) in nbrs.iter().zip(&logits) {
                    let v = mul(&e[c as usize], &wv);
                    for j in 0..2 {
                        want[2 * h + j] += l.exp() / (z + 1e-8) * v[2 * h + j];
                    }
                }
            }
            for j in 0..4 {
                assert!(
                    (got[r][j] - want[j]).abs() < 1e-5,
                    "node {r}: {} vs {}",
                    got[r][j],
                    want[j]
                );
            }
        }
    }

    /// The training losses' gradient with respect to the node table matches central
    /// finite differences (consistency scores, masked encoder, transformer, LSE terms) on
    /// a fixed mask.
    #[test]
    fn losses_gradient_matches_finite_differences() {
        let mut rng = Rng::new(6);
        let m = tiny(&mut rng);
        let batch = Batch::new(&[(0, 1, 2), (1, 2, 3), (0, 0, 3)], 3, &Device::Cpu).unwrap();
        let ego0 = m.table.as_tensor().clone();
        let (enc, dec, _) = m.draw_mask(&ego0, &mut Rng::new(9)).unwrap();
        let loss = |ego: &Tensor| -> Tensor {
            let nodes = m.forward(ego, enc.clone(), &dec).unwrap();
            let mut total = m.rank_loss(&nodes, &batch).unwrap().value;
            for t in m.aux_losses(ego, &nodes, &batch, &mut Rng::new(1)).unwrap() {
                total = (total + t.value).unwrap();
            }
            // the infomax term's gradient, noise left out (a constant)
            (total
                - m.consistency(ego)
                    .unwrap()
                    .log()
                    .unwrap()
                    .mean_all()
                    .unwrap())
            .unwrap()
        };
        assert_gradient_matches_finite_differences(&ego0, loss);
    }
}
