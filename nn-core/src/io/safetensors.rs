//! PyTorch interop through safetensors: the same names (`0.weight`) and layouts
//! (Linear weight `[out, in]`, row-major, little-endian) as `torch.save_file(state_dict)`.

use super::{atomic, native::read_file, tensor_serde};
use crate::module::StateDict;
use crate::{DType, Error, Result, Tensor};
use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;
use std::borrow::Cow;
use std::path::Path;

/// A tensor as the safetensors writer sees it: its bytes borrowed from host storage.
struct StView<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data: Cow<'a, [u8]>,
}

impl View for &StView<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::I64 => Dtype::I64,
    }
}

fn views(sd: &StateDict) -> Result<Vec<(String, StView<'_>)>> {
    sd.iter()
        .map(|(k, t)| {
            Ok((
                k.to_string(),
                StView {
                    dtype: st_dtype(t.dtype()),
                    shape: t.shape(),
                    data: tensor_serde::le_bytes(t)?,
                },
            ))
        })
        .collect()
}

fn st_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Format {
        path: what.to_string(),
        msg: format!("safetensors: {e}"),
    }
}

/// Writes `sd` as a safetensors file (atomically), loadable by
/// `safetensors.torch.load_file` and then `model.load_state_dict` in PyTorch.
pub fn save_safetensors(sd: &StateDict, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let views = views(sd)?;
    atomic::write(path, |_file, tmp| {
        safetensors::serialize_to_file(views.iter().map(|(k, v)| (k.as_str(), v)), None, tmp)
            .map_err(|e| st_err(&path.display().to_string(), e))
    })
}

/// Encodes `sd` as safetensors bytes in memory.
pub fn safetensors_to_bytes(sd: &StateDict) -> Result<Vec<u8>> {
    let views = views(sd)?;
    safetensors::serialize(views.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| st_err("<memory>", e))
}

/// Decodes safetensors bytes; tensors come in file order. `float32` and `int64` are
/// supported; any other dtype is an error naming the tensor.
pub fn safetensors_from_bytes(bytes: &[u8]) -> Result<StateDict> {
    decode(bytes, "<memory>")
}

pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<StateDict> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| st_err(what, e))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| st_err(what, e))?;
    let mut entries = Vec::with_capacity(st.len());
    // file order (by offset), not the crate's hash-map order
    for name in meta.offset_keys() {
        let view = st.tensor(&name).map_err(|e| st_err(what, e))?;
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::I64 => DType::I64,
            other => {
                return Err(Error::Format {
                    path: what.to_string(),
                    msg: format!(
                        "safetensors: tensor `{name}` has dtype {other:?}; supported: F32, I64 (convert it in PyTorch with .float() or .long())"
                    ),
                })
            }
        };
        // the crate checked that offsets, shape and dtype agree with the buffer
        let data = tensor_serde::storage_from_le_bytes(dtype, view.data())?;
        entries.push((
            name,
            Tensor::from_storage(data.into_storage(), view.shape())?,
        ));
    }
    Ok(StateDict::from_unique_entries(entries))
}

/// Reads a safetensors file (e.g. PyTorch's `save_file(net.state_dict(), path)`).
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    decode(&bytes, &path.display().to_string())
}
