//! A restricted unpickler: the subset of Python's pickle that `torch.load(weights_only=True)`
//! accepts (dicts and `OrderedDict`, lists, tuples, primitive values, tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2` from storages named by persistent id, dtypes), and
//! nothing that runs code: any other global is an error naming it.
//!
//! Objects live in an arena and are referred to by index, so memo references share
//! instead of copying (a "billion laughs" pickle costs what its bytes cost), and
//! dropping the result never recurses. Every opcode reads bounds-checked bytes, makes at
//! most one object and pushes at most one value, so memory stays proportional to the
//! pickle's length. Nesting depth is limited where the tree is walked
//! ([`super::pickle_value::MAX_DEPTH`]).

use crate::DType;
use std::collections::HashMap;

use super::pickle_value::{Global, Obj, Pickle, TensorRef, Value};

fn global(module: &str, name: &str) -> Option<Global> {
    let storage = |n: &str| {
        Some(match n {
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "DoubleStorage" => DType::F64,
            "IntStorage" => DType::I32,
            "LongStorage" => DType::I64,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    };
    Some(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch", "Size") => Global::Size,
        ("torch", "device") => Global::Device,
        ("_codecs", "encode") => Global::Encode,
        ("torch", n) => match storage(n) {
            Some(d) => Global::Storage(d),
            None => Global::DType(DType::from_name(n)?),
        },
        _ => return None,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objs: Vec<Obj>,
}

/// What each step of the unpickler returns: a value, or why the pickle is refused.
type Step<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated: {n} bytes wanted at offset {} of {}",
                self.pos,
                self.data.len()
            ));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Step<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Step<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL name")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }
    fn pop(&mut self) -> Step<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("pop across a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }
    fn pop_mark(&mut self) -> Step<Vec<Value>> {
        let m = self.marks.pop().ok_or("no MARK on the stack")?;
        if m > self.stack.len() {
            return Err("MARK past the stack".into());
        }
        Ok(self.stack.split_off(m))
    }
    fn top_obj(&mut self) -> Step<usize> {
        match self.stack.last() {
            Some(Value::Obj(i)) if self.marks.last().is_none_or(|&m| m < self.stack.len()) => {
                Ok(*i)
            }
            _ => Err("expected a container on the stack".into()),
        }
    }
    fn new_obj(&mut self, o: Obj) -> Value {
        self.objs.push(o);
        Value::Obj(self.objs.len() - 1)
    }
    fn tuple(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Obj(i) => match self.objs.get(*i)? {
                Obj::Tuple(t) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }
    fn ints(&self, v: &Value, what: &str) -> Step<Vec<i64>> {
        let t = self
            .tuple(v)
            .ok_or_else(|| format!("{what} is not a tuple"))?;
        t.iter()
            .map(|x| match x {
                Value::Int(i) => Ok(*i),
                _ => Err(format!("{what} holds a non-integer")),
            })
            .collect()
    }

    fn extend(&mut self, target: usize, items: Vec<Value>) -> Step<()> {
        match self.objs.get_mut(target) {
            Some(Obj::List(l)) => {
                l.extend(items);
                Ok(())
            }
            _ => Err("APPEND to something that is not a list".into()),
        }
    }
    fn set_items(&mut self, target: usize, items: Vec<Value>) -> Step<()> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        let Some(Obj::Dict(d)) = self.objs.get_mut(target) else {
            return Err("SETITEM on something that is not a dict".into());
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn reduce(&mut self, f: Value, args: Value) -> Step<Value> {
        let Value::Global(g) = f else {
            return Err("REDUCE of something that is not an allowed global".into());
        };
        let args = self
            .tuple(&args)
            .ok_or("REDUCE arguments are not a tuple")?
            .to_vec();
        match (g, args.as_slice()) {
            (Global::OrderedDict, []) => Ok(self.new_obj(Obj::Dict(Vec::new()))),
            (Global::RebuildTensorV2, [storage, offset, size, stride, ..]) if args.len() <= 7 => {
                let storage = match storage {
                    Value::Obj(i) if matches!(self.objs.get(*i), Some(Obj::Storage { .. })) => *i,
                    _ => {
                        return Err("_rebuild_tensor_v2: the first argument is not a storage".into())
                    }
                };
                let Value::Int(offset) = *offset else {
                    return Err("_rebuild_tensor_v2: the storage offset is not an integer".into());
                };
                let size = self.ints(size, "_rebuild_tensor_v2 size")?;
                let stride = self.ints(stride, "_rebuild_tensor_v2 stride")?;
                Ok(self.new_obj(Obj::Tensor(TensorRef {
                    storage,
                    offset,
                    size,
                    stride,
                })))
            }
            (Global::RebuildParameter | Global::RebuildParameterWithState, [t, ..]) => match t {
                Value::Obj(i) if matches!(self.objs.get(*i), Some(Obj::Tensor(_))) => Ok(t.clone()),
                _ => Err("_rebuild_parameter of something that is not a tensor".into()),
            },
            (Global::Size, [t]) => match self.tuple(t) {
                Some(_) => Ok(t.clone()),
                None => Err("torch.Size of something that is not a tuple".into()),
            },
            (Global::Encode, [Value::Str(s), Value::Str(enc)]) if &**enc == "latin1" => {
                // protocol 2 writes bytes as their latin-1 decoding
                let b: Option<Vec<u8>> =
                    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                let b = b.ok_or("_codecs.encode: a character above U+00FF")?;
                Ok(Value::Bytes(b.into()))
            }
            (Global::Device, [Value::Str(s), ..]) => Ok(Value::Str(s.clone())),
            (g, a) => Err(format!(
                "{g:?} called with {} unsupported arguments",
                a.len()
            )),
        }
    }

    fn persistent(&mut self, pid: Value) -> Step<Value> {
        let t = self
            .tuple(&pid)
            .ok_or("persistent id is not a tuple")?
            .to_vec();
        match t.as_slice() {
            [Value::Str(kind), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**kind == "storage" =>
            {
                let numel = u64::try_from(*numel).map_err(|_| "negative storage size")?;
                Ok(self.new_obj(Obj::Storage {
                    dtype: *dtype,
                    key: key.clone(),
                    numel,
                }))
            }
            _ => {
                Err("persistent id is not ('storage', <storage type>, key, location, size)".into())
            }
        }
    }

    fn run(&mut self) -> Step<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(format!("pickle protocol {p} is unknown"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(i64::from(v)))
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(i64::from(v)))
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    let (low, high) = b.split_at(n.min(8));
                    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
                    let fill = if neg { 0xFF } else { 0 };
                    // bytes past the eighth may only repeat the sign
                    if high.iter().any(|&x| x != fill)
                        || (!high.is_empty() && (low[7] & 0x80 != 0) != neg)
                    {
                        return Err(format!("integer of {n} bytes does not fit 64 bits"));
                    }
                    let mut a = [fill; 8];
                    a[..low.len()].copy_from_slice(low);
                    self.stack.push(Value::Int(i64::from_le_bytes(a)))
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)))
                }
                b'X' | 0x8c | b'U' | b'C' | b'B' => {
                    let n = match op {
                        b'X' | b'B' => self.u32()? as usize,
                        _ => usize::from(self.u8()?),
                    };
                    let b = self.take(n)?;
                    let v = if op == b'C' || op == b'B' {
                        Value::Bytes(b.into())
                    } else {
                        let s = std::str::from_utf8(b).map_err(|_| "string is not UTF-8")?;
                        Value::Str(s.into())
                    };
                    self.stack.push(v)
                }
                b']' => {
                    let v = self.new_obj(Obj::List(Vec::new()));
                    self.stack.push(v)
                }
                b'}' => {
                    let v = self.new_obj(Obj::Dict(Vec::new()));
                    self.stack.push(v)
                }
                0x8f => {
                    // EMPTY_SET: kept as a list
                    let v = self.new_obj(Obj::List(Vec::new()));
                    self.stack.push(v)
                }
                b')' => {
                    let v = self.new_obj(Obj::Tuple(Vec::new()));
                    self.stack.push(v)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Obj::Tuple(items));
                    self.stack.push(v)
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let v = self.new_obj(Obj::Tuple(items));
                    self.stack.push(v)
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top_obj()?;
                    self.extend(l, vec![v])?
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let l = self.top_obj()?;
                    self.extend(l, items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top_obj()?;
                    self.set_items(d, vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top_obj()?;
                    self.set_items(d, items)?
                }
                b'q' => {
                    let i = u32::from(self.u8()?);
                    self.put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| "memo too large")?;
                    self.put(i)?
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        u32::from(self.u8()?)
                    } else {
                        self.u32()?
                    };
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| format!("memo {i} is unset"))?;
                    self.stack.push(v)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = global(module, name).ok_or_else(|| {
                        format!(
                            "global `{module}.{name}` is not allowed (only what torch.load(weights_only=True) accepts: state dicts of tensors); the file may try to run code, so it is refused"
                        )
                    })?;
                    self.stack.push(Value::Global(g))
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(f, args)?;
                    self.stack.push(v)
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    match (&cls, self.tuple(&args)) {
                        (Value::Global(Global::OrderedDict), Some([])) => {
                            let v = self.new_obj(Obj::Dict(Vec::new()));
                            self.stack.push(v)
                        }
                        _ => return Err("NEWOBJ of a class other than OrderedDict".into()),
                    }
                }
                b'b' => {
                    // BUILD: state set on an OrderedDict (`_metadata`) or a tensor: ignored
                    let _state = self.pop()?;
                    let inst = self.top_obj()?;
                    if !matches!(self.objs.get(inst), Some(Obj::Dict(_) | Obj::Tensor(_))) {
                        return Err("BUILD on something other than a dict or a tensor".into());
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.stack.push(v)
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.stack.last().cloned().ok_or("DUP on an empty stack")?;
                    self.stack.push(v)
                }
                other => {
                    return Err(format!(
                        "opcode 0x{other:02x} at offset {} is not allowed in a weights-only pickle",
                        self.pos - 1
                    ))
                }
            }
        }
    }

    fn put(&mut self, i: u32) -> Step<()> {
        let v = self.stack.last().cloned().ok_or("PUT on an empty stack")?;
        self.memo.insert(i, v);
        Ok(())
    }
}

/// Parses `data` as a weights-only pickle, or says what it holds that is not allowed.
pub(crate) fn parse(data: &[u8]) -> std::result::Result<Pickle, String> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objs: Vec::new(),
    };
    let root = m.run()?;
    Ok(Pickle { objs: m.objs, root })
}
