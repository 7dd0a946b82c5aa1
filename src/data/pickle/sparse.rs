//! scipy sparse matrices inside pickles (SPEC.md section 3: RLMRec's `{trn,val,tst}_mat.pkl`),
//! decoded from the [`Value`] tree into a [`CooMatrix`].
//!
//! A scipy matrix pickles as `NEWOBJ(scipy.sparse._coo.coo_matrix)` plus `BUILD` with its
//! instance dict: `_shape` and, for COO, `row`/`col`/`data` (scipy < 1.13) or
//! `coords = (row, col)`/`data` (scipy >= 1.13); for CSR/CSC `indptr`/`indices`/`data`.
//! `*_array` classes and the old module names (`scipy.sparse.coo`) are accepted too.
//! Checks: index arrays are integer and 1-D, no index is negative or outside the shape, the
//! arrays have equal lengths, a CSR/CSC `indptr` starts at 0, never decreases and ends at nnz.

use super::numpy::RawArray;
use super::value::Value;

/// A sparse matrix in coordinate form: entry `k` is `data[k]` at `(rows[k], cols[k])`, in the
/// order stored in the file (row-major for CSR input, column-major for CSC). Duplicates and
/// explicit zeros are kept as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CooMatrix {
    pub n_rows: usize,
    pub n_cols: usize,
    pub rows: Vec<u32>,
    pub cols: Vec<u32>,
    pub data: Vec<f64>,
}

impl CooMatrix {
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.rows.len()
    }
    /// `(row, col)` of every stored entry, in stored order.
    pub fn pairs(&self) -> Vec<(u32, u32)> {
        self.rows
            .iter()
            .copied()
            .zip(self.cols.iter().copied())
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Coo,
    Csr,
    Csc,
}

impl TryFrom<&Value> for CooMatrix {
    type Error = String;

    /// Reads a pickled scipy COO, CSR or CSC matrix (or array).
    fn try_from(v: &Value) -> Result<CooMatrix, String> {
        let expected = || {
            format!(
                "expected a pickled scipy.sparse coo_matrix (or csr/csc), found {}",
                v.type_name()
            )
        };
        let o = v.as_object().ok_or_else(expected)?;
        let g = o.class.as_global().ok_or_else(expected)?;
        if !g.module.starts_with("scipy.sparse") {
            return Err(expected());
        }
        let format = match g.name.as_str() {
            "coo_matrix" | "coo_array" => Format::Coo,
            "csr_matrix" | "csr_array" => Format::Csr,
            "csc_matrix" | "csc_array" => Format::Csc,
            _ => {
                return Err(format!(
                    "{} is not supported (only COO, CSR and CSC)",
                    g.qualname()
                ))
            }
        };
        let state = o
            .state
            .clone()
            .ok_or_else(|| format!("{} has no state (BUILD missing)", g.qualname()))?;
        if !matches!(state, Value::Dict(_)) {
            return Err(format!(
                "{} state is {}, expected a dict",
                g.qualname(),
                state.type_name()
            ));
        }
        drop(o);

        let shape = state
            .get("_shape")
            .or_else(|| state.get("shape"))
            .ok_or("the matrix has no `_shape`")?;
        let dims: Option<Vec<usize>> = shape
            .as_tuple()
            .map(|t| {
                t.iter()
                    .map(|d| d.as_int().and_then(|d| usize::try_from(d).ok()))
                    .collect()
            })
            .unwrap_or(None);
        let (n_rows, n_cols) = match dims.as_deref() {
            Some(&[r, c]) => (r, c),
            _ => {
                return Err(format!(
                    "`_shape` must be two non-negative integers, found {shape:?}"
                ))
            }
        };
        let array = |key: &str| -> Result<RawArray, String> {
            let v = state
                .get(key)
                .ok_or_else(|| format!("the matrix has no `{key}` array"))?;
            one_d(&v, key)
        };
        let data = array("data")?.to_f64();

        let (rows, cols) = match format {
            Format::Coo => {
                let (row, col) = match state.get("coords") {
                    Some(coords) => match coords.as_tuple() {
                        Some([r, c]) => (one_d(r, "coords[0]")?, one_d(c, "coords[1]")?),
                        _ => {
                            return Err(format!(
                                "`coords` must be a (row, col) tuple, found {coords:?}"
                            ))
                        }
                    },
                    None => (array("row")?, array("col")?),
                };
                let (rows, cols) = (indices(&row, "row", n_rows)?, indices(&col, "col", n_cols)?);
                if rows.len() != cols.len() || rows.len() != data.len() {
                    return Err(format!(
                        "row, col and data have different lengths ({}, {}, {})",
                        rows.len(),
                        cols.len(),
                        data.len()
                    ));
                }
                (rows, cols)
            }
            Format::Csr | Format::Csc => {
                let (n_major, n_minor) = if format == Format::Csr {
                    (n_rows, n_cols)
                } else {
                    (n_cols, n_rows)
                };
                let indptr = array("indptr")?
                    .to_i64()
                    .map_err(|e| format!("`indptr`: {e}"))?;
                let minor = indices(&array("indices")?, "indices", n_minor)?;
                let major = expand_indptr(&indptr, n_major, minor.len(), data.len())?;
                if format == Format::Csr {
                    (major, minor)
                } else {
                    (minor, major)
                }
            }
        };
        Ok(CooMatrix {
            n_rows,
            n_cols,
            rows,
            cols,
            data,
        })
    }
}

