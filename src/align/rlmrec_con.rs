//! RLMRec-Con (Ren et al., WWW 2024, section 3.3.1): contrastive alignment. The semantic
//! vectors go through an MLP `f` into the collaborative space; a cosine InfoNCE pulls each
//! batch user's final embedding towards its own `f(e_L)` against all users' `f(e_L)`, and
//! each positive and negative item towards its own against the in-batch items.
//! `loss = kd_weight * (user + pos + neg) / batch` (SPEC.md section 1).

use super::mlp::Mlp;
use super::{AlignContext, AlignInput, Alignment, SemanticTables};
use crate::backbone::LossTerm;
use crate::ops::similarity::{info_nce, l2_normalize};
use crate::rng::Rng;
use candle_core::{Result, Var};
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
        // the user term needs every user's projection (negatives: all users)
        let users_prf = l2_normalize(&self.mlp.forward(&self.sem.users)?)?;
        let anc = l2_normalize(&nodes.index_select(&b.user_nodes, 0)?)?;
        let anc_prf = users_prf.index_select(&b.user_nodes, 0)?;
        let user_term = info_nce(&anc, &anc_prf, &users_prf, self.cfg.tau)?;
        // as RLMRec: project every item once per step, then gather the batch's rows
        // (cheaper than projecting the 2 x batch gathered rows whenever items < 2 x batch)
        let items_prf = self.mlp.forward(&self.sem.items)?;
        let item_term = |nodes_idx: &candle_core::Tensor,
                         item_idx: &[u32]|
         -> Result<candle_core::Tensor> {
            let idx = candle_core::Tensor::from_slice(item_idx, item_idx.len(), nodes.device())?;
            let e = l2_normalize(&nodes.index_select(nodes_idx, 0)?)?;
            let prf = l2_normalize(&items_prf.index_select(&idx, 0)?)?;
            info_nce(&e, &prf, &prf, self.cfg.tau)
        };
        let pos = item_term(&b.pos_nodes, &b.pos)?;
        let neg = item_term(&b.neg_nodes, &b.neg)?;
        let total = ((user_term + pos)? + neg)?;
        let loss = (total * (self.cfg.kd_weight / b.len() as f64))?;
        Ok(vec![LossTerm::new("kd", loss)])
    }
}
