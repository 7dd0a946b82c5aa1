//! Importing `e_L` made elsewhere (SPEC section 3): user and item matrices as `.npy`,
//! `.safetensors` (the tensor named `embeddings`, else the only tensor) or RLMRec's
//! pickled numpy arrays (`usr_emb_np.pkl`, `itm_emb_np.pkl`). Rows must follow the
//! dataset's internal ids (RLMRec's ids are already dense, 0-based).

use super::npy::read_npy;
use super::vectors::{first_non_finite, SemanticVectors};
use crate::data::pickle::{f16_to_f32, read_ndarray, NdArray};
use crate::data::{DataError, Dataset};
use safetensors::tensor::{Dtype, SafeTensors};
use std::path::Path;

/// Reads one matrix file, by extension: `.npy`, `.safetensors`, `.pkl` / `.pickle`.
pub fn read_matrix(path: &Path) -> Result<NdArray, DataError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "npy" => read_npy(path),
        "safetensors" => read_safetensors(path),
        "pkl" | "pickle" => read_ndarray(path),
        _ => Err(DataError::file(
            path,
            "unknown vector file type: expected .npy, .safetensors or .pkl (pickled numpy array)",
        )),
    }
}

fn read_safetensors(path: &Path) -> Result<NdArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bad = |m: String| DataError::file(path, m);
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let name = if names.contains(&"embeddings") {
        "embeddings"
    } else if names.len() == 1 {
        names[0]
    } else {
        return Err(bad(format!(
            "holds {} tensors ({}) and none is named `embeddings`: say which by naming it \
             `embeddings` or keep only one",
            names.len(),
            names.join(", ")
        )));
    };
    let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
    let d = t.data();
    let data: Vec<f32> = match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        other => {
            return Err(bad(format!(
                "tensor `{name}` has dtype {other:?}; expected a float type (F32, F64, F16, BF16)"
            )))
        }
    };
    Ok(NdArray {
        shape: t.shape().to_vec(),
        data,
    })
}

/// Checks one imported matrix: 2-D, `expected` rows, finite; returns its dimension.
fn check_matrix(path: &Path, a: &NdArray, what: &str, expected: usize) -> Result<usize, DataError> {
    let [rows, dim] = a.shape[..] else {
        return Err(DataError::file(
            path,
            format!(
                "{what} vectors must be a 2-D array [{what}s, dim], found shape {:?}",
                a.shape
            ),
        ));
    };
    if rows != expected {
        return Err(DataError::file(
            path,
            format!("has {rows} rows but the dataset has {expected} {what}s (one row per {what}, in internal-id order)"),
        ));
    }
    if dim == 0 {
        return Err(DataError::file(path, "vectors have dimension 0"));
    }
    if let Some((r, c, v)) = first_non_finite(&a.data, dim) {
        return Err(DataError::file(
            path,
            format!("{what} row {r} (column {c}) is {v}: vectors must be finite"),
        ));
    }
    Ok(dim)
}

/// Reads user and item vectors from files and checks them against `ds` (2-D, one row per
/// user / item, same dimension, finite).
pub fn import_vectors(
    ds: &Dataset,
    users: &Path,
    items: &Path,
) -> Result<SemanticVectors, DataError> {
    let u = read_matrix(users)?;
    let i = read_matrix(items)?;
    let du = check_matrix(users, &u, "user", ds.n_users())?;
    let di = check_matrix(items, &i, "item", ds.n_items())?;
    if du != di {
        return Err(DataError::Invalid(format!(
            "user vectors ({}) have dimension {du} but item vectors ({}) have dimension {di}",
            users.display(),
            items.display()
        )));
    }
    let file = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Ok(SemanticVectors {
        users: u.data,
        items: i.data,
        n_users: ds.n_users(),
        n_items: ds.n_items(),
        dim: du,
        model: "imported".into(),
        source: format!("import:{},{}", file(users), file(items)),
    })
}
