//! numpy arrays inside pickles (SPEC.md section 3: RLMRec's index/data arrays and embedding
//! matrices), decoded from the [`Value`] tree without numpy.
//!
//! numpy writes an array in one of two ways:
//! - protocols 2-4, or non-contiguous data: `numpy.core.multiarray._reconstruct(ndarray, (0,),
//!   b'b')` followed by `BUILD` with state `(1, shape, dtype, is_fortran, raw_bytes)`;
//! - protocol 5: `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`.
//!
//! numpy 2 spells the modules `numpy._core.*`; both are accepted. A dtype is
//! `numpy.dtype('f8', False, True)` with `BUILD` state `(3, '<', subarray, names, fields,
//! elsize, alignment, flags)`. Supported element types: bool, signed and unsigned integers of
//! 1-8 bytes, float16/32/64, either byte order; C or Fortran memory order (Fortran data is
//! reordered to C order on conversion). Object, string, complex and structured arrays are
//! rejected with an error naming the dtype.

use super::value::Value;
use std::rc::Rc;

/// Reads one element of primitive type `$t` from a chunk of exactly its size.
macro_rules! rd {
    ($t:ty, $c:expr, $be:expr) => {{
        let a: [u8; std::mem::size_of::<$t>()] = $c.try_into().expect("chunk has the item size");
        if $be {
            <$t>::from_be_bytes(a)
        } else {
            <$t>::from_le_bytes(a)
        }
    }};
}

/// Converts every element to `$out` with `as` (float16 via [`f16_to_f32`]).
macro_rules! convert {
    ($s:expr, $out:ty) => {{
        let be = $s.dtype.big_endian;
        match ($s.dtype.kind, $s.dtype.size) {
            (DtypeKind::Bool, _) => $s.decode(|c| (c[0] != 0) as u8 as $out),
            (DtypeKind::Float, 2) => $s.decode(|c| f16_to_f32(rd!(u16, c, be)) as $out),
            (DtypeKind::Float, 4) => $s.decode(|c| rd!(f32, c, be) as $out),
            (DtypeKind::Float, _) => $s.decode(|c| rd!(f64, c, be) as $out),
            (DtypeKind::Int, 1) => $s.decode(|c| c[0] as i8 as $out),
            (DtypeKind::Int, 2) => $s.decode(|c| rd!(i16, c, be) as $out),
            (DtypeKind::Int, 4) => $s.decode(|c| rd!(i32, c, be) as $out),
            (DtypeKind::Int, _) => $s.decode(|c| rd!(i64, c, be) as $out),
            (DtypeKind::UInt, 1) => $s.decode(|c| c[0] as $out),
            (DtypeKind::UInt, 2) => $s.decode(|c| rd!(u16, c, be) as $out),
            (DtypeKind::UInt, 4) => $s.decode(|c| rd!(u32, c, be) as $out),
            (DtypeKind::UInt, _) => $s.decode(|c| rd!(u64, c, be) as $out),
        }
    }};
}

/// Element kind of a supported numpy dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeKind {
    Bool,
    Int,
    UInt,
    Float,
}

/// A supported numpy dtype: kind, item size in bytes and byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtype {
    pub kind: DtypeKind,
    pub size: usize,
    pub big_endian: bool,
}

impl Dtype {
    /// numpy's name, e.g. `float64`, with `>` in front for big-endian data.
    pub fn name(&self) -> String {
        let base = match self.kind {
            DtypeKind::Bool => "bool".to_string(),
            DtypeKind::Int => format!("int{}", self.size * 8),
            DtypeKind::UInt => format!("uint{}", self.size * 8),
            DtypeKind::Float => format!("float{}", self.size * 8),
        };
        if self.big_endian && self.size > 1 {
            format!(">{base}")
        } else {
            base
        }
    }

    /// Parses a dtype descriptor such as `f8`, `<i4` or `b1`; `big_endian` applies unless
    /// the descriptor names a byte order itself.
    pub fn parse_descr(descr: &str, big_endian: bool) -> Result<Dtype, String> {
        let unsupported = || {
            let what = match descr
                .trim_start_matches(['<', '>', '|', '='])
                .chars()
                .next()
            {
                Some('O') => " (Python objects)",
                Some('U') | Some('S') => " (strings)",
                Some('c') => " (complex numbers)",
                Some('V') => " (structured records)",
                Some('M') | Some('m') => " (dates/times)",
                _ => "",
            };
            let only = "only bool, integer and float16/32/64 arrays";
            format!("dtype '{descr}'{what} is not supported ({only})")
        };
        let (big_endian, rest) = match descr.as_bytes().first() {
            Some(b'<') => (false, &descr[1..]),
            Some(b'>') => (true, &descr[1..]),
            Some(b'|') | Some(b'=') => (big_endian, &descr[1..]),
            _ => (big_endian, descr),
        };
        let mut chars = rest.chars();
        let kind = chars.next().ok_or_else(unsupported)?;
        let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
        let kind = match (kind, size) {
            ('b', 1) => DtypeKind::Bool,
            ('i', 1 | 2 | 4 | 8) => DtypeKind::Int,
            ('u', 1 | 2 | 4 | 8) => DtypeKind::UInt,
            ('f', 2 | 4 | 8) => DtypeKind::Float,
            _ => return Err(unsupported()),
        };
        Ok(Dtype {
            kind,
            size,
            big_endian,
        })
    }

