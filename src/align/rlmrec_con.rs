//! RLMRec-Con (Ren et al., WWW 2024, section 3.3.1): contrastive alignment. The semantic
//! vectors go through an MLP `f` into the collaborative space; a cosine InfoNCE pulls each
//! batch user's final embedding towards its own `f(e_L)` against all users' `f(e_L)`, and
//! each positive and negative item towards its own against the in-batch items.
//! `loss = kd_weight * (user + pos + neg) / batch` (SPEC.md section 1).

use super::mlp::Mlp;
use super::{AlignContext, AlignInput, Alignment, SemanticTables};
use crate::ops::rowwise::l2_normalize;
use crate::ops::similarity::info_nce_weighted;
use crate::rng::Rng;
use crate::step::{distinct_with_counts, LossTerm};
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConConfig {
    pub kd_weight: f64,
    pub tau: f64,
}

impl Default for ConConfig {
    fn default() -> Self {
        Self {
            kd_weight: 1e-2,
            tau: 0.2,
        }
    }
}

pub struct RlmrecCon {
    cfg: ConConfig,
    mlp: Mlp,
    sem: SemanticTables,
}

impl RlmrecCon {
    pub fn new(cfg: &ConConfig, ctx: AlignContext) -> Result<Self> {
        let mlp = Mlp::new(ctx.sem.dim, ctx.out_dim, ctx.device, ctx.rng)?;
        Ok(Self {
            cfg: cfg.clone(),
            mlp,
            sem: ctx.sem,
        })
    }
}

