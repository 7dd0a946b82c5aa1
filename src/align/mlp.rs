//! The projection MLP of RLMRec (`Linear(d_in, h) -> LeakyReLU -> Linear(h, d_out)`, Xavier
//! init, `h = (d_in + d_out) / 2`), also used for DaRec's language-side heads, and the
//! single linear layer used for DaRec's collaborative-side heads (SPEC.md section 1).

use crate::ops::linear::{linear, Activation};
use crate::rng::Rng;
use candle_core::{Device, Result, Tensor, Var};

/// A dense layer `y = x W + b` with Xavier-uniform `W` and zero `b`.
pub struct Linear {
    pub weight: Var,
    pub bias: Var,
}

impl Linear {
    pub fn new(d_in: usize, d_out: usize, device: &Device, rng: &mut Rng) -> Result<Self> {
        let bound = (6.0 / (d_in + d_out) as f64).sqrt();
        let w: Vec<f32> = (0..d_in * d_out)
            .map(|_| ((rng.f64() * 2.0 - 1.0) * bound) as f32)
            .collect();
        Ok(Self {
            weight: Var::from_tensor(&Tensor::from_vec(w, (d_in, d_out), device)?)?,
            bias: Var::zeros(d_out, candle_core::DType::F32, device)?,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, Activation::Identity)
    }
    /// `act(x W + b)` in one fused op.
    pub fn forward_with(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        linear(x, self.weight.as_tensor(), self.bias.as_tensor(), act)
    }
    pub fn params(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.weight"), self.weight.clone()),
            (format!("{prefix}.bias"), self.bias.clone()),
        ]
    }
}

/// PyTorch's default LeakyReLU slope.
const SLOPE: f64 = 0.01;

pub fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    x.maximum(&(x * SLOPE)?)
}

const LEAKY: Activation = Activation::LeakyRelu(SLOPE as f32);

/// Two-layer MLP with a LeakyReLU between.
pub struct Mlp {
    pub l1: Linear,
    pub l2: Linear,
}

impl Mlp {
    /// `d_in -> (d_in + d_out) / 2 -> d_out`.
    pub fn new(d_in: usize, d_out: usize, device: &Device, rng: &mut Rng) -> Result<Self> {
        let h = (d_in + d_out) / 2;
        Ok(Self {
            l1: Linear::new(d_in, h, device, rng)?,
            l2: Linear::new(h, d_out, device, rng)?,
        })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.l2.forward(&self.l1.forward_with(x, LEAKY)?)
    }
    pub fn params(&self, prefix: &str) -> Vec<(String, Var)> {
        let mut p = self.l1.params(&format!("{prefix}.0"));
        p.extend(self.l2.params(&format!("{prefix}.2")));
        p
    }
}

/// A projection head: the RLMRec MLP or one linear layer (DaRec's `l_heads` switch).
pub enum Head {
    Mlp(Mlp),
    Linear(Linear),
}

impl Head {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Head::Mlp(m) => m.forward(x),
            Head::Linear(l) => l.forward(x),
        }
    }
    pub fn params(&self, prefix: &str) -> Vec<(String, Var)> {
        match self {
            Head::Mlp(m) => m.params(prefix),
            Head::Linear(l) => l.params(prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_bounds_and_leaky_relu() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(0);
        let m = Mlp::new(384, 32, &dev, &mut rng).unwrap();
        assert_eq!(m.l1.weight.dims(), &[384, 208]);
        let bound = (6.0f32 / (384.0 + 208.0)).sqrt();
        let w =
            m.l1.weight
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
        assert!(w.iter().all(|v| v.abs() <= bound));
        let x = Tensor::ones((3, 384), candle_core::DType::F32, &dev).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), &[3, 32]);
        let y = leaky_relu(&Tensor::new(&[-2f32, 0.0, 3.0], &dev).unwrap())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y, vec![-0.02, 0.0, 3.0]);
    }
}
