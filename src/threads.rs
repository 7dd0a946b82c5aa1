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

//!
//! [`configure`] also flushes subnormal floats to zero on the calling thread and on every
//! rayon worker ([`flush_subnormals`]). Arithmetic on subnormals (|x| < 1.2e-38 in f32)
//! takes a slow microcode path on x86: a DaRec run on GCCF (ML-1M, n_hat 512, one thread)
//! slowed from 3 s to 37 s an epoch over 147 epochs, 88% of it in the products of the
//! heads' backward pass, as its gradients shrank into that range.

/// Sizes rayon's global pool to `threads` (0: all cores), turns candle's own pool off, and
/// flushes subnormals to zero on this thread and on rayon's.
pub fn configure(threads: usize) -> anyhow::Result<()> {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Safe in edition 2021; sound here because no other thread runs yet.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    flush_subnormals();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| flush_subnormals())
        .build_global()
        .map_err(|e| anyhow::anyhow!("thread pool: {e}"))
}

/// Sets this thread's floating-point unit to flush subnormal results to zero and to read
/// subnormal inputs as zero (x86's FTZ and DAZ bits of MXCSR; aarch64's FZ bit of FPCR).
/// Values that small are far below anything training resolves (weights, gradients and
/// scores live above 1e-30), and the slow path they take costs up to 100x per operation.
/// Elsewhere a no-op.
pub fn flush_subnormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads and writes this thread's MXCSR; FTZ (bit 15) and DAZ (bit 6) change
    // only how subnormals round, no exception is unmasked.
    unsafe {
        let mut csr: u32 = 0;
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads and writes this thread's FPCR; FZ (bit 24) changes only how
    // subnormals round.
    unsafe {
        let mut fpcr: u64;
        std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
        fpcr |= 1 << 24;
        std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack));
    }
}

#[cfg(test)]
mod tests {
    /// After `flush_subnormals`, a product that would be subnormal is zero, on this thread
    /// and (through `configure`'s start handler) on a rayon worker built the same way.
    #[test]
    fn subnormal_results_are_flushed_to_zero() {
        let tiny = std::hint::black_box(1e-20f32);
        let on_a_fresh_thread = std::thread::spawn(move || {
            let before = std::hint::black_box(tiny) * std::hint::black_box(tiny);
            super::flush_subnormals();
            let after = std::hint::black_box(tiny) * std::hint::black_box(tiny);
            (before, after)
        })
        .join()
        .unwrap();
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert!(on_a_fresh_thread.0 > 0.0 && on_a_fresh_thread.0.is_subnormal());
            assert_eq!(on_a_fresh_thread.1, 0.0);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .start_handler(|_| super::flush_subnormals())
            .build()
            .unwrap();
        let in_pool = pool.install(|| std::hint::black_box(tiny) * std::hint::black_box(tiny));
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert_eq!(in_pool, 0.0);
        }
    }
}
