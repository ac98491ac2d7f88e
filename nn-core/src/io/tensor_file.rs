//! The types every reader shares: the scanned [`Entry`] of one tensor, the
//! [`FileFormat`]s, and [`TensorFile`], a verified state-dict file (mapped or in memory)
//! whose tensors are copied out on demand (strided views gathered).

use super::files::FileBytes;
use crate::module::StateDict;
use crate::{DType, Error, Result, Tensor};
use std::path::Path;

/// Where one tensor of a state-dict file lies, found without reading its data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute file offset of the first data byte.
    pub offset: u64,
    /// Data length in bytes (checked against dtype and shape).
    pub len: usize,
    /// Element strides of a non-contiguous view (a `.pt` file's transposes and
    /// slices), checked not to overlap and to stay inside the file; `None`: row-major.
    pub strides: Option<Vec<usize>>,
}

/// The formats a state-dict file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// nn's own format ([`crate::io::save`]).
    Native,
    /// safetensors.
    Safetensors,
    /// PyTorch's `torch.save` zip archive (`.pt`, `.pth`, `.bin`).
    Torch,
}

impl FileFormat {
    /// A short name (`nn`, `safetensors`, `torch`).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Native => "nn",
            FileFormat::Safetensors => "safetensors",
            FileFormat::Torch => "torch",
        }
    }

    /// The format a path's extension names: `.safetensors`, `.pt`/`.pth`/`.bin`, and
    /// the native format for anything else.
    pub fn from_extension(path: &Path) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => FileFormat::Safetensors,
            Some("pt" | "pth" | "bin") => FileFormat::Torch,
            _ => FileFormat::Native,
        }
    }
}

/// What a file holds besides tensors (only `.pt` archives have any): non-tensor leaves (`epoch`, optimizer
/// hyper-parameters) as `(dotted key, Python-like text)`.
pub(crate) type NonTensorValues = Vec<(String, String)>;

/// Where a [`TensorFile`]'s bytes live.
pub(crate) enum Backing<'a> {
    File(FileBytes),
    Memory(&'a [u8]),
}

/// A state-dict file (native, safetensors or `.pt`) opened for loading: entries scanned and
/// verified, data read on demand, straight into its destination.
pub(crate) struct TensorFile<'a> {
    backing: Backing<'a>,
    path: String,
    entries: Vec<Entry>,
    index: std::collections::HashMap<String, usize>,
    format: FileFormat,
    other_values: NonTensorValues,
}

