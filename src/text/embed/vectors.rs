//! [`SemanticVectors`]: the `e_L` matrices of users and items (SPEC section 1), stored as
//! safetensors with tensors `users` `[n_users, dim]` and `items` `[n_items, dim]` (f32) and
//! metadata `model`, `source`, `dim`, `n_users`, `n_items`. Rows follow the dataset's
//! internal ids. Files are written to a temporary name and renamed into place.

use crate::data::{DataError, Dataset};
use candle_core::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// `bytes` (a safetensors file) with its JSON header's keys in sorted order. `safetensors`
/// writes the metadata map in `HashMap` order, which changes from one process to the next,
/// so the same vectors would give files that differ in their first bytes. The sorted
/// header has the same keys, values and length (serde_json's maps are ordered), so the
/// offsets are untouched.
fn sorted_header(mut bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    let sorted = serde_json::to_vec(&header)?;
    anyhow::ensure!(sorted.len() <= n, "safetensors header grew when sorted");
    bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
    bytes[8 + sorted.len()..8 + n].fill(b' ');
    Ok(bytes)
}

/// User and item vectors `e_L`, row `i` = internal id `i`.
#[derive(Clone, Debug, PartialEq)]
pub struct SemanticVectors {
    /// Row-major `[n_users, dim]`.
    pub users: Vec<f32>,
    /// Row-major `[n_items, dim]`.
    pub items: Vec<f32>,
    pub n_users: usize,
    pub n_items: usize,
    pub dim: usize,
    /// Embedding model that produced the vectors (e.g. `all-MiniLM-L6-v2`).
    pub model: String,
    /// Where the texts (or vectors) came from (e.g. `template`, `import:...`).
    pub source: String,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The first non-finite value of a row-major matrix: `(row, column, value)`.
pub(crate) fn first_non_finite(data: &[f32], dim: usize) -> Option<(usize, usize, f32)> {
    let k = data.iter().position(|v| !v.is_finite())?;
    Some((k / dim.max(1), k % dim.max(1), data[k]))
}

impl SemanticVectors {
    /// Row `i` of the user matrix.
    pub fn user(&self, i: usize) -> &[f32] {
        &self.users[i * self.dim..(i + 1) * self.dim]
    }
    /// Row `i` of the item matrix.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.dim..(i + 1) * self.dim]
    }

    /// Checks that the buffers match the declared shape and every value is finite.
    pub fn validate(&self) -> Result<(), DataError> {
        for (what, data, n) in [
            ("users", &self.users, self.n_users),
            ("items", &self.items, self.n_items),
        ] {
            if data.len() != n * self.dim {
                return Err(DataError::Invalid(format!(
                    "semantic vectors: `{what}` holds {} values, expected {n} x {} = {}",
                    data.len(),
                    self.dim,
                    n * self.dim
                )));
            }
            if let Some((r, c, v)) = first_non_finite(data, self.dim) {
                return Err(DataError::Invalid(format!(
                    "semantic vectors: `{what}` row {r} (column {c}) is {v}: vectors must be finite"
                )));
            }
        }
        Ok(())
    }

    /// Writes the vectors as safetensors, atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        self.validate()?;
        let users = f32_bytes(&self.users);
        let items = f32_bytes(&self.items);
        let tensors = vec![
            (
                "users",
                TensorView::new(Dtype::F32, vec![self.n_users, self.dim], &users)?,
            ),
            (
                "items",
                TensorView::new(Dtype::F32, vec![self.n_items, self.dim], &items)?,
            ),
        ];
        let meta: HashMap<String, String> = [
            ("model", self.model.clone()),
            ("source", self.source.clone()),
            ("dim", self.dim.to_string()),
            ("n_users", self.n_users.to_string()),
            ("n_items", self.n_items.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let bytes = sorted_header(safetensors::serialize(tensors, Some(meta))?)?;
        crate::run::write_atomic(path, &bytes)
    }

    /// Reads vectors from a safetensors file: the one reader of every vector file darec
    /// takes (`darec embed` output, `align.vectors`). It needs tensors `users` and `items`
    /// (any float dtype, read as f32) of equal width; the metadata `darec embed` writes is
    /// checked against the shapes when present and optional otherwise, so files written by
    /// other tools load too. Every error names the file, and a bad value its tensor, row
    /// and column.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let bad = |m: String| DataError::file(path, m);
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let number = |k: &str| -> Result<Option<usize>, DataError> {
            meta.get(k)
                .map(|v| {
                    v.parse()
                        .map_err(|_| bad(format!("metadata `{k}` = `{v}` is not a whole number")))
                })
                .transpose()
        };
        let matrix = |name: &str| -> Result<(Vec<f32>, usize, usize), DataError> {
            use candle_core::safetensors::Load;
            let view = st.tensor(name).map_err(|_| {
                bad(format!(
                    "tensor `{name}` is missing (a vector file holds `users` and `items`)"
                ))
            })?;
            let [rows, cols] = view.shape() else {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, expected [rows, dim]",
                    view.shape()
                )));
            };
            let (rows, cols) = (*rows, *cols);
            let t = view
                .load(&Device::Cpu)
                .and_then(|t| t.to_dtype(candle_core::DType::F32))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| {
                    bad(format!(
                        "tensor `{name}` ({:?}) cannot be read as f32: {e}",
                        view.dtype()
                    ))
                })?;
            Ok((t, rows, cols))
        };
        let (users, n_users, du) = matrix("users")?;
        let (items, n_items, di) = matrix("items")?;
        if du != di {
            return Err(bad(format!(
                "`users` vectors have {du} dimensions but `items` vectors {di}: both must \
                 come from one embedding model"
            )));
        }
        for (key, actual) in [("dim", du), ("n_users", n_users), ("n_items", n_items)] {
            if let Some(said) = number(key)? {
                if said != actual {
                    return Err(bad(format!(
                        "metadata `{key}` = {said}, but the tensors hold {actual}"
                    )));
                }
            }
        }
        let text = |k: &str, default: &str| meta.get(k).cloned().unwrap_or_else(|| default.into());
        let v = Self {
            users,
            items,
            n_users,
            n_items,
            dim: du,
            model: text("model", "unknown"),
            source: text("source", "file"),
        };
        v.validate().map_err(|e| bad(e.to_string()))?;
        Ok(v)
    }

    /// Checks that there is one row per user and per item of `ds` and that every value is
    /// finite (naming the first bad row).
    pub fn check_against(&self, ds: &Dataset) -> Result<(), DataError> {
        if self.n_users != ds.n_users() || self.n_items != ds.n_items() {
            return Err(DataError::Invalid(format!(
                "semantic vectors ({}, {}) have {} user rows and {} item rows, but dataset `{}` \
                 has {} users and {} items: embed this dataset's profiles again",
                self.model,
                self.source,
                self.n_users,
                self.n_items,
                ds.name,
                ds.n_users(),
                ds.n_items()
            )));
        }
        self.validate()?;
        Ok(())
    }

    /// `(users [n_users, dim], items [n_items, dim])` as f32 tensors on `device`.
    pub fn to_tensors(&self, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let u = Tensor::from_slice(&self.users, (self.n_users, self.dim), device)?;
        let i = Tensor::from_slice(&self.items, (self.n_items, self.dim), device)?;
        Ok((u, i))
    }
}
