use candle_core::{Device, Tensor, Var};
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let x = Var::zeros((20332, 32), candle_core::DType::F32, &Device::Cpu)?;
    let idx = Tensor::from_vec(
        (0..4096u32).map(|k| k * 4 % 20332).collect::<Vec<_>>(),
        4096,
        &Device::Cpu,
    )?;
    let t0 = Instant::now();
    for _ in 0..10 {
        let y = x.index_select(&idx, 0)?;
        let _ = y.sum_all()?.backward()?;
    }
    println!(
        "index_select+sum backward: {:.2} ms",
        t0.elapsed().as_secs_f64() * 100.0
    );
    let t0 = Instant::now();
    for _ in 0..10 {
        let y = x.sum_all()?;
        let _ = y.backward()?;
    }
    println!("sum backward: {:.2} ms", t0.elapsed().as_secs_f64() * 100.0);
    let z = Tensor::zeros((20332, 32), candle_core::DType::F32, &Device::Cpu)?;
    let src = Tensor::ones((4096, 32), candle_core::DType::F32, &Device::Cpu)?;
    let t0 = Instant::now();
    for _ in 0..10 {
        let _ = z.index_add(&idx, &src, 0)?;
    }
    println!("index_add: {:.2} ms", t0.elapsed().as_secs_f64() * 100.0);
    Ok(())
}
