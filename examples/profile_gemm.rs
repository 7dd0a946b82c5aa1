use darec::ops::dense::a_bt;
use std::time::Instant;
fn main() {
    let a: Vec<f32> = (0..4096 * 32).map(|i| (i % 7) as f32).collect();
    let b: Vec<f32> = (0..11000 * 32).map(|i| (i % 5) as f32).collect();
    for _ in 0..2 {
        let t = Instant::now();
        let c = a_bt(&a, &b, 4096, 11000, 32, 1.0);
        println!(
            "a_bt 4096x11000x32: {:.1} ms ({})",
            t.elapsed().as_secs_f64() * 1e3,
            c[5]
        );
    }
    let dev = candle_core::Device::Cpu;
    let ta = candle_core::Tensor::from_slice(&a, (4096, 32), &dev).unwrap();
    let tb = candle_core::Tensor::from_slice(&b, (11000, 32), &dev).unwrap();
    for _ in 0..2 {
        let t = Instant::now();
        let c = ta.matmul(&tb.t().unwrap()).unwrap();
        println!(
            "candle matmul: {:.1} ms {:?}",
            t.elapsed().as_secs_f64() * 1e3,
            c.dims()
        );
    }
    let t = Instant::now();
    let mut v = vec![0.5f32; 4096 * 11000];
    let s: f32 = v
        .iter_mut()
        .map(|x| {
            *x = darec::ops::fastmath::fast_exp(*x);
            *x
        })
        .sum();
    println!(
        "45M fast_exp: {:.1} ms {s}",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let v2 = vec![0f32; 4096 * 11000];
    println!(
        "alloc+zero 180MB: {:.1} ms {}",
        t.elapsed().as_secs_f64() * 1e3,
        v2[77]
    );
}
