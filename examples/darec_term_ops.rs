//! Forward + backward time of the building blocks of DaRec's terms at the paper's
//! `N_hat = 4096`, `d = 32`: each fused op beside its plain-candle reference, and the
//! projection heads (development aid; the benchmark is benches/alignment_cost.rs).
//! `cargo run --release --example darec_term_ops`
use candle_core::{Device, Result, Tensor, Var};
use darec::align::mlp::{Linear, Mlp};
use darec::ops::gram_identity::{gram_mse_identity, gram_mse_identity_reference};
use darec::ops::rowwise::{
    centre, centre_reference, l2_normalize, l2_normalize_reference, mean_cos_sq,
    mean_cos_sq_reference,
};
use darec::ops::similarity::uniformity;
use std::time::Instant;

/// Median and fastest of 50 timed calls after 5 warm-up calls.
fn time(name: &str, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    for _ in 0..5 {
        f()?;
    }
    let mut ms: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            f().map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:48} median {:7.3} ms  fastest {:7.3} ms",
        ms[25], ms[0]
    );
    Ok(())
}

fn main() -> Result<()> {
    darec::threads::configure(0).map_err(candle_core::Error::wrap)?;
    darec::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1., (4096, 32), &dev)?;
    let y = Var::randn(0f32, 1., (4096, 32), &dev)?;
    let (x, y) = (x.as_tensor(), y.as_tensor());
    let w = Tensor::randn(0f32, 1., (4096, 32), &dev)?;
    let backward = |l: Tensor| l.backward().map(|_| ());
    type Map = fn(&Tensor) -> Result<Tensor>;
    type Pair = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let sides: [(&str, Map, Map, Pair, Pair); 2] = [
        (
            "fused",
            l2_normalize,
            centre,
            mean_cos_sq,
            gram_mse_identity,
        ),
        (
            "plain candle",
            l2_normalize_reference,
            centre_reference,
            mean_cos_sq_reference,
            gram_mse_identity_reference,
        ),
    ];
    for (side, norm, cen, cos2, gram) in sides {
        time(&format!("{side}: l2_normalize"), || {
            // weighted, so the upstream gradient is a plain contiguous tensor
            backward((norm(x)? * &w)?.sum_all()?)
        })?;
        time(&format!("{side}: orthogonality (mean cos^2)"), || {
            backward(cos2(x, y)?)
        })?;
        time(&format!("{side}: global, normalised"), || {
            backward(gram(&norm(x)?, &norm(y)?)?)
        })?;
        time(&format!("{side}: global, centred + normalised"), || {
            backward(gram(&norm(&cen(x)?)?, &norm(&cen(y)?)?)?)
        })?;
    }
    time("uniformity, 1024 normalised rows", || {
        backward(uniformity(&l2_normalize(&x.narrow(0, 0, 1024)?)?, 2.0)?)
    })?;
    let mut rng = darec::rng::Rng::new(1);
    let sem = Tensor::randn(0f32, 1., (4096, 384), &dev)?;
    let linear = Linear::new(384, 32, &dev, &mut rng)?;
    let mlp = Mlp::new(384, 32, &dev, &mut rng)?;
    let c_head = Linear::new(32, 32, &dev, &mut rng)?;
    time("language head, linear 384 -> 32", || {
        backward((linear.forward(&sem)? * &w)?.sum_all()?)
    })?;
    time("language head, MLP 384 -> 208 -> 32", || {
        backward((mlp.forward(&sem)? * &w)?.sum_all()?)
    })?;
    time("collaborative head, linear 32 -> 32", || {
        backward((c_head.forward(x)? * &w)?.sum_all()?)
    })?;
    Ok(())
}
