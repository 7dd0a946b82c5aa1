//! Helpers shared by the fused ops' tests: deterministic inputs and the comparison of
//! gradients with a reference.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

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

/// The autograd gradient of `f` at `x` matches central finite differences (step 1e-2)
/// at the flat entries `ks`, within `tol`.
pub fn assert_finite_differences(f: impl Fn(&Tensor) -> Tensor, x: &Var, ks: &[usize], tol: f64) {
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let g = f(x.as_tensor()).backward().unwrap();
    let gv = flat(g.get(x.as_tensor()).unwrap());
    let x0 = flat(x.as_tensor());
    let shape = x.as_tensor().shape().clone();
    let at = |v: &[f32]| {
        let t = Tensor::from_vec(v.to_vec(), shape.clone(), &Device::Cpu).unwrap();
        f(&t).to_scalar::<f32>().unwrap() as f64
    };
    for &k in ks {
        let (mut p, mut m) = (x0.clone(), x0.clone());
        p[k] += 1e-2;
        m[k] -= 1e-2;
        let fd = (at(&p) - at(&m)) / 2e-2;
        assert!(
            (fd - gv[k] as f64).abs() < tol,
            "k={k}: fd {fd} vs {}",
            gv[k]
        );
    }
}
