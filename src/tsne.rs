//! Exact t-SNE (van der Maaten & Hinton, JMLR 2008) for the 2-D maps of DaRec's shared
//! space, the projection the paper's figure uses. O(n^2) per iteration, so meant for a few
//! thousand sampled nodes (2,000 take a few seconds on 2 cores).
//!
//! Affinities: Gaussian conditionals `p_{j|i}` with each row's bandwidth found by bisection
//! so that its entropy is `ln(perplexity)`, symmetrised as `p_ij = (p_{j|i} + p_{i|j}) / 2n`.
//! Map: Student-t kernel `q_ij ∝ (1 + ||y_i - y_j||^2)^-1`, gradient
//! `4 sum_j (p_ij - q_ij)(1 + ||y_i - y_j||^2)^-1 (y_i - y_j)`, gradient descent with
//! momentum and per-coordinate gains, early exaggeration for the first iterations.

use crate::rng::Rng;
use rayon::prelude::*;

/// t-SNE settings (the usual defaults).
#[derive(Clone, Debug)]
pub struct TsneConfig {
    pub perplexity: f64,
    pub iterations: usize,
    /// Iterations with exaggerated affinities (and momentum 0.5 instead of 0.8).
    pub exaggeration_iterations: usize,
    pub exaggeration: f64,
    /// Learning rate; `None` picks `max(n / exaggeration, 50)`.
    pub learning_rate: Option<f64>,
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 750,
            exaggeration_iterations: 250,
            exaggeration: 12.0,
            learning_rate: None,
            seed: 0,
        }
    }
}

/// Squared Euclidean distances between all rows of `x` (`[n, d]`), row-major `[n, n]`.
fn squared_distances(x: &[f32], n: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * n];
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let xi = &x[i * d..(i + 1) * d];
        for (j, v) in row.iter_mut().enumerate() {
            let xj = &x[j * d..(j + 1) * d];
            *v = xi
                .iter()
                .zip(xj)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
        }
    });
    out
}

/// Conditional affinities `p_{j|i}` of one row with entropy `ln(perplexity)`; returns the
/// row and its entropy.
fn calibrated_row(dist: &[f64], i: usize, perplexity: f64) -> (Vec<f64>, f64) {
    let target = perplexity.ln();
    let (mut beta, mut lo, mut hi) = (1.0f64, 0.0f64, f64::INFINITY);
    let mut p = vec![0f64; dist.len()];
    let mut entropy = 0.0;
    for _ in 0..100 {
        // shift by the nearest distance for stability; it cancels in the normalisation
        let dmin = dist
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &v)| v)
            .fold(f64::INFINITY, f64::min);
        let mut sum = 0.0;
        let mut weighted = 0.0;
        for (j, (pj, &dj)) in p.iter_mut().zip(dist).enumerate() {
            *pj = if j == i {
                0.0
            } else {
                (-(dj - dmin) * beta).exp()
            };
            sum += *pj;
            weighted += *pj * (dj - dmin);
        }
        // H = ln(sum) + beta * E[d - dmin]
        entropy = sum.ln() + beta * weighted / sum;
        p.iter_mut().for_each(|v| *v /= sum);
        if (entropy - target).abs() < 1e-5 {
            break;
        }
        if entropy > target {
            lo = beta;
            beta = if hi.is_finite() {
                (beta + hi) / 2.0
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    (p, entropy)
}

/// Symmetric joint affinities `p_ij` (`[n, n]`, summing to 1).
fn joint_affinities(x: &[f32], n: usize, d: usize, perplexity: f64) -> Vec<f64> {
    let dist = squared_distances(x, n, d);
    let perplexity = perplexity.min((n - 1) as f64 / 3.0).max(1.0);
    let cond: Vec<f64> = (0..n)
        .into_par_iter()
        .flat_map_iter(|i| calibrated_row(&dist[i * n..(i + 1) * n], i, perplexity).0)
        .collect();
    let mut p = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            p[i * n + j] = ((cond[i * n + j] + cond[j * n + i]) / (2.0 * n as f64)).max(1e-12);
        }
    }
    p
}

