//! Summary statistics of a prepared [`Dataset`]: sizes of the splits, density of the
//! training matrix and quantiles of user and item degrees in training, for logs, run
//! directories (`serde` JSON) and the terminal (`Display`).

use super::Dataset;
use serde::Serialize;
use std::fmt;

/// Quantiles of a degree distribution (linear interpolation between order statistics,
/// as numpy's default: the q-quantile of sorted `x[0..n]` is at position `q (n - 1)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub min: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub max: f64,
    pub mean: f64,
}

impl Quantiles {
    /// Quantiles of `values` (all zeros when empty).
    pub fn of(values: &[usize]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let pos = p * (v.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        Self {
            min: v[0],
            p25: q(0.25),
            p50: q(0.5),
            p75: q(0.75),
            p90: q(0.9),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// Sizes and degree statistics of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetStats {
    pub name: String,
    pub users: usize,
    pub items: usize,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    /// `train / (users * items)`.
    pub train_density: f64,
    /// Training degree of every user (users without training items count as 0).
    pub user_degree: Quantiles,
    /// Training degree of every item (items without training users count as 0).
    pub item_degree: Quantiles,
    /// Users with no training interaction (0 for the random split by construction).
    pub users_without_train: usize,
    /// Items with no training interaction.
    pub items_without_train: usize,
}

/// Computes the statistics of `ds`.
pub fn stats(ds: &Dataset) -> DatasetStats {
    let (nu, ni) = (ds.n_users(), ds.n_items());
    let mut du = vec![0usize; nu];
    let mut di = vec![0usize; ni];
    for &(u, i) in &ds.train {
        du[u as usize] += 1;
        di[i as usize] += 1;
    }
    let cells = nu as f64 * ni as f64;
    DatasetStats {
        name: ds.name.clone(),
        users: nu,
        items: ni,
        train: ds.train.len(),
        valid: ds.valid.len(),
        test: ds.test.len(),
        train_density: if cells > 0.0 {
            ds.train.len() as f64 / cells
        } else {
            0.0
        },
        users_without_train: du.iter().filter(|&&d| d == 0).count(),
        items_without_train: di.iter().filter(|&&d| d == 0).count(),
        user_degree: Quantiles::of(&du),
        item_degree: Quantiles::of(&di),
    }
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.train + self.valid + self.test;
        let pct = |x: usize| {
            if total > 0 {
                100.0 * x as f64 / total as f64
            } else {
                0.0
            }
        };
        writeln!(
            f,
            "dataset {}: {} users x {} items",
            self.name, self.users, self.items
        )?;
        writeln!(f, "  {:<12}{:>12}{:>9}", "split", "interactions", "share")?;
        for (n, x) in [
            ("train", self.train),
            ("valid", self.valid),
            ("test", self.test),
        ] {
            writeln!(f, "  {:<12}{:>12}{:>8.1}%", n, x, pct(x))?;
        }
        writeln!(f, "  {:<12}{:>12}", "total", total)?;
        writeln!(f, "  train density {:.6}", self.train_density)?;
        writeln!(
            f,
            "  {:<14}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9}",
            "train degree", "min", "p25", "p50", "p75", "p90", "max", "mean"
        )?;
        for (n, q) in [("users", &self.user_degree), ("items", &self.item_degree)] {
            writeln!(
                f,
                "  {:<14}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9.2}",
                n,
                fmt_q(q.min),
                fmt_q(q.p25),
                fmt_q(q.p50),
                fmt_q(q.p75),
                fmt_q(q.p90),
                fmt_q(q.max),
                q.mean
            )?;
        }
        write!(
            f,
            "  without training interactions: {} users, {} items",
            self.users_without_train, self.items_without_train
        )
    }
}

/// Integers without decimals, interpolated values with one.
fn fmt_q(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}
