//! PyTorch interop through safetensors: the same names (`0.weight`) and layouts
//! (Linear weight `[out, in]`, row-major, little-endian) as `torch.save_file(state_dict)`.

use super::bytes::{byte_len, le_bytes};
use super::files::{atomic, start_writeback, FileBytes};
use super::tensor_file::{Backing, Entry, FileFormat, TensorFile};
use crate::module::StateDict;
use crate::{DType, Error, Result, Tensor};
use safetensors::tensor::{Dtype, Metadata, TensorInfo, View};
use safetensors::SafeTensors;
use std::borrow::Cow;
use std::io::Write;
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
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F64 => Dtype::F64,
        DType::I32 => Dtype::I32,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

/// Our dtype for a safetensors dtype, or None for one we do not hold (I8, U16, F8...).
fn our_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        Dtype::I32 => DType::I32,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

const SUPPORTED: &str =
    "supported: F32, I64, F16, BF16, F64, I32, U8, BOOL (convert it in PyTorch with .float())";

fn views(sd: &StateDict) -> Result<Vec<(String, StView<'_>)>> {
    sd.iter()
        .map(|(k, t)| {
            Ok((
                k.to_string(),
                StView {
                    dtype: st_dtype(t.dtype()),
                    shape: t.shape(),
                    data: le_bytes(t)?,
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
    // the header as the crate writes it (JSON, padded with spaces to 8 bytes), but with
    // the tensors in state-dict order and their bytes written straight from storage
    let mut offset = 0;
    let infos: Vec<(String, TensorInfo)> = views
        .iter()
        .map(|(k, v)| {
            let info = TensorInfo {
                dtype: v.dtype,
                shape: v.shape.to_vec(),
                data_offsets: (offset, offset + v.data.len()),
            };
            offset += v.data.len();
            (k.clone(), info)
        })
        .collect();
    let what = path.display().to_string();
    let meta = Metadata::new(None, infos).map_err(|e| st_err(&what, e))?;
    let mut header = serde_json::to_vec(&meta).map_err(|e| st_err(&what, e))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    atomic::write(path, |file, _tmp| {
        let io_err = |source: std::io::Error| Error::Io {
            path: what.clone(),
            source,
        };
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, &*file);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io_err)?;
        w.write_all(&header).map_err(io_err)?;
        let mut at = 8 + header.len() as u64;
        for (_, v) in &views {
            w.write_all(&v.data).map_err(io_err)?;
            if v.data.len() >= 1 << 20 {
                start_writeback(file, at, v.data.len() as u64);
            }
            at += v.data.len() as u64;
        }
        w.flush().map_err(io_err)
    })
}

/// Encodes `sd` as safetensors bytes in memory.
pub fn safetensors_to_bytes(sd: &StateDict) -> Result<Vec<u8>> {
    let views = views(sd)?;
    safetensors::serialize(views.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| st_err("<memory>", e))
}

/// Decodes safetensors bytes; tensors come in file order. F32, I64, F16, BF16, F64, I32,
/// U8 and BOOL are supported; any other dtype is an error naming the tensor.
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
        let Some(dtype) = our_dtype(view.dtype()) else {
            return Err(Error::Format {
                path: what.to_string(),
                msg: format!(
                    "safetensors: tensor `{name}` has dtype {:?}; {SUPPORTED}",
                    view.dtype()
                ),
            });
        };
        // the crate checked that offsets, shape and dtype agree with the buffer
        let data = crate::HostData::from_le_bytes(dtype, view.data())?;
        entries.push((name, Tensor::from_host(data, view.shape())?));
    }
    Ok(StateDict::from_unique_entries(entries))
}

/// Reads a safetensors file (e.g. PyTorch's `save_file(net.state_dict(), path)`).
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<StateDict> {
    open(path.as_ref())?.into_state_dict(false)
}

/// Reads and validates a safetensors header without reading the data: offsets must tile
/// the data section exactly and agree with each dtype and shape.
pub(crate) fn scan<R: std::io::Read + std::io::Seek>(
    file: &mut R,
    file_len: u64,
    what: &str,
) -> Result<Vec<Entry>> {
    use std::io::SeekFrom;
    let bad = |msg: String| Error::Format {
        path: what.to_string(),
        msg: format!("safetensors: {msg}"),
    };
    let io_err = |source: std::io::Error| Error::Io {
        path: what.to_string(),
        source,
    };
    if file_len < 8 {
        return Err(bad(format!("{file_len} bytes is too short for a header")));
    }
    let mut n8 = [0u8; 8];
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    file.read_exact(&mut n8).map_err(io_err)?;
    let n = u64::from_le_bytes(n8);
    // the crate's own limit on header size
    if n > 100_000_000 || n > file_len - 8 {
        return Err(bad(format!(
            "header length {n} does not fit the {file_len}-byte file"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io_err)?;
    let meta: Metadata = serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let data_start = 8 + n;
    let data_len = file_len - data_start;
    let infos = meta.tensors();
    let mut entries = Vec::with_capacity(infos.len());
    let mut next = 0u64;
    for name in meta.offset_keys() {
        let Some(info) = infos.get(&name) else {
            return Err(bad(format!("no entry for `{name}`")));
        };
        let Some(dtype) = our_dtype(info.dtype) else {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}; {SUPPORTED}",
                info.dtype
            )));
        };
        let (s, e) = info.data_offsets;
        let need = byte_len(dtype, &info.shape);
        if s as u64 != next || e < s || need != Some(e - s) {
            return Err(bad(format!(
                "tensor `{name}`: offsets {s}..{e} do not fit its dtype and shape {:?}",
                info.shape
            )));
        }
        next = e as u64;
        let offset = data_start.checked_add(s as u64).ok_or_else(|| {
            bad(format!(
                "tensor `{name}`: offset {s} lies past the end of the file"
            ))
        })?;
        entries.push(Entry {
            name,
            dtype,
            shape: info.shape.clone(),
            offset,
            len: e - s,
            strides: None,
        });
    }
    if next != data_len {
        return Err(bad(format!(
            "tensors cover {next} bytes but the data section has {data_len}"
        )));
    }
    Ok(entries)
}

/// Opens a safetensors file (whatever its first bytes) for loading.
fn open(path: &Path) -> Result<TensorFile<'static>> {
    let fb = FileBytes::open(path)?;
    let what = path.display().to_string();
    let len = fb.bytes().len() as u64;
    let entries = scan(&mut std::io::Cursor::new(fb.bytes()), len, &what)?;
    Ok(TensorFile::new(
        Backing::File(fb),
        what,
        FileFormat::Safetensors,
        entries,
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests;
