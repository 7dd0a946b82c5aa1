//! A small reader for NumPy `.npy` files (format versions 1.0, 2.0 and 3.0): little-endian
//! `float32` (`<f4`) or `float64` (`<f8`) arrays in C order, returned as `f32`. Anything
//! else (Fortran order, other dtypes, big-endian, object arrays) is an error that says what
//! was found.
//!
//! Layout (numpy's `format.py`): magic `\x93NUMPY`, major and minor version bytes, header
//! length (u16 LE in v1, u32 LE in v2/v3), then an ASCII Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`, padded with spaces and a
//! newline, then the raw data.

use crate::data::{pickle::NdArray, DataError};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a `.npy` file as `f32` in C order.
pub fn read_npy(path: &Path) -> Result<NdArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(&bytes).map_err(|m| DataError::file(path, m))
}

/// Parses the bytes of a `.npy` file; the error says what is wrong.
pub fn parse_npy(bytes: &[u8]) -> Result<NdArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => {
            return Err(format!(
                ".npy format version {major}.{minor} is not supported"
            ))
        }
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("truncated .npy header (declares {hlen} bytes)"))?;
    let header = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| "the .npy header is not text".to_string())?;
    let descr = dict_value(header, "descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order")?;
    let shape = parse_shape(&dict_value(header, "shape")?)?;
    match fortran.as_str() {
        "False" => {}
        "True" => {
            return Err(
                "array is in Fortran order; save it in C order (np.ascontiguousarray)".into(),
            )
        }
        other => return Err(format!("bad fortran_order value `{other}`")),
    }
    let size = match descr {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(format!(
                "dtype `{other}` is not supported: expected little-endian float32 ('<f4') or \
                 float64 ('<f8')"
            ))
        }
    };
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("array shape overflows")?;
    let data = &bytes[end..];
    if Some(data.len()) != count.checked_mul(size) {
        return Err(format!(
            "array of shape {shape:?} and dtype {descr} needs {} bytes of data, found {}",
            count.saturating_mul(size),
            data.len()
        ));
    }
    let data: Vec<f32> = if size == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    };
    Ok(NdArray { shape, data })
}

/// The raw text of `key`'s value in the header dict (up to the next top-level comma).
fn dict_value(header: &str, key: &str) -> Result<String, String> {
    let missing = || format!("the .npy header has no `{key}` entry: {}", header.trim());
    let pos = ["'", "\""]
        .iter()
        .find_map(|q| header.find(&format!("{q}{key}{q}")))
        .ok_or_else(missing)?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(missing)?
        .trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim().to_string()),
            _ => {}
        }
    }
    Err(missing())
}

/// `(3, 4)`, `(5,)`, `()` -> dimensions.
fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape `{s}`"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape `{s}`"))
        })
        .collect()
}

/// Bytes of a version-1.0 `.npy` file holding `data` as `<f4` with `shape` (for tests and
/// exports).
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // pad so that magic + version + len + header (with newline) is a multiple of 64
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
