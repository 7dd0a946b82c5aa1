use std::time::Instant;
fn main() {
    let n = 4096 * 942;
    let mut v: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32) / 1000.0 - 0.5).collect();
    for _ in 0..3 {
        let t = Instant::now();
        let mut s = 0f32;
        for x in v.iter_mut() {
            let e = darec::ops::fastmath::fast_exp(*x);
            *x = e * 0.5;
            s += e;
        }
        println!(
            "fast_exp 3.9M: {:.2} ms ({s})",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let t = Instant::now();
    let mut s = 0f32;
    for x in v.iter_mut() {
        let e = x.exp();
        *x = e * 0.5;
        s += e;
    }
    println!(
        "libm exp 3.9M: {:.2} ms ({s})",
        t.elapsed().as_secs_f64() * 1e3
    );
}
