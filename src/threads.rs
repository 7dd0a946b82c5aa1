//! One thread budget for darec's parallel loops (rayon, which the `gemm` products share).
//!
//! candle 0.11 runs its element-wise CPU ops on a second pool of its own ("candle-bp-*"
//! threads), sized from `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` or the physical core
//! count, whose idle workers spin up to 25,000 `pause`s after every op before they sleep.
//! darec's heavy work (sparse products, fused losses, Adam, the dense layers) runs on rayon,
//! so those workers only competed with it for the cores, and `--threads 1` still left one
//! spinning beside the rayon thread. [`configure`] turns candle's pool off
//! (`CANDLE_NUM_THREADS=1`: its element-wise ops run on the calling thread). Measured on
//! ML-1M, 2 threads, 3 epochs, two rounds (s/epoch, candle's pool with 25,000 spins / with
//! 1,000 spins / off): RLMRec-Gen 3.23, 3.16 / 3.38, 3.59 / 2.87, 3.16; RLMRec-Con 8.82,
//! 9.36 / 8.57, 8.35 / 8.33, 8.02; DaRec (n_hat 512) 2.11, 2.17 / 1.90, 1.76 / 1.65, 1.80.
//! Embedding throughput is unchanged (the encoder's work is on rayon too).
//!
//! [`configure`] must run before the first candle op and before other threads start (it
//! sets an environment variable); the CLI and the benchmarks call it first thing. A
//! `CANDLE_NUM_THREADS` the environment already sets is left alone.

/// Sizes rayon's global pool to `threads` (0: all cores) and turns candle's own pool off.
pub fn configure(threads: usize) -> anyhow::Result<()> {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Safe in edition 2021; sound here because no other thread runs yet.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| anyhow::anyhow!("thread pool: {e}"))
}
