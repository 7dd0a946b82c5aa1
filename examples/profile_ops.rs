//! Timing of the fused similarity ops and the projection MLP at DaRec/RLMRec sizes.
use candle_core::{Device, Tensor, Var};
use darec::ops::similarity::*;
use darec::rng::Rng;
use std::time::Instant;

fn rand(n: usize, d: usize, seed: u64) -> Var {
    let mut r = Rng::new(seed);
    Var::from_vec(
        (0..n * d).map(|_| r.f32() - 0.5).collect::<Vec<_>>(),
        (n, d),
        &Device::Cpu,
    )
    .unwrap()
}
fn time(label: &str, f: &dyn Fn()) {
    f();
    let t = Instant::now();
    for _ in 0..3 {
        f();
    }
    println!(
        "{label}: {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0 / 3.0
    );
}
fn main() {
    let a = rand(4096, 32, 1);
    let all = rand(11000, 32, 2);
    time("info_nce fwd B=4096 M=11000", &|| {
        info_nce(a.as_tensor(), a.as_tensor(), all.as_tensor(), 0.2).unwrap();
    });
    time("info_nce fwd+bwd", &|| {
        info_nce(a.as_tensor(), a.as_tensor(), all.as_tensor(), 0.2)
            .unwrap()
            .backward()
            .unwrap();
    });
    time("uniformity fwd+bwd n=4096", &|| {
        uniformity(a.as_tensor(), 2.0).unwrap().backward().unwrap();
    });
    let b = rand(4096, 32, 3);
    time("gram_mse fwd+bwd n=4096", &|| {
        gram_mse(a.as_tensor(), b.as_tensor())
            .unwrap()
            .backward()
            .unwrap();
    });
    let mut rng = Rng::new(0);
    let mlp = darec::align::mlp::Mlp::new(384, 32, &Device::Cpu, &mut rng).unwrap();
    let x = rand(11000, 384, 4);
    time("mlp fwd [11000,384]", &|| {
        mlp.forward(x.as_tensor()).unwrap();
    });
    time("mlp fwd+bwd", &|| {
        mlp.forward(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
    });
    let w = rand(384, 208, 5);
    time("plain matmul [11000,384]x[384,208]", &|| {
        x.as_tensor().matmul(w.as_tensor()).unwrap();
    });
    let h = x.as_tensor().matmul(w.as_tensor()).unwrap();
    time("leaky relu [11000,208]", &|| {
        darec::align::mlp::leaky_relu(&h).unwrap();
    });
    time("l2_normalize [11000,32]", &|| {
        l2_normalize(all.as_tensor()).unwrap();
    });
}
