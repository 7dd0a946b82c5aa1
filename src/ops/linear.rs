//! A dense layer `act(x W + b)` as one candle op: the projection heads of RLMRec-Con/Gen
//! and DaRec (SPEC.md section 1) run it on every semantic vector of a step.
//!
//! Built from plain candle ops, the layer was a matmul, a broadcast bias add and, for the
//! LeakyReLU, a multiply and a maximum, each with its own backward. candle's matmul
//! backward also computes the gradient of its left input whether or not anything needs
//! it: for the MLP's first layer that input is the fixed `[U+I, 384]` table of semantic
//! vectors, so every RLMRec-Con step on ML-1M spent a `9,573 x 208 x 384` product and a
//! 14.7 MB zero-fill-and-add on a gradient nobody reads. Here the backward computes the
//! input's gradient only when the input is tracked, and the bias and activation are
//! applied in the pass that reads the product.

use super::dense::{a_b_into, a_bt, at_b_into};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The activation after the affine map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    /// `max(x, slope * x)` (PyTorch's default slope is 0.01).
    LeakyRelu(f32),
}

/// `act(x W + b)` for `x: [m, k]`, `W: [k, n]`, `b: [n]`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return linear_generic(x, w, b, act);
    }
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp { act })
}

/// The same layer from plain candle ops (reference and non-CPU devices).
pub fn linear_generic(x: &Tensor, w: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
    let y = x.matmul(w)?.broadcast_add(b)?;
    match act {
        Activation::Identity => Ok(y),
        Activation::LeakyRelu(slope) => y.maximum(&(&y * slope as f64)?),
    }
}

struct LinearOp {
    act: Activation,
}

