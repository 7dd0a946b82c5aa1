//! Synthetic interaction data at any size, for the scale benchmark and tests
//! (`darec data synth`): power-law user activity and item popularity with a planted
//! cluster structure, so that a model has something beyond popularity to learn.
//!
//! The model (all of it deterministic given `seed`, whatever the number of threads):
//! - `users` users and `items` items (by default `N / 24` and `N / 96`, the shape of the
//!   issue's measurements: 4M interactions give 166,666 x 41,666), each given a random id
//!   (a permutation), so ids carry no information about degree.
//! - **User activity** follows Zipf's law over activity rank `r = 1..U`: user `r` gets
//!   `min_user_degree + (N - U min_user_degree) r^-a / sum_s s^-a` interactions (rounded,
//!   the total kept exactly `N`; capped at a quarter of the items), `a = user_exponent`,
//!   0.7 by default (a degree distribution with tail exponent `1 + 1/a`, about 2.4).
//! - **Item popularity** follows Zipf's law over popularity rank: weight `r^-b`,
//!   `b = item_exponent`, 0.75 by default (tail exponent about 2.3).
//! - **Taste**: users and items fall into `clusters` groups (by default `sqrt(items) / 4`,
//!   at least 2), uniformly at random. Each interaction of a user is drawn, with
//!   probability `affinity` (0.5), among the items of the user's own cluster, else among
//!   all items, each time in proportion to popularity; a user's items are distinct.
//!
//! The file is `user<TAB>item` lines (integer ids) after a `#` comment line that records
//! the parameters: the `delimited` reader's defaults read it, and the built-in `synth`
//! dataset (configs/datasets/synth.toml) points at it. It is written to a temporary file
//! and renamed into place, and an existing file is only replaced when asked.

use crate::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Parameters of [`generate`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SynthOptions {
    /// Distinct (user, item) interactions to write.
    pub interactions: usize,
    /// Users (default `interactions / 24`).
    pub users: Option<usize>,
    /// Items (default `interactions / 96`).
    pub items: Option<usize>,
    /// Zipf exponent of user activity over rank.
    pub user_exponent: f64,
    /// Zipf exponent of item popularity over rank.
    pub item_exponent: f64,
    /// Fewest interactions of a user.
    pub min_user_degree: usize,
    /// Taste clusters (0: `sqrt(items) / 4`, at least 2).
    pub clusters: usize,
    /// Probability that an interaction is drawn from the user's own cluster.
    pub affinity: f64,
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            interactions: 1_000_000,
            users: None,
            items: None,
            user_exponent: 0.7,
            item_exponent: 0.75,
            min_user_degree: 5,
            clusters: 0,
            affinity: 0.5,
            seed: 1,
        }
    }
}

/// The sizes [`generate`] uses once defaults are filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthShape {
    pub users: usize,
    pub items: usize,
    pub clusters: usize,
}

impl SynthOptions {
    /// Fills in the defaults and checks that the numbers can be met.
    pub fn shape(&self) -> anyhow::Result<SynthShape> {
        let n = self.interactions;
        let users = self.users.unwrap_or(n / 24);
        let items = self.items.unwrap_or(n / 96);
        let clusters = match self.clusters {
            0 => ((items as f64).sqrt() / 4.0).round().max(2.0) as usize,
            c => c,
        };
        if n == 0 || users == 0 || items < 4 {
            anyhow::bail!(
                "synth: {n} interactions over {users} users and {items} items: give at least \
                 one user, four items and one interaction (by default users = interactions / \
                 24 and items = interactions / 96, so at least 384 interactions)"
            );
        }
        let cap = max_user_degree(items);
        if users.saturating_mul(self.min_user_degree.max(1)) > n || users.saturating_mul(cap) < n {
            anyhow::bail!(
                "synth: {n} interactions cannot be shared among {users} users with between {} \
                 and {cap} items each ({items} items): change --users, --items or \
                 --min-user-degree",
                self.min_user_degree.max(1)
            );
        }
        if clusters > items {
            anyhow::bail!("synth: {clusters} clusters for {items} items: at most one per item");
        }
        for (what, v) in [
            ("user_exponent", self.user_exponent),
            ("item_exponent", self.item_exponent),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                anyhow::bail!("synth: {what} must be a finite number >= 0, got {v}");
            }
        }
        if !(0.0..=1.0).contains(&self.affinity) {
            anyhow::bail!(
                "synth: affinity is a probability in [0, 1], got {}",
                self.affinity
            );
        }
        Ok(SynthShape {
            users,
            items,
            clusters,
        })
    }
}

/// Most items one user may have: a quarter of the catalogue.
fn max_user_degree(items: usize) -> usize {
    (items / 4).max(1)
}

