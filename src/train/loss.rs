//! Losses shared by all backbones: BPR (Rendle et al. 2009) as RLMRec computes it,
//! `mean softplus(s_neg - s_pos)` with `s = <e_u, e_i>` (SPEC.md section 2).

use crate::step::Batch;
use candle_core::{Result, Tensor};

/// Numerically stable `log(1 + exp(x))`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// BPR loss of a batch on final node embeddings `[U+I, d]` (fused op, see `ops::bpr`).
pub fn bpr(nodes: &Tensor, batch: &Batch) -> Result<Tensor> {
    crate::ops::bpr::bpr_loss(
        nodes,
        batch.user_idx.clone(),
        batch.pos_idx.clone(),
        batch.neg_idx.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn softplus_matches_formula_including_large_inputs() {
        let x = Tensor::new(&[-50f32, -1.0, 0.0, 2.0, 60.0], &Device::Cpu).unwrap();
        let y: Vec<f32> = softplus(&x).unwrap().to_vec1().unwrap();
        let want = [0.0f32, 0.3132617, std::f32::consts::LN_2, 2.126928, 60.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// Two users, three items, d=2. Nodes: u0=(1,0) u1=(0,1) i0=(1,1) i1=(2,0) i2=(0,-1).
    /// Triples (u0,i1,i0): s+=2, s-=1 -> softplus(-1)=0.3132617
    ///          (u1,i0,i2): s+=1, s-=-1 -> softplus(-2)=0.1269280
    /// mean = 0.2200948. Gradient checked against finite differences.
    #[test]
    fn bpr_value_and_gradient() {
        let dev = Device::Cpu;
        let data = vec![1f32, 0., 0., 1., 1., 1., 2., 0., 0., -1.];
        let nodes = Var::from_vec(data.clone(), (5, 2), &dev).unwrap();
        let batch = Batch::new(&[(0, 1, 0), (1, 0, 2)], 2, &dev).unwrap();
        let l = bpr(nodes.as_tensor(), &batch).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 0.2200948).abs() < 1e-6);
        let g: Vec<f32> = l
            .backward()
            .unwrap()
            .get(nodes.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let f = |v: &[f32]| {
            let t = Tensor::from_vec(v.to_vec(), (5, 2), &dev).unwrap();
            bpr(&t, &batch).unwrap().to_scalar::<f32>().unwrap() as f64
        };
        for k in 0..data.len() {
            let (mut p, mut m) = (data.clone(), data.clone());
            p[k] += 1e-3;
            m[k] -= 1e-3;
            let fd = (f(&p) - f(&m)) / 2e-3;
            assert!((fd - g[k] as f64).abs() < 1e-4, "k={k} fd={fd} g={}", g[k]);
        }
    }
}
