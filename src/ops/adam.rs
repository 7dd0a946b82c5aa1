//! Adam (Kingma & Ba 2015; PyTorch's formulation, SPEC.md section 2: lr 1e-3, weight
//! decay 0) as an in-place candle op on CPU: one fused, parallel pass per parameter
//! instead of the ~10 allocating element-wise ops of candle-nn's AdamW (80-110 ms a step
//! against ~2 ms here, STACK.md). On other devices it falls back to candle-nn's AdamW,
//! which with zero weight decay is the same update.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Var};
use candle_nn::Optimizer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Step count, first moments and second moments of every variable, for checkpoints.
pub type AdamState = (u64, Vec<Vec<f32>>, Vec<Vec<f32>>);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// L2 penalty added to the gradient (PyTorch Adam's `weight_decay`), 0 by default.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

struct Slot {
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

enum Inner {
    Cpu(Vec<Slot>),
    Generic(candle_nn::AdamW),
}

/// Adam over a fixed set of variables.
pub struct Adam {
    cfg: AdamConfig,
    t: u64,
    inner: Inner,
}

impl Adam {
    pub fn new(vars: Vec<Var>, cfg: AdamConfig) -> Result<Self> {
        let on_cpu = vars.iter().all(|v| v.device().is_cpu());
        let inner = if on_cpu {
            Inner::Cpu(
                vars.into_iter()
                    .map(|var| {
                        let n = var.elem_count();
                        Slot {
                            var,
                            m: vec![0.0; n],
                            v: vec![0.0; n],
                        }
                    })
                    .collect(),
            )
        } else {
            if cfg.weight_decay != 0.0 {
                candle_core::bail!("adam: weight_decay is only supported on CPU");
            }
            let p = candle_nn::ParamsAdamW {
                lr: cfg.lr,
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: cfg.eps,
                weight_decay: 0.0,
            };
            Inner::Generic(candle_nn::AdamW::new(vars, p)?)
        };
        Ok(Self { cfg, t: 0, inner })
    }

    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Changes the learning rate for the following steps (warm-up, large batches).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
        if let Inner::Generic(opt) = &mut self.inner {
            opt.set_learning_rate(lr);
        }
    }

    /// Step count and first/second moments of every variable (CPU only; `None` elsewhere).
    pub fn state(&self) -> Option<AdamState> {
        match &self.inner {
            Inner::Cpu(slots) => Some((
                self.t,
                slots.iter().map(|s| s.m.clone()).collect(),
                slots.iter().map(|s| s.v.clone()).collect(),
            )),
            Inner::Generic(_) => None,
        }
    }

    /// Restores a [`state`](Self::state); sizes must match the variables.
    pub fn set_state(&mut self, t: u64, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>) -> Result<()> {
        let Inner::Cpu(slots) = &mut self.inner else {
            candle_core::bail!("adam: optimiser state can only be restored on CPU");
        };
        if m.len() != slots.len() || v.len() != slots.len() {
            candle_core::bail!(
                "adam: saved state has {} variables, the model {}",
                m.len(),
                slots.len()
            );
        }
        for ((slot, m), v) in slots.iter_mut().zip(m).zip(v) {
            if m.len() != slot.m.len() || v.len() != slot.v.len() {
                candle_core::bail!("adam: saved state does not match the parameter sizes");
            }
            slot.m = m;
            slot.v = v;
        }
        self.t = t;
        Ok(())
    }

