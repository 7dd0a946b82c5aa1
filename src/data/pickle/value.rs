//! The generic value tree the pickle machine builds (SPEC.md section 3: RLMRec's splits and
//! embeddings are Python pickles).
//!
//! Nothing Python is executed: a class or function reference stays a [`Global`], and calling
//! one (opcodes `REDUCE`, `NEWOBJ`) yields an [`Object`] that records what was called, with
//! which arguments, and the state later given to it by `BUILD`. Mutable containers and
//! objects are shared (`Rc<RefCell<..>>`) because the memo may hand out the same Python
//! object twice and a later opcode may change it in place (numpy dtypes are memoised
//! before their `BUILD`).

use std::cell::{Ref, RefCell};
use std::fmt;
use std::rc::Rc;

/// A reference to a Python class or function by module and name, e.g. `numpy.dtype`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

impl Global {
    /// `module.name`
    pub fn qualname(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
    /// True when this is `module.name`.
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.module == module && self.name == name
    }
}

/// The result of calling a [`Global`] (or another value) while unpickling.
#[derive(Clone, Debug)]
pub struct Object {
    /// What was called: the class for `NEWOBJ`, the callable for `REDUCE`.
    pub class: Value,
    /// Positional arguments of the call.
    pub args: Rc<[Value]>,
    /// Keyword arguments (`NEWOBJ_EX` only).
    pub kwargs: Option<Value>,
    /// The state given by `BUILD` (`__setstate__` argument or instance dict), if any.
    pub state: Option<Value>,
}

/// A Python value as reconstructed from a pickle.
#[derive(Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in 64 bits: little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    /// `bytes`, `bytearray` and Python 2 `str` (raw bytes).
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    /// Key/value pairs in pickle order (a pickled dict never repeats a key).
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// `set` and `frozenset`, in pickle order.
    Set(Rc<RefCell<Vec<Value>>>),
    Global(Rc<Global>),
    Object(Rc<RefCell<Object>>),
}

impl Value {
    /// The Python type of this value, e.g. `builtins.dict`, or for an object its class
    /// (`scipy.sparse._coo.coo_matrix`; `numpy.ndarray` for reconstructed numpy arrays).
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "NoneType".into(),
            Value::Bool(_) => "builtins.bool".into(),
            Value::Int(_) | Value::BigInt(_) => "builtins.int".into(),
            Value::Float(_) => "builtins.float".into(),
            Value::Str(_) => "builtins.str".into(),
            Value::Bytes(_) => "builtins.bytes".into(),
            Value::Tuple(_) => "builtins.tuple".into(),
            Value::List(_) => "builtins.list".into(),
            Value::Dict(_) => "builtins.dict".into(),
            Value::Set(_) => "builtins.set".into(),
            Value::Global(g) => format!("reference to {}", g.qualname()),
            Value::Object(o) => {
                let o = o.borrow();
                match &o.class {
                    Value::Global(g) if g.name == "_reconstruct" => match o.args.first() {
                        Some(Value::Global(c)) => c.qualname(),
                        _ => g.qualname(),
                    },
                    Value::Global(g) if g.name == "_frombuffer" => "numpy.ndarray".into(),
                    Value::Global(g) => g.qualname(),
                    other => format!("object made by {}", other.type_name()),
                }
            }
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(t),
            _ => None,
        }
    }
    pub fn as_global(&self) -> Option<&Global> {
        match self {
            Value::Global(g) => Some(g),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<Ref<'_, Object>> {
        match self {
            Value::Object(o) => Some(o.borrow()),
            _ => None,
        }
    }
    /// Elements of a tuple, list or set (cloned handles).
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.to_vec()),
            Value::List(l) | Value::Set(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }
    /// Value of a dict under a `str` key (or a `bytes` key with the same bytes, as Python 2
    /// pickles write them); the last one wins if a key repeats.
    pub fn get(&self, key: &str) -> Option<Value> {
        let Value::Dict(d) = self else { return None };
        let d = d.borrow();
        d.iter()
            .rev()
            .find(|(k, _)| k.is_key(key))
            .map(|(_, v)| v.clone())
    }
    fn is_key(&self, key: &str) -> bool {
        match self {
            Value::Str(s) => &**s == key,
            Value::Bytes(b) => &**b == key.as_bytes(),
            _ => false,
        }
    }
}

impl fmt::Debug for Value {
    /// Short form: containers show their length, bytes their size, objects their class, so
    /// printing a multi-megabyte array or a self-referencing list stays cheap and finite.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => write!(f, "None"),
            Value::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::BigInt(b) => write!(f, "<int of {} bytes>", b.len()),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::Tuple(t) => write!(f, "<tuple of {}>", t.len()),
            Value::List(l) => write!(f, "<list of {}>", l.borrow().len()),
            Value::Dict(d) => write!(f, "<dict of {}>", d.borrow().len()),
            Value::Set(s) => write!(f, "<set of {}>", s.borrow().len()),
            Value::Global(g) => write!(f, "<global {}>", g.qualname()),
            Value::Object(_) => write!(f, "<{} object>", self.type_name()),
        }
    }
}
