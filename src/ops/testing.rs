//! Helpers shared by the fused ops' tests: deterministic inputs and the comparison of
//! gradients with a reference.

use candle_core::backprop::GradStore;
use candle_core::{Device, Var};

/// A `[rows, cols]` variable of deterministic values in `[-1, 1)`, times `scale`.
pub fn var(rows: usize, cols: usize, seed: usize, scale: f32) -> Var {
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| ((((i + seed) * 7919 % 1000) as f32 / 500.0) - 1.0) * scale)
        .collect();
    Var::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
}

/// Every variable in `vars` has the same gradient in `got` and `want`, within `tol`.
pub fn assert_same_gradients(got: &GradStore, want: &GradStore, vars: &[&Var], tol: f32) {
    for (i, v) in vars.iter().enumerate() {
        let d = super::max_abs_diff(
            got.get(v.as_tensor()).expect("gradient"),
            want.get(v.as_tensor()).expect("reference gradient"),
        );
        assert!(d < tol, "input {i}: gradient differs by {d}");
    }
}