/// Embeds the rows of `x` (`[n, d]`) in 2-D.
pub fn tsne_2d(x: &[f32], n: usize, d: usize, cfg: &TsneConfig) -> Vec<(f32, f32)> {
    if n < 3 {
        return (0..n).map(|i| (i as f32, 0.0)).collect();
    }
    let p = joint_affinities(x, n, d, cfg.perplexity);
    let mut rng = Rng::derive(cfg.seed, "tsne");
    let mut y: Vec<[f64; 2]> = (0..n)
        .map(|_| [rng.normal() * 1e-4, rng.normal() * 1e-4])
        .collect();
    let mut update = vec![[0f64; 2]; n];
    let mut gains = vec![[1f64; 2]; n];
    let lr = cfg
        .learning_rate
        .unwrap_or((n as f64 / cfg.exaggeration).max(50.0));
    for it in 0..cfg.iterations {
        let (exag, momentum) = if it < cfg.exaggeration_iterations {
            (cfg.exaggeration, 0.5)
        } else {
            (1.0, 0.8)
        };
        let kernel = |a: &[f64; 2], b: &[f64; 2]| {
            1.0 / (1.0 + (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2))
        };
        // normaliser of q: sum over i != j of the kernel (row sums collected in order and
        // added serially, so the map does not depend on how rayon splits the work)
        let row_sums: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|i| {
                let yi = &y[i];
                y.iter().map(|yj| kernel(yi, yj)).sum::<f64>() - 1.0
            })
            .collect();
        let z: f64 = row_sums.iter().sum();
        let grad: Vec<[f64; 2]> = (0..n)
            .into_par_iter()
            .map(|i| {
                let yi = &y[i];
                let mut g = [0f64; 2];
                for (j, yj) in y.iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    let k = kernel(yi, yj);
                    let m = (exag * p[i * n + j] - k / z) * k;
                    g[0] += 4.0 * m * (yi[0] - yj[0]);
                    g[1] += 4.0 * m * (yi[1] - yj[1]);
                }
                g
            })
            .collect();
        for i in 0..n {
            for c in 0..2 {
                let same_sign = (grad[i][c] > 0.0) == (update[i][c] > 0.0);
                gains[i][c] = if same_sign {
                    (gains[i][c] * 0.8).max(0.01)
                } else {
                    gains[i][c] + 0.2
                };
                update[i][c] = momentum * update[i][c] - lr * gains[i][c] * grad[i][c];
                y[i][c] += update[i][c];
            }
        }
        let mean = y.iter().fold([0.0, 0.0], |m, v| [m[0] + v[0], m[1] + v[1]]);
        y.iter_mut().for_each(|v| {
            v[0] -= mean[0] / n as f64;
            v[1] -= mean[1] / n as f64;
        });
    }
    y.into_iter().map(|v| (v[0] as f32, v[1] as f32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_calibrated_to_the_perplexity() {
        let mut rng = Rng::new(1);
        let (n, d) = (60, 5);
        let x: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let dist = squared_distances(&x, n, d);
        for i in [0, 17, 59] {
            let (p, h) = calibrated_row(&dist[i * n..(i + 1) * n], i, 10.0);
            assert!((h - 10f64.ln()).abs() < 1e-3, "row {i}: entropy {h}");
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert_eq!(p[i], 0.0);
            // the entropy reported is the entropy of the returned distribution
            let direct: f64 = -p
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|v| v * v.ln())
                .sum::<f64>();
            assert!((direct - h).abs() < 1e-6, "{direct} vs {h}");
        }
    }

    /// Three separated clusters in 10-D stay separated in the map: every point is closer
    /// to its own cluster's 2-D centre than to any other's. Fails for a random layout.
    #[test]
    fn separated_clusters_stay_separated() {
        let mut rng = Rng::new(2);
        let (per, d) = (40, 10);
        let mut x = Vec::new();
        for c in 0..3 {
            for _ in 0..per {
                for j in 0..d {
                    let centre = if j == c { 8.0 } else { 0.0 };
                    x.push((centre + rng.normal()) as f32);
                }
            }
        }
        let n = 3 * per;
        let cfg = TsneConfig {
            iterations: 400,
            seed: 3,
            ..Default::default()
        };
        let y = tsne_2d(&x, n, d, &cfg);
        let centre = |c: usize| {
            let pts = &y[c * per..(c + 1) * per];
            (
                pts.iter().map(|p| p.0).sum::<f32>() / per as f32,
                pts.iter().map(|p| p.1).sum::<f32>() / per as f32,
            )
        };
        let centres: Vec<(f32, f32)> = (0..3).map(centre).collect();
        for (i, p) in y.iter().enumerate() {
            let own = i / per;
            let dist = |c: &(f32, f32)| (p.0 - c.0).powi(2) + (p.1 - c.1).powi(2);
            for (c, cc) in centres.iter().enumerate() {
                if c != own {
                    assert!(
                        dist(&centres[own]) < dist(cc),
                        "point {i} nearer cluster {c}"
                    );
                }
            }
        }
        // same seed, same map
        assert_eq!(y, tsne_2d(&x, n, d, &cfg));
    }
}
