//! Timing helper shared by the profiling examples: one warm-up call, then `reps` timed
//! calls; prints the median and the fastest, since timings on a shared machine are noisy.
use std::time::Instant;

/// Times `f`, prints `label: median .. ms, fastest .. ms`, returns the median in ms.
pub fn time(label: &str, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!(
        "{label}: median {median:.2} ms, fastest {:.2} ms ({} runs)",
        ms[0],
        ms.len()
    );
    median
}