/// Degrees of users by activity rank: Zipf weights on top of the minimum, summing to `n`
/// exactly, each within `[min, cap]`.
fn user_degrees(n: usize, users: usize, min: usize, cap: usize, exponent: f64) -> Vec<usize> {
    let min = min.max(1).min(cap);
    let w: Vec<f64> = (1..=users).map(|r| (r as f64).powf(-exponent)).collect();
    let total_w: f64 = w.iter().sum();
    let spare = (n - users * min) as f64;
    let mut deg: Vec<usize> = w
        .iter()
        .map(|wi| (min + (spare * wi / total_w).floor() as usize).min(cap))
        .collect();
    // what flooring and capping left over goes one by one to users with room, busiest first
    let mut left = n - deg.iter().sum::<usize>();
    while left > 0 {
        let before = left;
        for d in deg.iter_mut() {
            if left == 0 {
                break;
            }
            if *d < cap {
                *d += 1;
                left -= 1;
            }
        }
        assert!(left < before, "synth: degrees cannot reach the total");
    }
    deg
}

/// Cumulative popularity weights of `ids` (for sampling by binary search).
fn cumulative(ids: &[u32], weight: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    ids.iter()
        .map(|&i| {
            acc += weight[i as usize];
            acc
        })
        .collect()
}

/// Index drawn in proportion to the increments of `cum`.
fn draw(cum: &[f64], rng: &mut Rng) -> usize {
    let x = rng.f64() * cum[cum.len() - 1];
    cum.partition_point(|&c| c <= x).min(cum.len() - 1)
}

/// The items of every user, by user rank, as internal item indices (popularity ranks).
struct Planted {
    /// `user_items[offsets[r]..offsets[r + 1]]` are the items of the user of rank `r`.
    offsets: Vec<usize>,
    items: Vec<u32>,
}