impl<'a> TensorFile<'a> {
    /// A file of `format` whose `entries` were scanned from `backing` (`path` names it
    /// in errors).
    pub(crate) fn new(
        backing: Backing<'a>,
        path: String,
        format: FileFormat,
        entries: Vec<Entry>,
        other_values: NonTensorValues,
    ) -> TensorFile<'a> {
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        TensorFile {
            backing,
            path,
            entries,
            index,
            format,
            other_values,
        }
    }

    /// The file's format.
    pub(crate) fn format(&self) -> FileFormat {
        self.format
    }

    /// The tensors' entries, in file order.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Non-tensor leaves of a `.pt` file (`epoch`, hyper-parameters), as text.
    pub(crate) fn other_values(&self) -> &[(String, String)] {
        &self.other_values
    }

    /// The entry named `key`, if any.
    pub(crate) fn find(&self, key: &str) -> Option<&Entry> {
        self.entries.get(*self.index.get(key)?)
    }

    /// The entry named `key`, or [`Error::MissingKey`].
    pub(crate) fn entry(&self, key: &str) -> Result<&Entry> {
        self.find(key).ok_or_else(|| Error::MissingKey {
            container: self.path.clone(),
            key: key.to_string(),
        })
    }

    pub(crate) fn read_at(&self, e: &Entry, dst: &mut [u8]) -> Result<()> {
        if dst.len() != e.len {
            return Err(Error::ShapeMismatch {
                op: "read tensor data",
                lhs: vec![e.len],
                rhs: vec![dst.len()],
            });
        }
        if let Some(strides) = &e.strides {
            // a view: read the span it covers (checked inside its storage), then gather
            let mut span = vec![0u8; span(e)];
            self.read_span(e, &mut span)?;
            gather(&span, dst, &e.shape, strides, e.dtype.size_in_bytes());
            return Ok(());
        }
        self.read_span(e, dst)
    }

    fn read_span(&self, e: &Entry, dst: &mut [u8]) -> Result<()> {
        let bytes = match &self.backing {
            Backing::Memory(bytes) => bytes,
            Backing::File(fb) => fb.bytes(),
        };
        let src = usize::try_from(e.offset)
            .ok()
            .and_then(|s| bytes.get(s..s.checked_add(dst.len())?))
            .ok_or_else(|| Error::Format {
                path: self.path.clone(),
                msg: format!("`{}` lies past the end of the data", e.name),
            })?;
        match &self.backing {
            Backing::Memory(_) => dst.copy_from_slice(src),
            Backing::File(fb) => fb.copy_out(src, dst),
        }
        Ok(())
    }

    /// Every tensor, in file order, each borrowing the file's mapping when `borrow` and it
    /// can (f32 and i64 tensors of a mapped file), copied into new memory otherwise.
    pub(crate) fn into_state_dict(self, borrow: bool) -> Result<StateDict> {
        use rayon::prelude::*;
        // fresh memory is paid for in page faults: two threads fault (and read) in parallel
        let out = self
            .entries
            .par_iter()
            .map(|e| {
                let lent = if borrow { self.borrow_tensor(e)? } else { None };
                let t = match lent {
                    Some(t) => t,
                    None => self.read_tensor(e)?,
                };
                Ok((e.name.clone(), t))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StateDict::from_unique_entries(out))
    }

    /// The tensor of `e` borrowing the file's mapping (no copy), or `None` when it cannot
    /// (see [`crate::cpu::mapped`]; a view or an unmapped file).
    pub(crate) fn borrow_tensor(&self, e: &Entry) -> Result<Option<Tensor>> {
        let Backing::File(FileBytes::Map(map)) = &self.backing else {
            return Ok(None);
        };
        let n = crate::shape::numel(&e.shape);
        if e.strides.is_some() || e.len != n.saturating_mul(e.dtype.size_in_bytes()) {
            return Ok(None);
        }
        let Ok(start) = usize::try_from(e.offset) else {
            return Ok(None);
        };
        match crate::cpu::mapped(map, start, n, e.dtype) {
            Some(st) => Ok(Some(Tensor::from_storage(st, &e.shape)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn read_tensor(&self, e: &Entry) -> Result<Tensor> {
        use crate::HostData;
        let n = crate::shape::numel(&e.shape);
        let mut st = HostData::zeros(n, e.dtype)?;
        if cfg!(target_endian = "little") {
            self.read_at(e, st.bytes_mut())?;
            st.normalize_bools();
        } else {
            let mut bytes = vec![0u8; e.len];
            self.read_at(e, &mut bytes)?;
            st = HostData::from_le_bytes(e.dtype, &bytes)?;
        }
        Tensor::from_host(st, &e.shape)
    }
}

/// Copies a strided view out of `src` (which starts at the view's first element) into
/// the contiguous `dst`, element by element of `el` bytes.
pub(crate) fn gather(src: &[u8], dst: &mut [u8], shape: &[usize], strides: &[usize], el: usize) {
    let n = shape.len();
    if n == 0 || dst.is_empty() {
        dst.copy_from_slice(&src[..dst.len()]);
        return;
    }
    let mut idx = vec![0usize; n];
    let mut at = 0usize;
    for chunk in dst.chunks_exact_mut(el) {
        chunk.copy_from_slice(&src[at * el..at * el + el]);
        // advance the multi-index, innermost first
        let mut k = n;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            at += strides[k];
            if idx[k] < shape[k] {
                break;
            }
            at -= strides[k] * shape[k];
            idx[k] = 0;
        }
    }
}

/// Bytes a strided entry spans in its storage, from its first element.
pub(crate) fn span(e: &Entry) -> usize {
    match &e.strides {
        None => e.len,
        Some(st) => {
            let el = e.dtype.size_in_bytes();
            let last: usize = e.shape.iter().zip(st).map(|(&d, &s)| (d - 1) * s).sum();
            (last + 1) * el
        }
    }
}

#[cfg(test)]
mod tests;
