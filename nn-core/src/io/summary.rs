//! What a state-dict file holds, without reading its tensors ([`inspect`]), and the
//! transformations `nn convert` applies: sub-dict selection, prefix stripping, dtype.

use super::detect;
use super::tensor_file::{FileFormat, TensorFile};
use crate::module::StateDict;
use crate::{DType, Result};
use std::path::Path;

/// One tensor of a file: key, dtype, shape, size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSummary {
    /// The dotted key (`model.0.weight`).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Data size in bytes.
    pub bytes: usize,
}

/// The contents of a state-dict file, read from its header or pickle only.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    /// The format its first bytes name.
    pub format: FileFormat,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorSummary>,
    /// Non-tensor values of a `.pt` checkpoint (`epoch`, optimizer hyper-parameters),
    /// as `(dotted key, Python-like text)`.
    pub others: Vec<(String, String)>,
}

impl FileSummary {
    /// Total elements over all tensors.
    pub fn total_elements(&self) -> u128 {
        self.tensors
            .iter()
            .map(|t| t.shape.iter().map(|&d| d as u128).product::<u128>())
            .sum()
    }
    /// Total data bytes over all tensors.
    pub fn total_bytes(&self) -> u128 {
        self.tensors.iter().map(|t| t.bytes as u128).sum()
    }
}

fn summarize(f: &TensorFile<'_>) -> FileSummary {
    FileSummary {
        format: f.format(),
        tensors: f
            .entries()
            .iter()
            .map(|e| TensorSummary {
                name: e.name.clone(),
                dtype: e.dtype,
                shape: e.shape.clone(),
                bytes: e.len,
            })
            .collect(),
        others: f.other_values().to_vec(),
    }
}

/// Scans a native, safetensors or `torch.save` file (verifying it as loading does) and
/// lists what it holds, without reading tensor data.
pub fn inspect(path: impl AsRef<Path>) -> Result<FileSummary> {
    Ok(summarize(&detect::open(path.as_ref())?))
}

/// The in-memory twin of [`inspect`].
pub fn inspect_bytes(bytes: &[u8]) -> Result<FileSummary> {
    Ok(summarize(&detect::open_bytes(bytes)?))
}

/// The entries of `sd` under the dotted `prefix` (`"model"`: a training checkpoint's
/// model), with the prefix removed, then with `strip` (`"module."`) removed from the
/// keys that start with it; as [`crate::io::LoadOptions`]'s `prefix` and
/// `strip_prefix` select keys when loading into a model.
pub fn select(sd: &StateDict, prefix: &str, strip: &str) -> StateDict {
    let prefix = match prefix {
        "" => String::new(),
        p if p.ends_with('.') => p.to_string(),
        p => format!("{p}."),
    };
    let mut out = StateDict::new();
    for (k, t) in sd.iter() {
        if let Some(r) = k.strip_prefix(prefix.as_str()) {
            let r = if strip.is_empty() {
                r
            } else {
                r.strip_prefix(strip).unwrap_or(r)
            };
            if out.get(r).is_none() {
                out.insert(r, t.clone());
            }
        }
    }
    out
}

/// `sd` with every floating-point tensor converted to `dtype` (`F16` or `BF16` to save
/// half precision, `F32` to widen); integer and bool tensors are kept as they are.
pub fn to_float_dtype(sd: &StateDict, dtype: DType) -> Result<StateDict> {
    let mut out = StateDict::new();
    for (k, t) in sd.iter() {
        let t = if t.dtype().is_float() {
            t.to_dtype(dtype)?
        } else {
            t.clone()
        };
        out.insert(k, t);
    }
    Ok(out)
}
