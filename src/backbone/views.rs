//! What SGL and SimGCL share (RLMRec's implementations, SPEC.md section 2): a clean
//! LightGCN view for BPR (sum of layers 0..L on the full graph, no dropout) and a cosine
//! InfoNCE between two augmented views of the same batch: row `b` of view 1 against its
//! own row in view 2, with every user (for users) or every item (for items) of view 2 as
//! candidates; summed over the batch rows as drawn, divided by the batch size, times
//! `cl_weight`.

use crate::ops::rowwise::l2_normalize;
use crate::ops::similarity::info_nce_weighted;
use crate::rng::Rng;
use crate::step::{distinct_with_counts, Batch, LossTerm};
use candle_core::{Result, Tensor};

/// Which batch rows are contrasted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Users,
    PosItems,
    NegItems,
}

/// `cl_weight / B * sum_{rows} InfoNCE(view1[rows], view2[rows]; all of their kind in
/// view2)` for two views `[U+I, d]` of every node.
pub fn contrast(
    v1: &Tensor,
    v2: &Tensor,
    batch: &Batch,
    n_users: usize,
    rows: &[Rows],
    tau: f64,
    cl_weight: f64,
) -> Result<Tensor> {
    let n = v1.dim(0)?;
    let (n1, n2) = (l2_normalize(v1)?, l2_normalize(v2)?);
    let users2 = n2.narrow(0, 0, n_users)?;
    let items2 = n2.narrow(0, n_users, n - n_users)?;
    let mut total = Tensor::zeros((), v1.dtype(), v1.device())?;
    // repeated batch rows are computed once, weighted by their count (the same sum)
    for r in rows {
        let (ids, all) = match r {
            Rows::Users => (&batch.user_idx, &users2),
            Rows::PosItems => (&batch.pos_idx, &items2),
            Rows::NegItems => (&batch.neg_idx, &items2),
        };
        let (distinct, counts) = distinct_with_counts(ids);
        let idx = Tensor::from_slice(&distinct, distinct.len(), v1.device())?;
        let a = n1.index_select(&idx, 0)?;
        let p = n2.index_select(&idx, 0)?;
        total = (total + info_nce_weighted(&a, &p, all, tau, Some(counts), None)?)?;
    }
    total * (cl_weight / batch.len().max(1) as f64)
}

/// How a backbone contrasts two views (SGL, SimGCL).
pub struct TwoViews<'a> {
    pub n_users: usize,
    pub rows: &'a [Rows],
    pub tau: f64,
    pub cl_weight: f64,
}

impl TwoViews<'_> {
    /// The `cl` term from two views drawn by `view` (none when `cl_weight` is 0).
    pub fn term(
        &self,
        batch: &Batch,
        rng: &mut Rng,
        mut view: impl FnMut(&mut Rng) -> Result<Tensor>,
    ) -> Result<Vec<LossTerm>> {
        if self.cl_weight == 0.0 {
            return Ok(Vec::new());
        }
        let v1 = view(rng)?;
        let v2 = view(rng)?;
        let cl = contrast(
            &v1,
            &v2,
            batch,
            self.n_users,
            self.rows,
            self.tau,
            self.cl_weight,
        )?;
        Ok(vec![LossTerm::new("cl", cl)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::similarity::info_nce_reference;
    use crate::rng::Rng;
    use candle_core::Device;

    /// RLMRec's `cal_infonce_loss` written out with plain candle ops on the batch rows as
    /// drawn (repeats included) equals the term.
    #[test]
    fn contrast_equals_rlmrecs_formula() {
        let dev = Device::Cpu;
        let (nu, ni, d) = (4, 5, 3);
        let mut r = Rng::new(2);
        let mut t = || {
            let v: Vec<f32> = (0..(nu + ni) * d).map(|_| r.f32() - 0.5).collect();
            Tensor::from_vec(v, (nu + ni, d), &dev).unwrap()
        };
        let (v1, v2) = (t(), t());
        let batch = Batch::new(&[(0, 1, 2), (3, 1, 4), (0, 0, 2)], nu, &dev).unwrap();
        let got = contrast(
            &v1,
            &v2,
            &batch,
            nu,
            &[Rows::Users, Rows::NegItems],
            0.2,
            0.1,
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        let n = |x: &Tensor| l2_normalize(x).unwrap();
        let term = |idx: &Tensor, all: Tensor| {
            info_nce_reference(
                &n(&v1.index_select(idx, 0).unwrap()),
                &n(&v2.index_select(idx, 0).unwrap()),
                &n(&all),
                0.2,
            )
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
        };
        let want = (term(&batch.user_nodes, v2.narrow(0, 0, nu).unwrap())
            + term(&batch.neg_nodes, v2.narrow(0, nu, ni).unwrap()))
            * 0.1
            / 3.0;
        assert!(
            (got - want).abs() < 1e-5 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }
}
