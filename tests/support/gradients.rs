//! The contract check shared by the backbone and alignment tests: after a backward pass,
//! every parameter of the model has a finite, non-zero gradient.

use candle_core::backprop::GradStore;
use darec::train::Model;

pub fn assert_every_param_has_a_gradient(model: &Model, grads: &GradStore, label: &str) {
    for (name, var) in model.params() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{label}: no gradient for {name}"));
        let s = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            s.is_finite() && s > 0.0,
            "{label}: gradient of {name} is {s}"
        );
    }
}