/// Rows per task for the element-wise passes and the bias-gradient partial sums.
const ROWS_PER_TASK: usize = 512;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (k2, n) = l2.shape().dims2()?;
        let nb = l3.shape().dims1()?;
        if k != k2 || nb != n {
            candle_core::bail!("linear: x [{m}, {k}], W [{k2}, {n}] and b [{nb}] do not fit");
        }
        let x = super::cpu_slice(s1, l1, "linear")?;
        let w = super::cpu_slice(s2, l2, "linear")?;
        let b = super::cpu_slice(s3, l3, "linear")?;
        let mut out = vec![0f32; m * n];
        a_b_into(x, w, m, n, k, 1.0, &mut out, false);
        let act = self.act;
        out.par_chunks_mut(ROWS_PER_TASK * n.max(1))
            .for_each(|rows| {
                for row in rows.chunks_exact_mut(n) {
                    for (v, bias) in row.iter_mut().zip(b) {
                        let y = *v + bias;
                        *v = match act {
                            Activation::Identity => y,
                            Activation::LeakyRelu(slope) => y.max(y * slope),
                        };
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = x.dims2()?;
        let n = w.dim(1)?;
        let dev = x.device();
        // gradient before the activation; LeakyReLU keeps the sign, so the output tells
        // which side of zero the input was on
        let dy = grad_res.contiguous()?;
        let dpre: Vec<f32> = super::with_host_slice(&dy, |g| match self.act {
            Activation::Identity => Ok(g.to_vec()),
            Activation::LeakyRelu(slope) => super::with_host_slice(res, |y| {
                g.par_iter()
                    .zip(y.par_iter())
                    .with_min_len(ROWS_PER_TASK * n.max(1))
                    .map(|(g, y)| if *y > 0.0 { *g } else { g * slope })
                    .collect()
            }),
        })??;
        let (dw, dx) = super::with_host_slice(x, |xs| {
            let mut dw = vec![0f32; k * n];
            at_b_into(xs, &dpre, k, n, m, 1.0, &mut dw, false);
            // d x only where something upstream needs it (not for fixed input tables)
            let dx = x
                .track_op()
                .then(|| super::with_host_slice(w, |ws| a_bt(&dpre, ws, m, k, n, 1.0)));
            (dw, dx)
        })?;
        // bias gradient: column sums, partial sums per row block added in block order
        let partials: Vec<Vec<f32>> = dpre
            .par_chunks(ROWS_PER_TASK * n.max(1))
            .map(|rows| {
                let mut s = vec![0f32; n];
                for row in rows.chunks_exact(n) {
                    s.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
                s
            })
            .collect();
        let mut db = vec![0f32; n];
        for p in &partials {
            db.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
        let dx = match dx {
            Some(v) => Some(Tensor::from_vec(v?, (m, k), dev)?),
            None => None,
        };
        Ok((
            dx,
            Some(Tensor::from_vec(dw, (k, n), dev)?),
            Some(Tensor::from_vec(db, n, dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 37 + seed * 11) % 29) as f32 - 14.0) / 9.0)
            .collect()
    }

    /// Value and every gradient against the plain candle layer, with a tracked input.
    #[test]
    fn fused_matches_plain_candle() {
        let dev = Device::Cpu;
        let (m, k, n) = (1100, 7, 5); // more rows than one task
        for act in [Activation::Identity, Activation::LeakyRelu(0.01)] {
            let x = Var::from_vec(values(m * k, 1), (m, k), &dev).unwrap();
            let w = Var::from_vec(values(k * n, 2), (k, n), &dev).unwrap();
            let b = Var::from_vec(values(n, 3), n, &dev).unwrap();
            let pattern = Tensor::from_vec(values(m * n, 4), (m, n), &dev).unwrap();
            let y1 = linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), act).unwrap();
            let y2 = linear_generic(x.as_tensor(), w.as_tensor(), b.as_tensor(), act).unwrap();
            assert!(crate::ops::max_abs_diff(&y1, &y2) < 1e-5, "{act:?} forward");
            let g1 = (&y1 * &pattern)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&y2 * &pattern)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, v) in [("x", &x), ("w", &w), ("b", &b)] {
                let d = crate::ops::max_abs_diff(
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                assert!(d < 1e-3, "{act:?} d{name} differs by {d}");
            }
        }
    }

    /// A fixed input (a plain tensor, as the semantic tables are) gets no gradient, and
    /// the weights' gradients are unchanged by skipping it.
    #[test]
    fn fixed_input_gets_no_gradient() {
        let dev = Device::Cpu;
        let (m, k, n) = (6, 4, 3);
        let x = Tensor::from_vec(values(m * k, 5), (m, k), &dev).unwrap();
        let w = Var::from_vec(values(k * n, 6), (k, n), &dev).unwrap();
        let b = Var::from_vec(values(n, 7), n, &dev).unwrap();
        let act = Activation::LeakyRelu(0.01);
        let g = linear(&x, w.as_tensor(), b.as_tensor(), act)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&x).is_none());
        let r = linear_generic(&x, w.as_tensor(), b.as_tensor(), act)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(
            crate::ops::max_abs_diff(g.get(w.as_tensor()).unwrap(), r.get(w.as_tensor()).unwrap())
                < 1e-5
        );
    }

    /// The weight gradient against central finite differences of a non-linear loss.
    #[test]
    fn weight_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let (m, k, n) = (5, 3, 4);
        let x = Tensor::from_vec(values(m * k, 8), (m, k), &dev).unwrap();
        let b = Tensor::from_vec(values(n, 9), n, &dev).unwrap();
        let w0 = values(k * n, 10);
        let act = Activation::LeakyRelu(0.2);
        let loss = |wv: &[f32]| -> f64 {
            let w = Tensor::from_vec(wv.to_vec(), (k, n), &dev).unwrap();
            linear(&x, &w, &b, act)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let w = Var::from_vec(w0.clone(), (k, n), &dev).unwrap();
        let g = linear(&x, w.as_tensor(), &b, act)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gw: Vec<f32> = g
            .get(w.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let h = 1e-3f32;
        for i in 0..w0.len() {
            let (mut p, mut q) = (w0.clone(), w0.clone());
            p[i] += h;
            q[i] -= h;
            let fd = (loss(&p) - loss(&q)) / (2.0 * h as f64);
            assert!(
                (fd - gw[i] as f64).abs() < 1e-2 * (1.0 + fd.abs()),
                "w[{i}]: fd {fd} vs {}",
                gw[i]
            );
        }
    }
}
