//! Runs `n` independent jobs on up to `concurrency` scoped threads and returns their
//! results in job order. Small on purpose: the jobs are blocking HTTP calls.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `f(0), ..., f(n-1)` computed by at most `concurrency` threads; results in index order.
pub(crate) fn run_indexed<T, F>(n: usize, concurrency: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync,
{
    let workers = concurrency.max(1).min(n);
    if workers <= 1 {
        return (0..n).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break done;
                        }
                        done.push((i, f(i)));
                    }
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(done) => {
                    for (i, v) in done {
                        slots[i] = Some(v);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    slots
        .into_iter()
        .map(|v| v.expect("every index is taken by exactly one worker"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn results_keep_job_order() {
        let out = run_indexed(20, 4, |i| {
            std::thread::sleep(Duration::from_millis(((20 - i) % 5) as u64));
            i * i
        });
        assert_eq!(out, (0..20).map(|i| i * i).collect::<Vec<_>>());
        assert!(run_indexed(0, 4, |i| i).is_empty());
    }

    #[test]
    fn at_most_concurrency_jobs_run_at_once() {
        let live = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        run_indexed(12, 3, |_| {
            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            live.fetch_sub(1, Ordering::SeqCst);
        });
        let p = peak.load(Ordering::SeqCst);
        assert!((2..=3).contains(&p), "peak {p}");
    }
}