fn one_d(v: &Value, key: &str) -> Result<RawArray, String> {
    let a = RawArray::from_value(v).map_err(|e| format!("`{key}`: {e}"))?;
    if a.shape.len() != 1 {
        return Err(format!("`{key}` must be 1-D, has shape {}", a.shape_text()));
    }
    Ok(a)
}

/// Integer index array -> `u32`, each in `0..bound`.
fn indices(a: &RawArray, key: &str, bound: usize) -> Result<Vec<u32>, String> {
    let v = a.to_i64().map_err(|e| format!("`{key}`: {e}"))?;
    v.iter()
        .enumerate()
        .map(|(k, &x)| {
            if x < 0 {
                return Err(format!("`{key}`[{k}] = {x} is negative"));
            }
            match u32::try_from(x) {
                Ok(i) if (i as usize) < bound => Ok(i),
                _ => Err(format!(
                    "`{key}`[{k}] = {x} is out of range: the shape allows 0..{bound}"
                )),
            }
        })
        .collect()
}

/// CSR/CSC `indptr` -> the major index of every entry.
fn expand_indptr(
    indptr: &[i64],
    n_major: usize,
    n_indices: usize,
    n_data: usize,
) -> Result<Vec<u32>, String> {
    if indptr.len() != n_major + 1 {
        return Err(format!(
            "`indptr` has {} entries, the shape needs {}",
            indptr.len(),
            n_major + 1
        ));
    }
    if n_indices != n_data {
        return Err(format!(
            "indices and data have different lengths ({n_indices}, {n_data})"
        ));
    }
    if indptr[0] != 0 || indptr[n_major] != n_indices as i64 {
        return Err(format!(
            "`indptr` must run from 0 to {n_indices} (the number of entries), runs from {} to {}",
            indptr[0], indptr[n_major]
        ));
    }
    if let Some(i) = (0..n_major).find(|&i| indptr[i + 1] < indptr[i]) {
        return Err(format!(
            "`indptr` decreases at {}: {} then {}",
            i + 1,
            indptr[i],
            indptr[i + 1]
        ));
    }
    // now 0 = indptr[0] <= ... <= indptr[n_major] = n_indices: the expansion stays in bounds
    let mut major = Vec::with_capacity(n_indices);
    for i in 0..n_major {
        let n = (indptr[i + 1] - indptr[i]) as usize;
        if n > 0 {
            let i =
                u32::try_from(i).map_err(|_| format!("row/column {i} does not fit in 32 bits"))?;
            major.extend(std::iter::repeat_n(i, n));
        }
    }
    Ok(major)
}