    /// Reads a pickled `numpy.dtype` object.
    pub fn from_value(v: &Value) -> Result<Dtype, String> {
        let found = || format!("expected a numpy.dtype, found {}", v.type_name());
        let o = v.as_object().ok_or_else(found)?;
        match o.class.as_global() {
            Some(g) if g.name == "dtype" && g.module.starts_with("numpy") => {}
            _ => return Err(found()),
        }
        let descr = match o.args.first() {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => return Err("numpy.dtype without a type descriptor".into()),
        };
        let mut big_endian = cfg!(target_endian = "big");
        if let Some(state) = &o.state {
            let s = state.as_tuple().ok_or("numpy.dtype state is not a tuple")?;
            let order = match s.get(1) {
                Some(Value::Str(x)) => x.to_string(),
                Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            };
            match order.as_str() {
                "<" => big_endian = false,
                ">" => big_endian = true,
                _ => {}
            }
            let is_set = |i: usize| s.get(i).is_some_and(|x| !matches!(x, Value::None));
            if is_set(2) || is_set(3) {
                return Err(format!(
                    "dtype '{descr}' is a structured or sub-array dtype, which is not supported"
                ));
            }
        }
        Dtype::parse_descr(&descr, big_endian)
    }
}

/// A numpy array as pickled: shape, dtype, raw element bytes in memory order.
#[derive(Clone, Debug)]
pub struct RawArray {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// `len() * dtype.size` bytes.
    pub bytes: Rc<[u8]>,
    /// True when `bytes` are in Fortran (column-major) order.
    pub fortran: bool,
}

/// A numeric array converted to `f32`, C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NdArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Row `i` of a 2-D array; `None` for other ranks or out of range.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let [n, d] = self.shape[..] else { return None };
        (i < n).then(|| &self.data[i * d..(i + 1) * d])
    }
}

impl TryFrom<&Value> for NdArray {
    type Error = String;
    /// Converts a pickled numpy array of any supported dtype to `f32` (C order).
    fn try_from(v: &Value) -> Result<NdArray, String> {
        let a = RawArray::from_value(v)?;
        Ok(NdArray {
            data: a.to_f32(),
            shape: a.shape,
        })
    }
}

fn shape_of(v: &Value) -> Result<Vec<usize>, String> {
    let bad = || format!("array shape must be a tuple of non-negative integers, found {v:?}");
    let t = v.as_tuple().ok_or_else(bad)?;
    t.iter()
        .map(|d| {
            d.as_int()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(bad)
        })
        .collect()
}

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}

fn raw_bytes(v: &Value) -> Result<Rc<[u8]>, String> {
    match v {
        Value::Bytes(b) => Ok(b.clone()),
        Value::List(_) => Err("object arrays (dtype=object) are not supported".into()),
        other => Err(format!(
            "array data must be bytes, found {}",
            other.type_name()
        )),
    }
}

