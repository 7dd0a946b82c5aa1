//! Keeps freed heap memory for reuse instead of handing it back to the kernel.
//!
//! A training step allocates and frees many node-table-sized buffers (2-3 MB each on the
//! RLMRec datasets). glibc serves blocks that large with `mmap` and returns them with
//! `munmap` (or trims the heap top), so every step page-faults the same memory back in:
//! measured on RLMRec amazon, a 3-layer propagation took 9.9 ms of which 2.7 ms was the
//! three sparse products, and an epoch 0.91 s against 0.39 s with the settings below
//! (`cargo bench --bench lightgcn`). Resident memory stays at the run's peak instead of
//! shrinking between steps, which for darec's working sets is a few hundred MiB at most.
//!
//! [`keep_freed_memory`] is called by the CLI and by the trainer and evaluator; library
//! users get it through them. It is a no-op on other allocators and platforms, and when the
//! environment sets `DAREC_KEEP_FREED_MEMORY=0` (glibc's defaults are kept then).

use std::sync::Once;

static ONCE: Once = Once::new();

/// Tells glibc's malloc to serve large blocks from the heap and never trim it (idempotent).
pub fn keep_freed_memory() {
    ONCE.call_once(|| {
        if std::env::var("DAREC_KEEP_FREED_MEMORY").is_ok_and(|v| v == "0") {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            // blocks up to 1 GiB come from the heap, which is reused after free
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            // never give the top of the heap back to the kernel
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            // grow the heap 64 MiB at a time (address space only until touched)
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    });
}
