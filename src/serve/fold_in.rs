//! Fold-in for backbones without a closed form (MF, and any other): the new user's final
//! vector is fitted by BPR against the trained item vectors, which stay fixed; nothing is
//! retrained. Only the user's direction matters for the ranking (scores are linear in
//! it), so a small fixed budget of Adam steps from a deterministic start is enough.

use crate::rng::Rng;

/// Settings of [`fit_user`].
#[derive(Clone, Debug)]
pub struct FitOptions {
    pub steps: usize,
    pub lr: f64,
    pub reg: f64,
    pub seed: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            steps: 200,
            lr: 0.05,
            reg: 1e-4,
            seed: 2024,
        }
    }
}

/// BPR-fits a `d`-vector for a user who liked `liked` (ids into `items`, row-major
/// `[n_items, d]`): each step pairs every liked item with one uniform negative not in
/// `liked`, `loss = mean softplus(<u, n> - <u, p>) + reg |u|^2`, Adam. Starts from the
/// mean of the liked items' vectors. Terminates for any input; non-finite item rows are
/// skipped.
pub fn fit_user(items: &[f32], d: usize, liked: &[u32], opts: &FitOptions) -> Vec<f32> {
    fit_user_from(items, d, liked, None, opts)
}

/// [`fit_user`] starting from `init` (e.g. a backbone's closed-form fold-in) instead of
/// the mean of the liked items.
pub fn fit_user_from(
    items: &[f32],
    d: usize,
    liked: &[u32],
    init: Option<&[f32]>,
    opts: &FitOptions,
) -> Vec<f32> {
    let n_items = items.len() / d.max(1);
    let row = |i: u32| &items[i as usize * d..(i as usize + 1) * d];
    let finite = |i: u32| row(i).iter().all(|x| x.is_finite());
    let liked: Vec<u32> = liked
        .iter()
        .copied()
        .filter(|&i| (i as usize) < n_items && finite(i))
        .collect();
    let mut u = vec![0f64; d];
    if liked.is_empty() {
        return vec![0.0; d];
    }
    match init.filter(|v| v.len() == d && v.iter().all(|x| x.is_finite())) {
        Some(v) => u.iter_mut().zip(v).for_each(|(a, b)| *a = *b as f64),
        None => {
            for &i in &liked {
                u.iter_mut().zip(row(i)).for_each(|(a, b)| *a += *b as f64);
            }
            u.iter_mut().for_each(|a| *a /= liked.len() as f64);
        }
    }
    let mut sorted = liked.clone();
    sorted.sort_unstable();
    let mut rng = Rng::derive(opts.seed, "fold-in");
    let (mut m, mut v) = (vec![0f64; d], vec![0f64; d]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let negatives_exist = sorted.len() < n_items;
    for t in 1..=opts.steps {
        let mut g = vec![0f64; d];
        for &p in &liked {
            if !negatives_exist {
                break;
            }
            let n = loop {
                let j = rng.uniform_usize(n_items) as u32;
                if sorted.binary_search(&j).is_err() && finite(j) {
                    break j;
                }
            };
            let (rp, rn) = (row(p), row(n));
            let margin: f64 = (0..d).map(|k| u[k] * (rn[k] - rp[k]) as f64).sum();
            let s = 1.0 / (1.0 + (-margin).exp()); // d softplus(margin) / d margin
            for k in 0..d {
                g[k] += s * (rn[k] - rp[k]) as f64 / liked.len() as f64;
            }
        }
        for k in 0..d {
            let gk = g[k] + 2.0 * opts.reg * u[k];
            m[k] = b1 * m[k] + (1.0 - b1) * gk;
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
            let mh = m[k] / (1.0 - b1.powi(t as i32));
            let vh = v[k] / (1.0 - b2.powi(t as i32));
            u[k] -= opts.lr * mh / (vh.sqrt() + eps);
        }
    }
    u.into_iter().map(|x| x as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clusters of items; a user who liked items of cluster A must score the rest of
    /// cluster A above cluster B.
    #[test]
    fn fitted_user_prefers_the_cluster_it_liked() {
        let d = 4;
        let mut items = Vec::new();
        let mut rng = Rng::new(3);
        for i in 0..40 {
            let base = if i < 20 {
                [1.0, 0.0, 0.0, 0.0]
            } else {
                [0.0, 1.0, 0.0, 0.0]
            };
            for b in base {
                items.push(b + 0.1 * (rng.f32() - 0.5));
            }
        }
        let u = fit_user(&items, d, &[0, 1, 2, 3], &FitOptions::default());
        let score = |i: usize| -> f32 { (0..d).map(|k| u[k] * items[i * d + k]).sum() };
        let worst_a = (4..20).map(score).fold(f32::INFINITY, f32::min);
        let best_b = (20..40).map(score).fold(f32::NEG_INFINITY, f32::max);
        assert!(worst_a > best_b, "{worst_a} {best_b}");
    }

    #[test]
    fn degenerate_inputs_terminate() {
        let items = vec![1.0f32, 0.0, 0.0, 1.0];
        // the user liked every item: no negative exists
        assert_eq!(
            fit_user(&items, 2, &[0, 1], &FitOptions::default()).len(),
            2
        );
        // nothing liked, unknown ids, NaN rows
        assert_eq!(
            fit_user(&items, 2, &[], &FitOptions::default()),
            vec![0.0, 0.0]
        );
        assert_eq!(
            fit_user(&items, 2, &[7], &FitOptions::default()),
            vec![0.0, 0.0]
        );
        let nan = vec![f32::NAN, 0.0, 0.0, 1.0, 1.0, 1.0];
        let u = fit_user(&nan, 2, &[1], &FitOptions::default());
        assert!(u.iter().all(|x| x.is_finite()));
    }
}