impl RawArray {
    /// Recognises a pickled numpy array (either of the two layouts) and checks that its data
    /// length matches shape times item size.
    pub fn from_value(v: &Value) -> Result<RawArray, String> {
        let found = || format!("expected a numpy.ndarray, found {}", v.type_name());
        let o = v.as_object().ok_or_else(found)?;
        let g = o.class.as_global().ok_or_else(found)?;
        let (shape, dtype, bytes, fortran) = match g.name.as_str() {
            "_reconstruct"
                if matches!(
                    g.module.as_str(),
                    "numpy.core.multiarray" | "numpy._core.multiarray"
                ) =>
            {
                match o.args.first().and_then(Value::as_global) {
                    Some(c) if c.module.starts_with("numpy") => {}
                    _ => return Err(format!("{} is not a numpy array class", v.type_name())),
                }
                let state = o
                    .state
                    .as_ref()
                    .ok_or("numpy array without state (BUILD missing)")?;
                let s = state.as_tuple().ok_or("numpy array state is not a tuple")?;
                // (version, shape, dtype, is_fortran, data); old numpy omitted the version
                let s = match s.len() {
                    5 => &s[1..],
                    4 => s,
                    n => return Err(format!("numpy array state has {n} fields, expected 5")),
                };
                let fortran = match &s[2] {
                    Value::Bool(b) => *b,
                    Value::Int(i) => *i != 0,
                    other => return Err(format!("is_fortran flag is {}", other.type_name())),
                };
                (
                    shape_of(&s[0])?,
                    Dtype::from_value(&s[1])?,
                    raw_bytes(&s[3])?,
                    fortran,
                )
            }
            "_frombuffer"
                if matches!(
                    g.module.as_str(),
                    "numpy.core.numeric" | "numpy._core.numeric"
                ) =>
            {
                let [buf, dtype, shape, order] = &o.args[..] else {
                    return Err(format!(
                        "_frombuffer with {} arguments, expected 4",
                        o.args.len()
                    ));
                };
                let fortran = match order.as_str() {
                    Some("C") => false,
                    Some("F") => true,
                    _ => return Err(format!("unknown array order {order:?}")),
                };
                (
                    shape_of(shape)?,
                    Dtype::from_value(dtype)?,
                    raw_bytes(buf)?,
                    fortran,
                )
            }
            _ => return Err(found()),
        };
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let need = count.and_then(|c| c.checked_mul(dtype.size));
        if need != Some(bytes.len()) {
            let need = need.map_or("more than addressable".to_string(), |n| n.to_string());
            return Err(format!(
                "array of shape {} and dtype {} needs {need} bytes of data, found {}",
                shape_text(&shape),
                dtype.name(),
                bytes.len()
            ));
        }
        Ok(RawArray {
            shape,
            dtype,
            bytes,
            fortran,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// `(3, 4)`-style text of the shape, for messages.
    pub fn shape_text(&self) -> String {
        shape_text(&self.shape)
    }

    /// Decodes each element with `f`, then puts the result in C order.
    fn decode<T: Copy>(&self, f: impl Fn(&[u8]) -> T) -> Vec<T> {
        let v: Vec<T> = self.bytes.chunks_exact(self.dtype.size).map(f).collect();
        if self.fortran && self.shape.len() > 1 {
            fortran_to_c(&v, &self.shape)
        } else {
            v
        }
    }

    /// All elements as `f64`, C order (int64 beyond 2^53 rounds).
    pub fn to_f64(&self) -> Vec<f64> {
        convert!(self, f64)
    }
    /// All elements as `f32`, C order (float64 and large integers round to nearest).
    pub fn to_f32(&self) -> Vec<f32> {
        convert!(self, f32)
    }
    /// All elements as `i64`, C order; an error for float arrays and uint64 values above
    /// `i64::MAX`.
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        let be = self.dtype.big_endian;
        Ok(match (self.dtype.kind, self.dtype.size) {
            (DtypeKind::Float, _) => {
                return Err(format!(
                    "expected an integer array, found dtype {}",
                    self.dtype.name()
                ))
            }
            (DtypeKind::UInt, 8) => {
                let v = self.decode(|c| rd!(u64, c, be));
                if let Some((k, x)) = v.iter().enumerate().find(|(_, &x)| x > i64::MAX as u64) {
                    return Err(format!(
                        "element {k} = {x} does not fit in a signed 64-bit integer"
                    ));
                }
                v.into_iter().map(|x| x as i64).collect()
            }
            _ => convert!(self, i64),
        })
    }
}

/// Reorders column-major (Fortran) data of `shape` into row-major (C) order.
pub fn fortran_to_c<T: Copy>(src: &[T], shape: &[usize]) -> Vec<T> {
    if src.is_empty() {
        return Vec::new();
    }
    // src is not empty, so every stride is at most src.len(): no overflow
    let nd = shape.len();
    let mut stride = vec![1usize; nd];
    for k in 1..nd {
        stride[k] = stride[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; nd];
    let mut off = 0usize;
    let mut out = Vec::with_capacity(src.len());
    for _ in 0..src.len() {
        out.push(src[off]);
        // advance the C-order multi-index (last axis fastest), tracking the Fortran offset
        for k in (0..nd).rev() {
            idx[k] += 1;
            off += stride[k];
            if idx[k] < shape[k] {
                break;
            }
            off -= stride[k] * shape[k];
            idx[k] = 0;
        }
    }
    out
}

/// IEEE half-precision bits to `f32` (exact: every half value is representable).
pub fn f16_to_f32(h: u16) -> f32 {
    let negative = h & 0x8000 != 0;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let magnitude = match exp {
        0 => man as f32 * (1.0 / 16_777_216.0), // zero and subnormals: man * 2^-24
        31 => f32::from_bits(0x7f80_0000 | (man << 13)), // inf, NaN
        _ => f32::from_bits(((exp + 112) << 23) | (man << 13)), // rebias 15 -> 127
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}
