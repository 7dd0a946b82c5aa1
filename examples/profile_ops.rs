//! Timing of the fused similarity ops and the projection MLP at RLMRec/DaRec sizes
//! and of exp against libm (development aid): `cargo run --release --example profile_ops -- 4096 942`.
#[path = "support/timing.rs"]
mod timing;

use candle_core::{Device, Var};
use darec::ops::similarity::*;
use darec::rng::Rng;

fn rand(n: usize, d: usize, seed: u64) -> Var {
    let mut r = Rng::new(seed);
    Var::from_vec(
        (0..n * d).map(|_| r.f32() - 0.5).collect::<Vec<_>>(),
        (n, d),
        &Device::Cpu,
    )
    .unwrap()
}
fn time(label: &str, reps: usize, f: impl FnMut()) {
    timing::time(label, reps, f);
}

fn main() {
    darec::threads::configure(0).expect("threads");
    darec::alloc::keep_freed_memory();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (b, m) = (
        args.first().copied().unwrap_or(4096),
        args.get(1).copied().unwrap_or(11000),
    );
    let a = rand(b, 32, 1);
    let all = rand(m, 32, 2);
    time(&format!("info_nce fwd B={b} M={m}"), 5, || {
        info_nce(a.as_tensor(), a.as_tensor(), all.as_tensor(), 0.2).unwrap();
    });
    time("info_nce fwd+bwd", 5, || {
        info_nce(a.as_tensor(), a.as_tensor(), all.as_tensor(), 0.2)
            .unwrap()
            .backward()
            .unwrap();
    });
    time("info_nce_reference fwd+bwd", 5, || {
        info_nce_reference(a.as_tensor(), a.as_tensor(), all.as_tensor(), 0.2)
            .unwrap()
            .backward()
            .unwrap();
    });
    let n = b.min(m);
    let x = rand(n, 32, 3);
    let y = rand(n, 32, 4);
    time(&format!("uniformity fwd+bwd n={n}"), 5, || {
        uniformity(x.as_tensor(), 2.0).unwrap().backward().unwrap();
    });
    time(&format!("gram_mse fwd+bwd n={n}"), 5, || {
        gram_mse(x.as_tensor(), y.as_tensor())
            .unwrap()
            .backward()
            .unwrap();
    });
    let mut rng = Rng::new(0);
    let mlp = darec::align::mlp::Mlp::new(384, 32, &Device::Cpu, &mut rng).unwrap();
    let e = rand(m, 384, 5);
    time(&format!("mlp fwd+bwd [{m},384]"), 5, || {
        mlp.forward(e.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
    });
    let a1: Vec<f32> = (0..b * 32).map(|i| (i % 7) as f32).collect();
    let b1: Vec<f32> = (0..m * 32).map(|i| (i % 5) as f32).collect();
    time("a_bt gemm", 5, || {
        darec::ops::dense::a_bt(&a1, &b1, b, m, 32, 1.0);
    });
    let c1 = darec::ops::dense::a_bt(&a1, &b1, b, m, 32, 1.0);
    time("at_b gemm [b,m]^T x [b,32]", 5, || {
        let mut out = vec![0f32; m * 32];
        darec::ops::dense::at_b_into(&c1, &a1, m, 32, b, 1.0, &mut out, false);
    });
    time("a_b gemm [b,m] x [m,32]", 5, || {
        let mut out = vec![0f32; b * 32];
        darec::ops::dense::a_b_into(&c1, &b1, b, 32, m, 1.0, &mut out, false);
    });
    let src: Vec<f32> = (0..b * m)
        .map(|i| ((i % 1000) as f32) / 100.0 - 5.0)
        .collect();
    let mut v = src.clone();
    time(&format!("fast exp in place x{}", v.len()), 3, || {
        v.copy_from_slice(&src);
        darec::ops::fastmath::vectorized(|| {
            darec::ops::fastmath::exp_shifted_in_place(&mut v, 0.0)
        });
    });
    time(&format!("libm exp in place x{}", v.len()), 3, || {
        v.copy_from_slice(&src);
        v.iter_mut().for_each(|x| *x = x.exp());
    });
}