    /// One update from the gradients in `grads` (variables without a gradient are left alone).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        match &mut self.inner {
            Inner::Generic(opt) => opt.step(grads),
            Inner::Cpu(slots) => {
                let bc1 = 1.0 - self.cfg.beta1.powi(self.t as i32);
                let bc2 = 1.0 - self.cfg.beta2.powi(self.t as i32);
                for slot in slots.iter_mut() {
                    let Some(g) = grads.get(slot.var.as_tensor()) else {
                        continue;
                    };
                    let g = g.contiguous()?;
                    let kernel = AdamKernel {
                        state: Mutex::new((&mut slot.m, &mut slot.v)),
                        lr: self.cfg.lr as f32,
                        b1: self.cfg.beta1 as f32,
                        b2: self.cfg.beta2 as f32,
                        eps: self.cfg.eps as f32,
                        wd: self.cfg.weight_decay as f32,
                        bc1: bc1 as f32,
                        bc2_sqrt: bc2.sqrt() as f32,
                    };
                    slot.var.as_tensor().inplace_op2(&g, &kernel)?;
                }
                Ok(())
            }
        }
    }
}

struct AdamKernel<'a> {
    state: Mutex<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    wd: f32,
    bc1: f32,
    bc2_sqrt: f32,
}

const CHUNK: usize = 1 << 14;

impl InplaceOp2 for AdamKernel<'_> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("adam: parameter and gradient must be contiguous");
        };
        let CpuStorage::F32(p) = s1 else {
            candle_core::bail!("adam: parameters must be f32")
        };
        let g = &s2.as_slice::<f32>()?[g0..g1];
        let p = &mut p[p0..p1];
        let mut guard = self.state.lock().expect("adam state");
        let (m, v) = &mut *guard;
        if p.len() != g.len() || p.len() != m.len() {
            candle_core::bail!("adam: parameter/gradient/state sizes differ");
        }
        let step = self.lr / self.bc1;
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    let gi = g[i] + self.wd * p[i];
                    m[i] = self.b1 * m[i] + (1.0 - self.b1) * gi;
                    v[i] = self.b2 * v[i] + (1.0 - self.b2) * gi * gi;
                    p[i] -= step * m[i] / (v[i].sqrt() / self.bc2_sqrt + self.eps);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Hand-computed Adam steps on a scalar: f(x) = x^2 / 2, x0 = 1, lr = 0.1.
    /// t=1: g=1, m=0.1, v=0.001, m^=1, v^=1 -> x = 1 - 0.1 * 1/(1+1e-8) = 0.9.
    /// t=2: g=0.9, m=0.09+0.09=0.18, v=0.000999+0.00081=0.001809,
    ///      m^=0.18/0.19=0.947368, v^=0.001809/0.001999=0.904952 -> sqrt 0.951290
    ///      x = 0.9 - 0.1 * 0.947368/0.951290 = 0.800412.
    #[test]
    fn matches_hand_computed_steps() {
        let x = Var::from_vec(vec![1f32], 1, &Device::Cpu).unwrap();
        let mut opt = Adam::new(
            vec![x.clone()],
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        )
        .unwrap();
        let want = [0.9f32, 0.800412];
        for w in want {
            let loss = (x.as_tensor().sqr().unwrap() * 0.5)
                .unwrap()
                .sum_all()
                .unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            let got = x.as_tensor().to_vec1::<f32>().unwrap()[0];
            assert!((got - w).abs() < 1e-5, "got {got} want {w}");
        }
    }

    #[test]
    fn agrees_with_candle_nn_adamw_without_decay() {
        let init: Vec<f32> = (0..50_000)
            .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
            .collect();
        let a = Var::from_vec(init.clone(), (500, 100), &Device::Cpu).unwrap();
        let b = Var::from_vec(init, (500, 100), &Device::Cpu).unwrap();
        let mut ours = Adam::new(vec![a.clone()], AdamConfig::default()).unwrap();
        let p = candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut theirs = candle_nn::AdamW::new(vec![b.clone()], p).unwrap();
        let target = Tensor::ones((500, 100), candle_core::DType::F32, &Device::Cpu).unwrap();
        for _ in 0..5 {
            let la = (a.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            ours.step(&la.backward().unwrap()).unwrap();
            let lb = (b.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            theirs.step(&lb.backward().unwrap()).unwrap();
        }
        let d = crate::ops::max_abs_diff(a.as_tensor(), b.as_tensor());
        assert!(d < 1e-6, "max diff {d}");
    }
}