fn plant(opts: &SynthOptions, shape: SynthShape) -> Planted {
    let SynthShape {
        users,
        items,
        clusters,
    } = shape;
    let cap = max_user_degree(items);
    let degrees = user_degrees(
        opts.interactions,
        users,
        opts.min_user_degree,
        cap,
        opts.user_exponent,
    );
    let pop: Vec<f64> = (1..=items)
        .map(|r| (r as f64).powf(-opts.item_exponent))
        .collect();
    let all: Vec<u32> = (0..items as u32).collect();
    let all_cum = cumulative(&all, &pop);
    // clusters of items (by popularity rank) and their cumulative weights
    let mut crng = Rng::derive(opts.seed, "synth-clusters");
    let item_cluster: Vec<usize> = (0..items).map(|_| crng.uniform_usize(clusters)).collect();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); clusters];
    for (i, &c) in item_cluster.iter().enumerate() {
        members[c].push(i as u32);
    }
    let member_cum: Vec<Vec<f64>> = members.iter().map(|m| cumulative(m, &pop)).collect();
    let user_cluster: Vec<usize> = (0..users).map(|_| crng.uniform_usize(clusters)).collect();

    let mut offsets = Vec::with_capacity(users + 1);
    offsets.push(0usize);
    for d in &degrees {
        offsets.push(offsets.last().unwrap() + d);
    }
    let mut out = vec![0u32; opts.interactions];
    // each user from its own generator: the same data whatever the split into tasks
    let mut rows: Vec<(usize, &mut [u32])> = Vec::with_capacity(users);
    let mut rest = &mut out[..];
    for (r, &d) in degrees.iter().enumerate() {
        let (row, tail) = std::mem::take(&mut rest).split_at_mut(d);
        rows.push((r, row));
        rest = tail;
    }
    rows.into_par_iter().for_each(|(r, row)| {
        let mut rng = Rng::derive(
            opts.seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            "synth-user",
        );
        let c = user_cluster[r];
        let (own, own_cum) = (&members[c], &member_cum[c]);
        let mut chosen: Vec<u32> = Vec::with_capacity(row.len());
        let mut rounds = 0;
        while chosen.len() < row.len() {
            let missing = row.len() - chosen.len();
            for _ in 0..missing {
                let item = if !own.is_empty() && rng.f64() < opts.affinity {
                    own[draw(own_cum, &mut rng)]
                } else if rounds < 8 {
                    all[draw(&all_cum, &mut rng)]
                } else {
                    // a heavy user who has taken the popular items: uniform draws fill up
                    rng.uniform_usize(items) as u32
                };
                chosen.push(item);
            }
            chosen.sort_unstable();
            chosen.dedup();
            rounds += 1;
        }
        // shuffle so the popular items are not always first
        rng.shuffle(&mut chosen);
        row.copy_from_slice(&chosen[..row.len()]);
    });
    Planted {
        offsets,
        items: out,
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct SynthReport {
    pub interactions: usize,
    pub users: usize,
    pub items: usize,
    pub clusters: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Writes the data set of `opts` to `out` (see the module documentation). An existing
/// `out` is refused unless `overwrite`.
pub fn generate(opts: &SynthOptions, out: &Path, overwrite: bool) -> anyhow::Result<SynthReport> {
    use anyhow::Context;
    let t0 = std::time::Instant::now();
    let shape = opts.shape()?;
    if out.exists() && !overwrite {
        anyhow::bail!("{} exists: pass --overwrite to replace it", out.display());
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let planted = plant(opts, shape);
    // random external ids: a permutation of users and of items
    let mut idr = Rng::derive(opts.seed, "synth-ids");
    let mut user_id: Vec<u32> = (0..shape.users as u32).collect();
    idr.shuffle(&mut user_id);
    let mut item_id: Vec<u32> = (0..shape.items as u32).collect();
    idr.shuffle(&mut item_id);

    let name = out
        .file_name()
        .context("synth: the output has no file name")?;
    let tmp = out.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> anyhow::Result<u64> {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        writeln!(
            w,
            "# darec synth: interactions={} users={} items={} clusters={} user_exponent={} \
             item_exponent={} min_user_degree={} affinity={} seed={}",
            opts.interactions,
            shape.users,
            shape.items,
            shape.clusters,
            opts.user_exponent,
            opts.item_exponent,
            opts.min_user_degree,
            opts.affinity,
            opts.seed
        )?;
        let mut line = Vec::with_capacity(32);
        for r in 0..shape.users {
            let u = user_id[r];
            for &i in &planted.items[planted.offsets[r]..planted.offsets[r + 1]] {
                line.clear();
                push_uint(&mut line, u);
                line.push(b'\t');
                push_uint(&mut line, item_id[i as usize]);
                line.push(b'\n');
                w.write_all(&line)?;
            }
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    };
    let bytes = match write() {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("{}: cannot write", tmp.display())));
        }
    };
    std::fs::rename(&tmp, out)
        .with_context(|| format!("{}: cannot move into place", out.display()))?;
    Ok(SynthReport {
        interactions: opts.interactions,
        users: shape.users,
        items: shape.items,
        clusters: shape.clusters,
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Appends the decimal digits of `v`.
fn push_uint(out: &mut Vec<u8>, mut v: u32) {
    let mut buf = [0u8; 10];
    let mut k = buf.len();
    loop {
        k -= 1;
        buf[k] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[k..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_pairs(path: &Path) -> Vec<(u32, u32)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (u, i) = l.split_once('\t').unwrap();
                (u.parse().unwrap(), i.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn degrees_sum_exactly_and_respect_bounds() {
        for (n, u, min, cap) in [(1000, 40, 5, 60), (24_000, 1000, 5, 62), (50, 10, 5, 5)] {
            let d = user_degrees(n, u, min, cap, 0.7);
            assert_eq!(d.iter().sum::<usize>(), n);
            assert!(d.iter().all(|&x| x >= min.min(cap) && x <= cap), "{d:?}");
            assert!(d.windows(2).all(|w| w[0] >= w[1]), "busiest first");
        }
    }

    #[test]
    fn writes_distinct_pairs_deterministically_with_power_law_shape() {
        let dir = std::env::temp_dir().join(format!("darec-synth-{}", std::process::id()));
        let opts = SynthOptions {
            interactions: 48_000,
            seed: 7,
            ..Default::default()
        };
        let a = dir.join("a.tsv");
        let r = generate(&opts, &a, false).unwrap();
        assert_eq!((r.users, r.items), (2000, 500));
        let pairs = read_pairs(&a);
        assert_eq!(pairs.len(), 48_000);
        let mut sorted = pairs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), pairs.len(), "every pair is distinct");
        assert!(pairs.iter().all(|&(u, i)| u < 2000 && i < 500));
        // the same seed gives the same bytes, whatever the thread count; another seed not
        let b = dir.join("b.tsv");
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| generate(&opts, &b, false).unwrap());
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let c = dir.join("c.tsv");
        generate(
            &SynthOptions {
                seed: 8,
                ..opts.clone()
            },
            &c,
            false,
        )
        .unwrap();
        assert_ne!(read_pairs(&a), read_pairs(&c));
        // an existing file is kept unless asked
        let e = generate(&opts, &a, false).unwrap_err();
        assert!(format!("{e}").contains("--overwrite"), "{e}");
        // popularity is skewed: the top 1% of items hold far more than 1% of interactions
        let mut pop = vec![0usize; 500];
        for &(_, i) in &pairs {
            pop[i as usize] += 1;
        }
        pop.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = pop[..5].iter().sum();
        assert!(top as f64 > 0.05 * pairs.len() as f64, "top 5 items: {top}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_impossible_shapes() {
        let bad = SynthOptions {
            interactions: 100,
            users: Some(50),
            items: Some(8),
            ..Default::default()
        };
        assert!(bad.shape().is_err(), "50 users x at least 5 items > 100");
        assert!(SynthOptions {
            interactions: 10,
            ..Default::default()
        }
        .shape()
        .is_err());
        assert!(SynthOptions {
            affinity: 1.5,
            ..Default::default()
        }
        .shape()
        .is_err());
    }
}
