//! The Python values a weights-only pickle holds, as the unpickler
//! builds them: an arena of objects referred to by index, and the walk that lists its
//! leaves under dotted keys.

use crate::DType;
use std::rc::Rc;

/// Deepest nesting of containers accepted (a state dict nests 2 or 3 deep).
pub(crate) const MAX_DEPTH: usize = 1000;

/// A Python value as this unpickler knows it.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// An object in the arena.
    Obj(usize),
    /// One of the allowed globals.
    Global(Global),
}

/// The globals a weights-only pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch.FloatStorage` and friends: the dtype of a storage.
    Storage(DType),
    /// `torch.float32` and friends.
    DType(DType),
    /// `torch.Size`: a tuple.
    Size,
    /// `_codecs.encode`: how protocol 2 pickles `bytes`.
    Encode,
    /// `torch.device`.
    Device,
}

/// An arena object.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A storage named by persistent id: its dtype, key (the zip entry `data/<key>`) and
    /// length in elements.
    Storage {
        dtype: DType,
        key: Rc<str>,
        numel: u64,
    },
    /// A tensor view of a storage.
    Tensor(TensorRef),
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, as read (unchecked).
#[derive(Debug, Clone)]
pub(crate) struct TensorRef {
    /// The arena index of the storage.
    pub storage: usize,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// A parsed pickle: the arena and the root value.
#[derive(Debug)]
pub(crate) struct Pickle {
    pub objs: Vec<Obj>,
    pub root: Value,
}

/// A leaf found while walking a pickle: a tensor or some other value, under its dotted
/// key path.
#[derive(Debug)]
pub(crate) enum Leaf<'p> {
    Tensor(&'p TensorRef),
    Other(String),
}

impl Pickle {
    /// Every leaf under the root, with dotted key paths (`model.0.weight`, list items
    /// by index), in pickle order. Errors past [`MAX_DEPTH`] nesting or when shared
    /// sub-objects would be visited more than the arena can justify.
    pub(crate) fn leaves(&self) -> std::result::Result<Vec<(String, Leaf<'_>)>, String> {
        let mut out = Vec::new();
        let mut budget = self.objs.len().saturating_mul(4).saturating_add(16);
        self.walk(&self.root, String::new(), 0, &mut budget, &mut out)?;
        Ok(out)
    }

    fn walk<'p>(
        &'p self,
        v: &'p Value,
        path: String,
        depth: usize,
        budget: &mut usize,
        out: &mut Vec<(String, Leaf<'p>)>,
    ) -> std::result::Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "containers nested deeper than {MAX_DEPTH} (or a cycle)"
            ));
        }
        *budget = budget
            .checked_sub(1)
            .ok_or("shared sub-objects are referenced too many times")?;
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        let obj = match v {
            Value::Obj(i) => self.objs.get(*i).ok_or("dangling object")?,
            other => {
                out.push((path, Leaf::Other(scalar_repr(other))));
                return Ok(());
            }
        };
        match obj {
            Obj::Dict(items) => {
                for (k, v) in items {
                    let k = match k {
                        Value::Str(s) => s.to_string(),
                        Value::Int(i) => i.to_string(),
                        _ => {
                            return Err("a dict key that is neither a string nor an integer".into())
                        }
                    };
                    self.walk(v, join(&k), depth + 1, budget, out)?;
                }
            }
            Obj::List(items) | Obj::Tuple(items) => {
                if items.iter().all(|x| !matches!(x, Value::Obj(_))) {
                    let parts: Vec<String> = items.iter().map(scalar_repr).collect();
                    out.push((path, Leaf::Other(format!("[{}]", parts.join(", ")))));
                    return Ok(());
                }
                for (i, v) in items.iter().enumerate() {
                    self.walk(v, join(&i.to_string()), depth + 1, budget, out)?;
                }
            }
            Obj::Tensor(t) => out.push((path, Leaf::Tensor(t))),
            Obj::Storage { .. } => out.push((path, Leaf::Other("<storage>".into()))),
        }
        Ok(())
    }
}

fn scalar_repr(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => format!("{s:?}"),
        Value::Bytes(b) => format!("<{} bytes>", b.len()),
        Value::Obj(_) => "<object>".into(),
        Value::Global(Global::DType(d)) => format!("torch.{d}"),
        Value::Global(g) => format!("{g:?}"),
    }
}
