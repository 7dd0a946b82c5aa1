//! The pickle machine: interprets the opcodes of pickle protocols 2-5 (and the few protocol
//! 0/1 ones that binary pickles still use) into a [`Value`] tree, executing no Python.
//! Opcode semantics follow CPython's `Lib/pickle.py` `_Unpickler` and `pickletools`.
//!
//! Supported: PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE BININT BININT1
//! BININT2 LONG1 LONG4 BINFLOAT SHORT_BINUNICODE BINUNICODE BINUNICODE8 SHORT_BINSTRING
//! BINSTRING SHORT_BINBYTES BINBYTES BINBYTES8 BYTEARRAY8 EMPTY_TUPLE TUPLE1-3 TUPLE
//! EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS
//! FROZENSET GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD MEMOIZE PUT BINPUT LONG_BINPUT
//! GET BINGET LONG_BINGET. Anything else (text literals of protocol 0, INST/OBJ, PERSID,
//! EXT*, out-of-band buffers) is an error naming the opcode and its byte offset.
//!
//! `REDUCE` evaluates only the calls Python itself uses to pickle bytes and sets
//! (`_codecs.encode(s, 'latin1')`, `bytes(..)`, `bytearray(..)`, `set(..)`, `frozenset(..)`);
//! every other call becomes an [`Object`].

use super::opcodes::{describe, opcode_name};
use super::value::{Global, Object, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// Highest pickle protocol this reader knows.
pub const HIGHEST_PROTOCOL: u8 = 5;

/// A failure while interpreting a pickle: where (byte offset of the opcode), which opcode,
/// and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickleError {
    /// Byte offset of the opcode being interpreted (the file length when the data ends
    /// before an opcode could be read).
    pub offset: usize,
    /// The opcode byte, when one was read.
    pub opcode: Option<u8>,
    pub message: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.opcode {
            Some(op) => write!(
                f,
                "pickle byte {}, opcode {}: {}",
                self.offset,
                describe(op),
                self.message
            ),
            None => write!(f, "pickle byte {}: {}", self.offset, self.message),
        }
    }
}

impl std::error::Error for PickleError {}

