//! K-means for DaRec's local structure alignment (SPEC.md section 1.5, our choice of
//! method): k-means++ seeding, then a few Lloyd steps, on plain rows. No gradient flows
//! through the assignment; the caller forms centres from the members with autograd.

use crate::rng::Rng;

/// Cluster index of every row of `x` (`[n, d]`, row-major) into `k` clusters.
pub fn kmeans(x: &[f32], n: usize, d: usize, k: usize, iters: usize, rng: &mut Rng) -> Vec<usize> {
    assert!(n > 0 && k > 0 && x.len() == n * d);
    let k = k.min(n);
    let dist2 = |i: usize, c: &[f32]| -> f32 {
        x[i * d..(i + 1) * d]
            .iter()
            .zip(c)
            .map(|(a, b)| (a - b) * (a - b))
            .sum()
    };
    // k-means++ seeding
    let mut centres: Vec<f32> = Vec::with_capacity(k * d);
    let first = rng.uniform_usize(n);
    centres.extend_from_slice(&x[first * d..(first + 1) * d]);
    let mut best: Vec<f32> = (0..n).map(|i| dist2(i, &centres[0..d])).collect();
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
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(dist2(i, &centres[c * d..(c + 1) * d]));
        }
    }
    let mut assign = vec![0usize; n];
    for it in 0..=iters {
        let mut changed = false;
        for (i, a) in assign.iter_mut().enumerate() {
            let mut bi = 0;
            let mut bd = f32::INFINITY;
            for c in 0..k {
                let dd = dist2(i, &centres[c * d..(c + 1) * d]);
                if dd < bd {
                    bd = dd;
                    bi = c;
                }
            }
            if *a != bi || it == 0 {
                changed |= *a != bi;
                *a = bi;
            }
        }
        if it == iters || (!changed && it > 0) {
            break;
        }
        // update: means of members; an empty cluster keeps its centre
        let mut sums = vec![0f32; k * d];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[assign[i]] += 1;
            for j in 0..d {
                sums[assign[i] * d + j] += x[i * d + j];
            }
        }
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
}
