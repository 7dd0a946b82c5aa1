//! Data layer: readers for interaction files, preparation (filters, splits) and the
//! in-memory [`Dataset`] every other part of darec works on.
//!
//! Pipeline: a reader (`recbole`, `delimited`, `rlmrec`) yields a [`RawInteractions`]
//! table with external ids mapped to dense internal ids; `prepare` filters it (rating
//! threshold, k-core) and splits it into a [`Dataset`]; `graph` builds the normalised
//! bipartite adjacency from the training split.

pub mod config;
pub mod delimited;
pub mod error;
pub mod graph;
pub mod holdout;
pub mod load;
pub mod pickle;
pub mod prepare;
pub mod recbole;
pub mod rlmrec;
pub mod stats;
pub mod synth;

pub use error::DataError;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Two-way map between external ids (strings as they appear in the files) and dense
/// internal ids `0..len`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IdMap {
    /// internal id -> external id
    pub external: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl IdMap {
    pub fn new() -> Self {
        Self::default()
    }
    /// Builds a map from external ids in internal-id order.
    pub fn from_external(external: Vec<String>) -> Self {
        let index = external
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        Self { external, index }
    }
    /// Identity map `"0".."n-1"` for datasets whose ids are already dense integers.
    pub fn identity(n: usize) -> Self {
        Self::from_external((0..n).map(|i| i.to_string()).collect())
    }
    /// Internal id of `ext`, inserting it if new.
    pub fn intern(&mut self, ext: &str) -> u32 {
        if let Some(&i) = self.index.get(ext) {
            return i;
        }
        let i = self.external.len() as u32;
        self.external.push(ext.to_string());
        self.index.insert(ext.to_string(), i);
        i
    }
    pub fn get(&self, ext: &str) -> Option<u32> {
        self.index.get(ext).copied()
    }
    pub fn external(&self, id: u32) -> &str {
        &self.external[id as usize]
    }
    pub fn len(&self) -> usize {
        self.external.len()
    }
    pub fn is_empty(&self) -> bool {
        self.external.is_empty()
    }
    /// Rebuilds the lookup index (after deserialisation).
    pub fn reindex(&mut self) {
        self.index = self
            .external
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
    }
    /// Keeps the ids where `keep[id]`, renumbering densely; returns old -> new (u32::MAX if dropped).
    pub fn compact(&self, keep: &[bool]) -> (IdMap, Vec<u32>) {
        let mut remap = vec![u32::MAX; self.len()];
        let mut ext = Vec::new();
        for (i, k) in keep.iter().enumerate() {
            if *k {
                remap[i] = ext.len() as u32;
                ext.push(self.external[i].clone());
            }
        }
        (IdMap::from_external(ext), remap)
    }
}

/// Side information about users or items (RecBole `.item` / `.user` columns), keyed by
/// internal id. Values are kept as the text found in the file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Features {
    /// Column names without their `:type` suffix, e.g. `["movie_title", "release_year", "genre"]`.
    pub columns: Vec<String>,
    /// `rows[internal_id]` holds one value per column (empty string when missing).
    pub rows: Vec<Vec<String>>,
}

impl Features {
    pub fn get(&self, id: u32, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|x| x == column)?;
        self.rows.get(id as usize).map(|r| r[c].as_str())
    }
}

/// Interactions as read from a file, ids already interned. Columns are parallel vectors.
#[derive(Clone, Debug, Default)]
pub struct RawInteractions {
    pub users: Vec<u32>,
    pub items: Vec<u32>,
    pub ratings: Option<Vec<f32>>,
    pub timestamps: Option<Vec<f64>>,
    pub user_ids: IdMap,
    pub item_ids: IdMap,
    pub user_features: Option<Features>,
    pub item_features: Option<Features>,
    /// When the source already comes split (RLMRec pickles/TSVs): split index of each row,
    /// 0 = train, 1 = validation, 2 = test.
    pub given_split: Option<Vec<u8>>,
}

impl RawInteractions {
    pub fn len(&self) -> usize {
        self.users.len()
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A list of (user, item) pairs with internal ids.
pub type Pairs = Vec<(u32, u32)>;

/// A prepared dataset: id maps, features and the three splits.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub name: String,
    pub user_ids: IdMap,
    pub item_ids: IdMap,
    pub user_features: Option<Features>,
    pub item_features: Option<Features>,
    pub train: Pairs,
    pub valid: Pairs,
    pub test: Pairs,
}

impl Dataset {
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    /// Per-user sorted item lists of a split (CSR layout).
    pub fn user_items(&self, pairs: &[(u32, u32)]) -> UserItems {
        UserItems::from_pairs(self.n_users(), pairs)
    }
}

/// Per-user sorted, deduplicated item lists in CSR layout.
#[derive(Clone, Debug, Default)]
pub struct UserItems {
    pub offsets: Vec<usize>,
    pub items: Vec<u32>,
}

impl UserItems {
    pub fn from_pairs(n_users: usize, pairs: &[(u32, u32)]) -> Self {
        let mut counts = vec![0usize; n_users + 1];
        for &(u, _) in pairs {
            counts[u as usize + 1] += 1;
        }
        for i in 0..n_users {
            counts[i + 1] += counts[i];
        }
        let mut fill = counts.clone();
        let mut items = vec![0u32; pairs.len()];
        for &(u, i) in pairs {
            items[fill[u as usize]] = i;
            fill[u as usize] += 1;
        }
        // sort + dedup each row, then re-pack
        let mut offsets = Vec::with_capacity(n_users + 1);
        let mut packed = Vec::with_capacity(items.len());
        offsets.push(0);
        for u in 0..n_users {
            let row = &mut items[counts[u]..counts[u + 1]];
            row.sort_unstable();
            let mut last = None;
            for &i in row.iter() {
                if last != Some(i) {
                    packed.push(i);
                    last = Some(i);
                }
            }
            offsets.push(packed.len());
        }
        Self {
            offsets,
            items: packed,
        }
    }
    pub fn n_users(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn row(&self, u: u32) -> &[u32] {
        &self.items[self.offsets[u as usize]..self.offsets[u as usize + 1]]
    }
    pub fn contains(&self, u: u32, i: u32) -> bool {
        self.row(u).binary_search(&i).is_ok()
    }
    pub fn nnz(&self) -> usize {
        self.items.len()
    }
}
