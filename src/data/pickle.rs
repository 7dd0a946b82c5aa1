//! A minimal Python-pickle reader, so RLMRec's files (SPEC.md section 3) load without Python:
//! pickled `scipy.sparse` matrices (the `{trn,val,tst}_mat.pkl` splits) and pickled numpy
//! arrays (embedding matrices such as `usr_emb_np.pkl`).
//!
//! Layers: [`load`] interprets the opcodes of protocols 2-5 into a generic [`Value`] tree
//! (submodule `vm`, tree in `value`); [`CooMatrix`] and [`NdArray`] recognise scipy and numpy
//! objects in that tree (submodules `sparse`, `numpy`). No Python code is ever run.
//!
//! Every error names the file; errors while interpreting also give the byte offset and the
//! opcode (`pickle byte 160647, opcode BINBYTES (0x42): truncated: ...`), errors about the
//! content say what was expected and found (`expected a pickled scipy.sparse coo_matrix (or
//! csr/csc), found builtins.dict`).

mod numpy;
mod opcodes;
mod sparse;
mod value;
mod vm;

pub use numpy::{f16_to_f32, fortran_to_c, Dtype, DtypeKind, NdArray, RawArray};
pub use opcodes::{describe as describe_opcode, opcode_name};
pub use sparse::CooMatrix;
pub use value::{Global, Object, Value};
pub use vm::{load, PickleError, HIGHEST_PROTOCOL};

use super::error::{DataError, Result};
use std::path::Path;

/// Reads and interprets a whole pickle file.
pub fn read_pickle(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    load(&bytes).map_err(|e| DataError::file(path, e.to_string()))
}

/// Reads a pickled `scipy.sparse` COO matrix (CSR and CSC are converted to COO).
pub fn read_coo(path: &Path) -> Result<CooMatrix> {
    let v = read_pickle(path)?;
    CooMatrix::try_from(&v).map_err(|m| DataError::file(path, m))
}

/// Reads a pickled numpy array of bool, integer or float elements as `f32`, C order.
pub fn read_ndarray(path: &Path) -> Result<NdArray> {
    let v = read_pickle(path)?;
    NdArray::try_from(&v).map_err(|m| DataError::file(path, m))
}