/// Interprets a whole pickle and returns the value `STOP` yields. Never panics on bad
/// input; trailing bytes after `STOP` are ignored, as Python does.
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    Machine {
        data,
        pos: 0,
        op_start: 0,
        op: None,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

type R<T> = Result<T, PickleError>;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    op: Option<u8>,
    stack: Vec<Value>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Machine<'a> {
    fn err(&self, message: impl Into<String>) -> PickleError {
        PickleError {
            offset: self.op_start,
            opcode: self.op,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let left = self.data.len() - self.pos;
        if n > left {
            return Err(self.err(format!(
                "truncated: the argument needs {n} bytes, only {left} left in the data"
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> R<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    /// A 64-bit length; lengths beyond the remaining data are reported by `take`.
    fn len8(&mut self) -> R<usize> {
        let n = u64::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} is too large")))
    }
    /// A signed 32-bit length (BINSTRING, LONG4), negative ones rejected.
    fn len4_signed(&mut self) -> R<usize> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))
    }
    /// A newline-terminated argument (GLOBAL, PUT, GET), without the newline.
    fn line(&mut self) -> R<&'a [u8]> {
        match self.data[self.pos..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                let s = &self.data[self.pos..self.pos + n];
                self.pos += n + 1;
                Ok(s)
            }
            None => Err(self.err("truncated: the argument line has no terminating newline")),
        }
    }
    fn utf8(&self, bytes: &[u8]) -> R<Rc<str>> {
        std::str::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|e| self.err(format!("invalid UTF-8 text: {e}")))
    }
    fn decimal(&self, bytes: &[u8]) -> R<u64> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                self.err(format!(
                    "expected a decimal number, found {:?}",
                    String::from_utf8_lossy(bytes)
                ))
            })
    }

    /// Height below which the current MARK protects the stack.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    fn pop(&mut self) -> R<Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow: no value to take (malformed pickle)"));
        }
        Ok(self.stack.pop().expect("checked above"))
    }
    fn top(&self) -> R<&Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow: no value to work on (malformed pickle)"));
        }
        Ok(self.stack.last().expect("checked above"))
    }
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK to pop to (malformed pickle)"))?;
        if m > self.stack.len() {
            return Err(self.err("stack underflow below MARK (malformed pickle)"));
        }
        Ok(self.stack.split_off(m))
    }
    fn pop_tuple(&mut self, n: usize) -> R<Value> {
        if self.stack.len() < self.floor() + n {
            return Err(self.err(format!(
                "stack underflow: needs {n} values (malformed pickle)"
            )));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        Ok(Value::Tuple(items.into()))
    }
    fn memo_put(&mut self, key: u64) -> R<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u64) -> R<()> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.stack.push(v);
        Ok(())
    }
    /// Little-endian two's complement integer of LONG1/LONG4.
    fn long(&self, b: &[u8]) -> Value {
        if b.is_empty() {
            return Value::Int(0);
        }
        let neg = b[b.len() - 1] & 0x80 != 0;
        let fill = if neg { 0xff } else { 0 };
        let fits = b.len() <= 8 || (b[8..].iter().all(|&x| x == fill) && (b[7] & 0x80 != 0) == neg);
        if !fits {
            return Value::BigInt(b.into());
        }
        let mut a = [fill; 8];
        let n = b.len().min(8);
        a[..n].copy_from_slice(&b[..n]);
        Value::Int(i64::from_le_bytes(a))
    }

    fn run(mut self) -> R<Value> {
        loop {
            self.op_start = self.pos;
            self.op = None;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(self.err("truncated: the data ends before the STOP opcode"));
            };
            self.pos += 1;
            self.op = Some(op);
            if op == b'.' {
                return self.pop();
            }
            self.step(op)?;
        }
    }

    fn step(&mut self, op: u8) -> R<()> {
        match op {
            0x80 => {
                let p = self.u8()?;
                if p > HIGHEST_PROTOCOL {
                    return Err(self.err(format!(
                        "unsupported pickle protocol {p} (this reader knows 0-5)"
                    )));
                }
            }
            0x95 => {
                let n = self.len8()?;
                let left = self.data.len() - self.pos;
                if n > left {
                    return Err(self.err(format!(
                        "truncated: the frame announces {n} bytes, only {left} left"
                    )));
                }
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                if self.stack.len() > self.floor() {
                    self.stack.pop();
                } else {
                    self.pop_mark()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'J' => {
                let v = self.i32()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(Value::Int(v as i64));
            }
            0x8a => {
                let n = self.u8()? as usize;
                let b = self.take(n)?;
                let v = self.long(b);
                self.stack.push(v);
            }
            0x8b => {
                let n = self.len4_signed()?;
                let b = self.take(n)?;
                let v = self.long(b);
                self.stack.push(v);
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.stack.push(Value::Float(v));
            }
            0x8c => {
                let n = self.u8()? as usize;
                let s = self.take(n)?;
                let v = self.utf8(s)?;
                self.stack.push(Value::Str(v));
            }
            b'X' => {
                let n = self.u32()? as usize;
                let s = self.take(n)?;
                let v = self.utf8(s)?;
                self.stack.push(Value::Str(v));
            }
            0x8d => {
                let n = self.len8()?;
                let s = self.take(n)?;
                let v = self.utf8(s)?;
                self.stack.push(Value::Str(v));
            }
            b'U' | b'C' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?;
                self.stack.push(Value::Bytes(b.into()));
            }
            b'T' => {
                let n = self.len4_signed()?;
                let b = self.take(n)?;
                self.stack.push(Value::Bytes(b.into()));
            }
            b'B' => {
                let n = self.u32()? as usize;
                let b = self.take(n)?;
                self.stack.push(Value::Bytes(b.into()));
            }
            0x8e | 0x96 => {
                let n = self.len8()?;
                let b = self.take(n)?;
                self.stack.push(Value::Bytes(b.into()));
            }
            b')' => self.stack.push(Value::Tuple(Rc::from(Vec::new()))),
            0x85..=0x87 => {
                let t = self.pop_tuple((op - 0x84) as usize)?;
                self.stack.push(t);
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items.into()));
            }
            b']' => self
                .stack
                .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_list(vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            b'}' => self
                .stack
                .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.extend_dict(vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.extend_dict(pairs)?;
            }
            0x8f => self
                .stack
                .push(Value::Set(Rc::new(RefCell::new(Vec::new())))),
            0x90 => {
                let items = self.pop_mark()?;
                match self.top()? {
                    Value::Set(s) => s.borrow_mut().extend(items),
                    other => {
                        return Err(
                            self.err(format!("ADDITEMS needs a set, found {}", other.type_name()))
                        )
                    }
                }
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Set(Rc::new(RefCell::new(items))));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let g = Global {
                    module: self.utf8(module)?.to_string(),
                    name: self.utf8(name)?.to_string(),
                };
                self.stack.push(Value::Global(Rc::new(g)));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    return Err(self.err(format!(
                        "STACK_GLOBAL needs two strings, found {} and {}",
                        module.type_name(),
                        name.type_name()
                    )));
                };
                let g = Global {
                    module: module.to_string(),
                    name: name.to_string(),
                };
                self.stack.push(Value::Global(Rc::new(g)));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.reduce(callable, args)?;
                self.stack.push(v);
            }
            0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                let args = self.args_tuple(args, "NEWOBJ")?;
                self.stack.push(object(class, args, None));
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                let args = self.args_tuple(args, "NEWOBJ_EX")?;
                self.stack.push(object(class, args, Some(kwargs)));
            }
            b'b' => {
                let state = self.pop()?;
                match self.top()? {
                    Value::Object(o) => o.borrow_mut().state = Some(state),
                    other => {
                        return Err(self.err(format!(
                            "BUILD needs an object to give state to, found {}",
                            other.type_name()
                        )))
                    }
                }
            }
            0x94 => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            b'p' => {
                let line = self.line()?;
                let key = self.decimal(line)?;
                self.memo_put(key)?;
            }
            b'q' => {
                let key = self.u8()? as u64;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.u32()? as u64;
                self.memo_put(key)?;
            }
            b'g' => {
                let line = self.line()?;
                let key = self.decimal(line)?;
                self.memo_get(key)?;
            }
            b'h' => {
                let key = self.u8()? as u64;
                self.memo_get(key)?;
            }
            b'j' => {
                let key = self.u32()? as u64;
                self.memo_get(key)?;
            }
            _ => {
                let why = match opcode_name(op) {
                    Some(_) => concat!(
                        "is not supported by this reader (write the pickle with protocol 2 or ",
                        "higher, without persistent ids, extension codes or out-of-band buffers)"
                    ),
                    None => "is not a pickle opcode (corrupt or not a pickle file)",
                };
                return Err(self.err(why));
            }
        }
        Ok(())
    }

    fn pairs(&self, items: Vec<Value>) -> R<Vec<(Value, Value)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(format!(
                "odd number of items ({}) for key/value pairs",
                items.len()
            )));
        }
        let mut it = items.into_iter();
        let mut pairs = Vec::with_capacity(it.len() / 2);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(pairs)
    }
    fn extend_list(&self, items: Vec<Value>) -> R<()> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(self.err(format!(
                "needs a list to append to, found {}",
                other.type_name()
            ))),
        }
    }
    fn extend_dict(&self, pairs: Vec<(Value, Value)>) -> R<()> {
        match self.top()? {
            Value::Dict(d) => {
                d.borrow_mut().extend(pairs);
                Ok(())
            }
            other => Err(self.err(format!(
                "needs a dict to set items in, found {}",
                other.type_name()
            ))),
        }
    }
    fn args_tuple(&self, args: Value, what: &str) -> R<Rc<[Value]>> {
        match args {
            Value::Tuple(t) => Ok(t),
            other => Err(self.err(format!(
                "{what} arguments must be a tuple, found {}",
                other.type_name()
            ))),
        }
    }

    /// REDUCE: evaluates the calls Python uses for bytes and sets, records any other call.
    fn reduce(&self, callable: Value, args: Value) -> R<Value> {
        let args = self.args_tuple(args, "REDUCE")?;
        if let Value::Global(g) = &callable {
            let builtin = g.module == "builtins" || g.module == "__builtin__";
            let evaluated = match g.name.as_str() {
                "encode" if g.module == "_codecs" => latin1_call(&args),
                "bytes" | "bytearray" if builtin => match &*args {
                    [] => Some(Value::Bytes(Rc::from(Vec::new()))),
                    [b @ Value::Bytes(_)] => Some(b.clone()),
                    _ => latin1_call(&args),
                },
                "set" | "frozenset" if builtin => match &*args {
                    [] => Some(Value::Set(Rc::new(RefCell::new(Vec::new())))),
                    [v] => v.items().map(|i| Value::Set(Rc::new(RefCell::new(i)))),
                    _ => None,
                },
                _ => None,
            };
            if let Some(v) = evaluated {
                return Ok(v);
            }
        }
        Ok(object(callable, args, None))
    }
}

/// `(text, 'latin1')` arguments as Python 3 writes bytes for protocols below 3.
fn latin1_call(args: &[Value]) -> Option<Value> {
    let [Value::Str(s), Value::Str(enc)] = args else {
        return None;
    };
    if !matches!(
        enc.to_ascii_lowercase().as_str(),
        "latin1" | "latin-1" | "iso-8859-1"
    ) {
        return None;
    }
    let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
    bytes.map(|b| Value::Bytes(b.into()))
}

fn object(class: Value, args: Rc<[Value]>, kwargs: Option<Value>) -> Value {
    Value::Object(Rc::new(RefCell::new(Object {
        class,
        args,
        kwargs,
        state: None,
    })))
}
