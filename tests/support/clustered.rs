//! A small synthetic interaction file with clustered tastes, shared by the end-to-end
//! tests: 120 users in 4 taste groups, 80 items in 4 matching blocks of 20; each user
//! has 10 items from their group's block plus `noise` items drawn from all 80.

use darec::rng::Rng;
use std::path::{Path, PathBuf};

/// Writes `clustered.tsv` (`u<id> TAB i<id>`, plus a rating column of 5 when `rating`).
pub fn write_clustered(dir: &Path, noise: usize, rating: bool) -> PathBuf {
    let mut rng = Rng::new(11);
    let mut s = String::from("# user\titem\trating\n");
    for u in 0..120u32 {
        let g = u % 4;
        let mut items = std::collections::BTreeSet::new();
        while items.len() < 10 {
            items.insert(g * 20 + rng.uniform_usize(20) as u32);
        }
        while items.len() < 10 + noise {
            items.insert(rng.uniform_usize(80) as u32);
        }
        for i in items {
            s.push_str(&format!("u{u}\ti{i}{}\n", if rating { "\t5" } else { "" }));
        }
    }
    let p = dir.join("clustered.tsv");
    std::fs::write(&p, s).unwrap();
    p
}