impl Alignment for RlmrecCon {
    fn name(&self) -> &'static str {
        "rlmrec_con"
    }
    fn params(&self) -> Vec<(String, Var)> {
        self.mlp.params("mlp")
    }
    fn losses(&mut self, input: &AlignInput, _rng: &mut Rng) -> Result<Vec<LossTerm>> {
        let b = input.batch;
        let nodes = input.nodes;
        let dev = nodes.device();
        let tau = self.cfg.tau;
        // Repeated batch rows are computed once and weighted by their count (same loss,
        // see `info_nce_weighted`): 4096 draws hold far fewer distinct users and items.
        // The user term needs every user's projection (negatives: all users).
        let users_prf = l2_normalize(&self.mlp.forward(&self.sem.users)?)?;
        let (users, counts) = distinct_with_counts(&b.users);
        let idx = Tensor::from_slice(&users, users.len(), dev)?;
        let anc = l2_normalize(&nodes.index_select(&idx, 0)?)?;
        let anc_prf = users_prf.index_select(&idx, 0)?;
        let user_term = info_nce_weighted(&anc, &anc_prf, &users_prf, tau, Some(counts), None)?;
        // RLMRec projects every item each step and gathers the batch's rows; the item terms
        // read no other row (their candidates are in-batch), so only the batch's distinct
        // items are projected, once for both terms: the same loss and gradients at a
        // fraction of the MLP's cost when there are many items.
        let (batch_items, _) = distinct_with_counts(&[&b.pos[..], &b.neg[..]].concat());
        let rows = Tensor::from_slice(&batch_items, batch_items.len(), dev)?;
        let items_prf = self.mlp.forward(&self.sem.items.index_select(&rows, 0)?)?;
        let off = input.n_users as u32;
        let item_term = |batch_items_here: &[u32]| -> Result<Tensor> {
            let (items, counts) = distinct_with_counts(batch_items_here);
            let node_ids: Vec<u32> = items.iter().map(|i| i + off).collect();
            // rows of `items_prf`: positions in the sorted `batch_items`
            let local: Vec<u32> = items
                .iter()
                .map(|i| batch_items.binary_search(i).expect("a batch item") as u32)
                .collect();
            let idx = Tensor::from_slice(&local, local.len(), dev)?;
            let node_idx = Tensor::from_slice(&node_ids, node_ids.len(), dev)?;
            let e = l2_normalize(&nodes.index_select(&node_idx, 0)?)?;
            let prf = l2_normalize(&items_prf.index_select(&idx, 0)?)?;
            // in-batch candidates: the same multiset as the anchors
            info_nce_weighted(&e, &prf, &prf, tau, Some(counts.clone()), Some(counts))
        };
        let pos = item_term(&b.pos)?;
        let neg = item_term(&b.neg)?;
        let total = ((user_term + pos)? + neg)?;
        let loss = (total * (self.cfg.kd_weight / b.len() as f64))?;
        Ok(vec![LossTerm::new("kd", loss)])
    }
    /// `f(e_L)`, the MLP that the contrastive loss pulls towards `e_C` (by cosine: the
    /// direction is aligned, the norm is not; callers rescale).
    fn text_to_collaborative(&self, e_l: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.mlp.forward(e_l)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::similarity::info_nce_reference;
    use crate::step::Batch;
    use candle_core::Device;

    fn table(rows: usize, cols: usize, seed: u64) -> Tensor {
        let mut r = Rng::new(seed);
        let v: Vec<f32> = (0..rows * cols).map(|_| r.f32() - 0.5).collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    /// The loss on distinct rows equals RLMRec's formula on the batch rows as drawn, with
    /// repeated users and items (the formula written out with plain candle ops here).
    #[test]
    fn loss_equals_the_formula_on_repeated_batch_rows() {
        let dev = Device::Cpu;
        let (n_users, n_items, d) = (5, 4, 3);
        let sem = SemanticTables::new(table(n_users, 6, 1), table(n_items, 6, 2)).unwrap();
        let mut rng = Rng::new(3);
        let cfg = ConConfig::default();
        let mut con = RlmrecCon::new(
            &cfg,
            AlignContext {
                sem: sem.clone(),
                out_dim: d,
                ego_dim: d,
                device: &dev,
                rng: &mut rng,
            },
        )
        .unwrap();
        let triples = [
            (0, 1, 2),
            (3, 1, 0),
            (0, 2, 2),
            (4, 1, 3),
            (0, 3, 2),
            (2, 0, 1),
        ];
        let batch = Batch::new(&triples, n_users, &dev).unwrap();
        let nodes = table(n_users + n_items, d, 4);
        let ego = nodes.clone();
        let input = AlignInput {
            ego: &ego,
            nodes: &nodes,
            n_users,
            batch: &batch,
        };
        let got_t = con.losses(&input, &mut rng).unwrap()[0].value.clone();
        // RLMRec as written: every batch row, every item projected, all users / all batch
        // items as candidates
        let tau = cfg.tau;
        let users_prf = l2_normalize(&con.mlp.forward(&sem.users).unwrap()).unwrap();
        let items_prf = con.mlp.forward(&sem.items).unwrap();
        let anc = l2_normalize(&nodes.index_select(&batch.user_nodes, 0).unwrap()).unwrap();
        let anc_prf = users_prf.index_select(&batch.user_nodes, 0).unwrap();
        let mut want_t = info_nce_reference(&anc, &anc_prf, &users_prf, tau).unwrap();
        for (node_idx, items) in [
            (&batch.pos_nodes, &batch.pos),
            (&batch.neg_nodes, &batch.neg),
        ] {
            let idx = Tensor::from_slice(items, items.len(), &dev).unwrap();
            let e = l2_normalize(&nodes.index_select(node_idx, 0).unwrap()).unwrap();
            let prf = l2_normalize(&items_prf.index_select(&idx, 0).unwrap()).unwrap();
            want_t = (want_t + info_nce_reference(&e, &prf, &prf, tau).unwrap()).unwrap();
        }
        let want_t = (want_t * (cfg.kd_weight / triples.len() as f64)).unwrap();
        let (got, want) = (
            got_t.to_scalar::<f32>().unwrap(),
            want_t.to_scalar::<f32>().unwrap(),
        );
        assert!(
            (got - want).abs() < 1e-6 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
        // the same gradients for the MLP, which projects only the batch's items here
        let (g_got, g_want) = (got_t.backward().unwrap(), want_t.backward().unwrap());
        for (name, var) in con.params() {
            let (a, b) = (g_got.get(&var).unwrap(), g_want.get(&var).unwrap());
            let diff = crate::ops::max_abs_diff(a, b);
            let scale = crate::ops::max_abs_diff(b, &b.zeros_like().unwrap());
            assert!(scale > 0.0, "{name}: no gradient");
            assert!(diff <= 1e-5 * scale, "{name}: {diff} (scale {scale})");
        }
    }
}
