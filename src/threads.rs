//! One thread budget for darec's own parallel loops (rayon) and for candle's CPU kernels.
//!
//! candle 0.11 runs its element-wise CPU ops on a second pool of its own ("candle-bp-*"
//! threads), sized from `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` or the physical core
//! count, whose workers spin up to 25,000 `pause`s after every op before they sleep.
//! darec's hot loops (sparse products, fused losses, Adam) run on rayon, so on a small
//! machine those spinning workers take cores from them, and `--threads 1` still left one
//! spinning candle worker running beside the rayon thread. Measured on RLMRec yelp, a
//! LightGCN step (`examples/profile_step.rs`, 2 threads, 60 steps, three interleaved
//! rounds): 8.8 / 10.0 / 10.7 ms with candle's defaults, 8.7 / 8.0 / 8.6 ms with the spin
//! limit below; Adam's share fell from 0.7 to 0.4 ms.
//!
//! [`configure`] must run before the first candle op and before other threads start (it
//! sets environment variables); the CLI and the benchmarks call it first thing. Variables
//! the environment already sets are left alone.

/// Spins of an idle candle worker before it parks (candle's default is 25,000).
const CANDLE_SPIN_LIMIT: &str = "1000";

/// Sizes rayon's global pool and candle's pool to `threads` (0: all cores).
pub fn configure(threads: usize) -> anyhow::Result<()> {
    let set_default = |key: &str, value: &str| {
        if std::env::var_os(key).is_none() {
            // SAFETY (edition 2021: safe fn): called at start-up, before other threads run.
            std::env::set_var(key, value);
        }
    };
    set_default("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_SPIN_LIMIT);
    if threads > 0 {
        set_default("CANDLE_NUM_THREADS", &threads.to_string());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| anyhow::anyhow!("thread pool: {e}"))
}
