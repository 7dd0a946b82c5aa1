//! K-means for DaRec's local structure alignment (SPEC.md section 1.5, our choice of
//! method): k-means++ seeding, then a few Lloyd steps, on plain rows. No gradient flows
//! through the assignment; the caller forms centres from the members with autograd.

use crate::ops::fastmath::{axpy, lane_sq_dist, vectorized};
use crate::rng::Rng;
use rayon::prelude::*;

/// Rows assigned per parallel task (a task's rows are ~`ROWS_PER_TASK * k * d` flops).
const ROWS_PER_TASK: usize = 512;

/// Cluster index of every row of `x` (`[n, d]`, row-major) into `k` clusters.
pub fn kmeans(x: &[f32], n: usize, d: usize, k: usize, iters: usize, rng: &mut Rng) -> Vec<usize> {
    assert!(n > 0 && k > 0 && x.len() == n * d);
    let k = k.min(n);
    let dist2 = |i: usize, c: &[f32]| -> f32 { lane_sq_dist(&x[i * d..(i + 1) * d], c) };
    // k-means++ seeding
    let mut centres: Vec<f32> = Vec::with_capacity(k * d);
    let first = rng.uniform_usize(n);
    centres.extend_from_slice(&x[first * d..(first + 1) * d]);
    let mut best: Vec<f32> = vectorized(|| (0..n).map(|i| dist2(i, &centres[0..d])).collect());
    while centres.len() < k * d {
        let total: f64 = best.iter().map(|&v| v as f64).sum();
        let pick = if total <= 0.0 {
            rng.uniform_usize(n)
        } else {
            let mut r = rng.f64() * total;
            let mut chosen = n - 1;
            for (i, &b) in best.iter().enumerate() {
                r -= b as f64;
                if r <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        };
        let c = centres.len() / d;
        centres.extend_from_slice(&x[pick * d..(pick + 1) * d]);
        let centre = &centres[c * d..(c + 1) * d];
        vectorized(|| {
            for (i, b) in best.iter_mut().enumerate() {
                *b = b.min(dist2(i, centre));
            }
        });
    }
    let mut assign = vec![0usize; n];
    for it in 0..=iters {
        // nearest centre of every row (the first on ties), rows in parallel
        let nearest = |i: usize| -> usize {
            let mut bi = 0;
            let mut bd = f32::INFINITY;
            for c in 0..k {
                let dd = dist2(i, &centres[c * d..(c + 1) * d]);
                if dd < bd {
                    bd = dd;
                    bi = c;
                }
            }
            bi
        };
        let changed = assign
            .par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .map(|(t, chunk)| {
                vectorized(|| {
                    let mut changed = false;
                    for (j, a) in chunk.iter_mut().enumerate() {
                        let bi = nearest(t * ROWS_PER_TASK + j);
                        changed |= *a != bi;
                        *a = bi;
                    }
                    changed
                })
            })
            .reduce(|| false, |a, b| a || b);
        if it == iters || (!changed && it > 0) {
            break;
        }
        // update: means of members; an empty cluster keeps its centre
        let mut sums = vec![0f32; k * d];
        let mut counts = vec![0usize; k];
        vectorized(|| {
            for (row, &a) in x.chunks_exact(d).zip(&assign) {
                counts[a] += 1;
                axpy(&mut sums[a * d..(a + 1) * d], 1.0, row);
            }
        });
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centres[c * d + j] = sums[c * d + j] / counts[c] as f32;
                }
            }
        }
    }
    assign
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_well_separated_blobs() {
        // three blobs around (0,0), (10,0), (0,10)
        let mut rng = Rng::new(4);
        let centres = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        let mut x = Vec::new();
        for i in 0..90 {
            let (cx, cy) = centres[i % 3];
            x.push(cx + rng.f32() - 0.5);
            x.push(cy + rng.f32() - 0.5);
        }
        let a = kmeans(&x, 90, 2, 3, 10, &mut Rng::new(1));
        for i in 0..90 {
            for j in 0..90 {
                assert_eq!(a[i] == a[j], i % 3 == j % 3, "rows {i} and {j}");
            }
        }
    }

    #[test]
    fn more_clusters_than_points_and_duplicates() {
        let x = vec![1.0f32, 1.0, 1.0, 1.0];
        let a = kmeans(&x, 2, 2, 5, 3, &mut Rng::new(0));
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|&c| c < 2));
    }

    /// On more rows than one parallel task holds, a converged run is a fixed point of
    /// Lloyd's step: every row sits in the cluster whose mean is nearest (plain distances).
    #[test]
    fn converged_assignment_is_nearest_mean_across_tasks() {
        let (n, d, k) = (3 * ROWS_PER_TASK + 77, 32, 4);
        let mut rng = Rng::new(9);
        let x: Vec<f32> = (0..n * d).map(|_| rng.f32() - 0.5).collect();
        let a = kmeans(&x, n, d, k, 200, &mut Rng::new(2));
        let mut means = vec![0f64; k * d];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[a[i]] += 1;
            for j in 0..d {
                means[a[i] * d + j] += x[i * d + j] as f64;
            }
        }
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        for c in 0..k {
            for j in 0..d {
                means[c * d + j] /= counts[c] as f64;
            }
        }
        let dist = |i: usize, c: usize| -> f64 {
            (0..d)
                .map(|j| (x[i * d + j] as f64 - means[c * d + j]).powi(2))
                .sum()
        };
        for i in 0..n {
            let own = dist(i, a[i]);
            for c in 0..k {
                assert!(own <= dist(i, c) + 1e-5, "row {i}: cluster {} vs {c}", a[i]);
            }
        }
    }

    #[test]
    fn nan_rows_terminate() {
        let mut x = vec![0.5f32; 40 * 3];
        x[7] = f32::NAN;
        x[50] = f32::INFINITY;
        let a = kmeans(&x, 40, 3, 4, 10, &mut Rng::new(0));
        assert_eq!(a.len(), 40);
        assert!(a.iter().all(|&c| c < 4));
    }
}
