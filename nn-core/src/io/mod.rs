//! Saving and loading: tensors, lists and maps of tensors, model state dicts, in the
//! native format or in safetensors (PyTorch interop).
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{io, Tensor};
//! use std::collections::BTreeMap;
//! # let dir = std::env::temp_dir().join(format!("nn-io-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
//! let x = Tensor::arange(0, 4);
//! io::save(&x, dir.join("x-file"))?;
//! let x2: Tensor = io::load(dir.join("x-file"))?;
//! assert_eq!(x2.to_vec::<i64>()?, vec![0, 1, 2, 3]);
//!
//! let y = Tensor::zeros(&[4]);
//! io::save(&(x.clone(), y.clone()), dir.join("x-files"))?;
//! let (x2, y2): (Tensor, Tensor) = io::load(dir.join("x-files"))?;
//!
//! let mydict = BTreeMap::from([("x".to_string(), x), ("y".to_string(), y)]);
//! io::save(&mydict, dir.join("mydict"))?;
//! let back: BTreeMap<String, Tensor> = io::load(dir.join("mydict"))?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), nn::Error>(())
//! ```
//!
//! Models: [`crate::ModuleExt::save`] writes the state dict (parameters and buffers,
//! not the architecture: that lives in code), [`crate::ModuleExt::load`] reads it back
//! into a model built from code, strictly; [`crate::ModuleExt::load_state_dict`] takes
//! [`LoadOptions`] (non-strict, key prefix) and returns a [`LoadReport`].
//!
//! # Native format (version 2)
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `89 4E 4E 54 0D 0A 1A 0A` (`\x89NNT\r\n\x1a\n`) |
//! | 8 | 4 | format version, u32 little-endian (2) |
//! | 12 | 4 | flags, 0 |
//! | 16 | 8 | `m`: length of the tensor list (skeleton), u64 LE |
//! | 24 | 8 | `D`: offset of the data section, a multiple of 64 |
//! | 32 | 8 | `L`: length of the data section (the file is exactly `D + L` long) |
//! | 40 | 4 | `c`: chunk size, a power of two from 4 KiB to 1 GiB (4 MiB when we write) |
//! | 44 | 4 | reserved, 0 |
//! | 48 | 8 | xxh3-64 of bytes `0..D`, this field read as zeros |
//! | 56 | 8 | reserved, 0 |
//! | 64 | m | skeleton: the value in [postcard](https://docs.rs/postcard) |
//! | 64 + m | 8 ceil(L/c) | xxh3-64 of each `c`-byte chunk of the data section, u64 LE |
//! | ... | | zeros up to `D` |
//! | D | L | data section: each tensor's elements, row-major, little-endian, at a 64-byte-aligned offset, zeros between |
//!
//! In the skeleton a tensor is a struct of three fields: `dtype` (the string `float32`,
//! `int64`, `float16`, `bfloat16`, `float64`, `int32`, `uint8` or `bool`), `shape` (a
//! sequence of varint sizes) and `data`: two varints, the tensor's offset in the data
//! section and its length in bytes. A state dict or a map is a postcard map of string to
//! tensor, a list a postcard sequence. Tensors lie in the data section in the order the
//! skeleton names them, aligned, without overlap. Every byte of the file is under a
//! checksum (the header and skeleton under the head's, the data under its chunks'), and
//! the chunks are verified in parallel.
//!
//! Readers reject a wrong magic number, an unknown version or flags, sizes that do not
//! add up to the file's, a bad checksum (naming the tensors of a damaged chunk), a data
//! length that disagrees with dtype and shape, a tensor outside the data section,
//! misaligned or overlapping the previous one, and trailing bytes, all before
//! allocating anything the file does not hold.
//!
//! Files are memory-mapped (and read into memory where mapping fails). The chunks are
//! hashed from the mapping and each tensor is copied from it straight into its
//! destination; pages already read are dropped from the process as it goes, so loading
//! a 400 MB model needs about 400 MB, not 800. A mapped file must not shrink while it is
//! loaded (a page past its new end faults and kills the process); our writers replace
//! files by rename, which leaves a mapping intact.
//!
//! # Native format version 1 (still read)
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic, as above |
//! | 8 | 4 | format version, u32 little-endian (1) |
//! | 12 | 4 | flags, 0 |
//! | 16 | 8 | payload length in bytes, u64 LE (the file is exactly 32 + this long) |
//! | 24 | 4 | CRC-32 (IEEE, as zlib) of the payload, u32 LE |
//! | 28 | 4 | reserved, 0 |
//! | 32 | n | payload: the value in postcard, a tensor's `data` a byte string (varint length, then the elements) |
//!
//! Loading a file into a model checks everything first (every checksum, then names,
//! shapes and dtypes against the model), then copies each tensor's bytes from the
//! mapping straight into the parameter's existing memory when no other handle shares
//! it (otherwise into a new tensor). Nothing after those checks can fail on a sound
//! file, so a strict load changes all the parameters or none. Files are assumed not to be modified
//! in place while being loaded (our own writers always replace them by rename).
//!
//! Writes are crash-safe: a temporary file in the same directory is written, fsynced
//! and renamed over the target, then the directory is fsynced; at any moment the
//! target holds either the old or the new file. A save that was killed leaves its
//! temporary file (`.<name>.nn-tmp.<pid>.<n>`); the next save to the same target removes
//! it.
//!
//! Loading reads only regular files (a FIFO or a device such as `/dev/zero` is an
//! error, returned at once) and never more bytes than the file had when opened. Every
//! loader has an in-memory twin ([`from_bytes`], [`state_dict_from_bytes`],
//! [`safetensors_from_bytes`]) running the same checks.
//!
//! # safetensors
//!
//! [`save_safetensors`] / [`load_safetensors`] use PyTorch's names and layouts (Linear
//! weight `[out, in]`), so `safetensors.torch.save_file(net.state_dict(), path)` from
//! the equivalent PyTorch model loads with [`crate::ModuleExt::load`] (which recognizes
//! both formats) and gives the same outputs. safetensors has no checksum: corruption
//! inside tensor data is not detected.
//!
//! # PyTorch `torch.save` files
//!
//! The zip archives PyTorch writes since 1.6 (`.pt`, `.pth`, `.bin`) are read by a
//! restricted unpickler that accepts what `torch.load(weights_only=True)` accepts and
//! refuses every other global by name; storages and views are checked against the file
//! (sizes, offsets, strides, no overlapping elements) before anything is allocated.
//! Nested dicts give dotted keys, so [`LoadOptions::prefix`] selects the model of a
//! whole training checkpoint and [`LoadOptions::strip_prefix`] removes `module.`.
//! [`save_torch`] (or a `.pt` name) writes an archive PyTorch loads with
//! `weights_only=True`. Legacy (pre-1.6) files, TorchScript archives and compressed
//! (repacked) archives are errors that say how to convert them. Files are told apart by
//! their first bytes ([`inspect`] reports the [`FileFormat`]); names only choose the
//! format written.

// leaves: bytes and files, then the types every format shares
mod bytes;
pub(crate) mod files;
mod tensor_file;
mod xxh3;
// the formats, and serde for tensors
mod native;
mod safetensors;
mod skeleton;
mod tensor_serde;
pub(crate) mod torch;
// on top: format detection, loading into a model, checkpoints, summaries
mod checkpoint;
mod detect;
mod load;
mod summary;

pub use self::safetensors::{
    load_safetensors, safetensors_from_bytes, safetensors_to_bytes, save_safetensors,
};
pub use crate::error::load_report::{LoadReport, Mismatch};
pub use bytes::MAGIC;
pub use checkpoint::{CheckpointProblem, MetaValue, TrainingCheckpoint};
pub use load::LoadOptions;
pub use native::kind::NativeKind;
pub use native::v1::{frame, to_bytes_v1, HEADER_LEN};
pub use native::v2::{frame as frame_v2, HEADER_LEN as HEADER_LEN_V2, VERSION};
pub use native::{from_bytes, to_bytes};
pub use summary::{inspect, inspect_bytes, select, to_float_dtype, FileSummary, TensorSummary};
pub use tensor_file::FileFormat;

use crate::module::{Module, StateDict};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Saves anything serializable (a [`crate::Tensor`], `Vec<Tensor>`, a tuple or array of tensors,
/// `BTreeMap`/`HashMap<String, Tensor>`, a [`StateDict`], your own serde types holding
/// tensors) in the native format, atomically.
pub fn save<T: Serialize + ?Sized>(value: &T, path: impl AsRef<Path>) -> Result<()> {
    native::save(value, path.as_ref())
}

/// Loads what [`save`] wrote, as the type asked for; a damaged, truncated or hostile
/// file is an [`crate::Error::Format`] (a damaged payload: "checksum mismatch"), a valid
/// file of another kind an [`crate::Error::FileKind`] ("this file holds a Tensor,
/// expected a StateDict"). Only regular files are read: a FIFO or a device is an
/// [`crate::Error::Io`].
pub fn load<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    native::load(path.as_ref())
}

/// What the native file at `path` holds (a state dict, a training checkpoint, a tensor,
/// a list or tuple of tensors, or a value of another type), told from its layout
/// without decoding any tensor; `Ok(None)` when it is not a native file (safetensors, a
/// `torch.save` archive ...: see [`inspect`]). Every checksum is verified first: a
/// damaged file is the [`crate::Error::Format`] loading it gives, so an answer means
/// the file is sound.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::io::{self, NativeKind};
/// use nn::Tensor;
/// # let dir = std::env::temp_dir().join(format!("nn-kind-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
/// let path = dir.join("pair.nn");
/// io::save(&(Tensor::zeros(&[2]), Tensor::ones(&[3])), &path)?;
/// assert_eq!(io::native_kind(&path)?, Some(NativeKind::Tuple(2)));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), nn::Error>(())
/// ```
pub fn native_kind(path: impl AsRef<Path>) -> Result<Option<NativeKind>> {
    native::kind_of_path(path.as_ref())
}

/// The in-memory twin of [`native_kind`].
pub fn native_kind_from_bytes(bytes: &[u8]) -> Result<Option<NativeKind>> {
    native::kind_of(bytes, "<memory>", &|_| {})
}

/// Saves a state dict in the format its extension names ([`FileFormat::from_extension`]):
/// safetensors for `.safetensors`, PyTorch's zip archive for `.pt`, `.pth` and `.bin`,
/// the native format otherwise.
pub fn save_state_dict(sd: &StateDict, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    match FileFormat::from_extension(path) {
        FileFormat::Safetensors => save_safetensors(sd, path),
        FileFormat::Torch => save_torch(sd, path),
        FileFormat::Native => save(sd, path),
    }
}

/// Writes `sd` as a `torch.save` zip archive (atomically) that PyTorch reads with
/// `torch.load(path, weights_only=True)`; tensors keep their dtypes (convert with
/// [`to_float_dtype`] first to write f16 or bf16).
pub fn save_torch(sd: &StateDict, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let name = torch::archive_name(path);
    let what = path.display().to_string();
    files::atomic::write(path, |file, _tmp| {
        let w = std::io::BufWriter::with_capacity(1 << 20, &*file);
        torch::write_state_dict(sd, w, &name)
            .map(|_| ())
            .map_err(|e| match e {
                Error::Io { source, .. } => Error::Io {
                    path: what.clone(),
                    source,
                },
                Error::Serialize { msg, .. } => Error::Serialize {
                    path: what.clone(),
                    msg,
                },
                other => other,
            })
    })
}

/// The bytes of a `torch.save` archive of `sd` (archive name `archive`).
pub fn torch_to_bytes(sd: &StateDict) -> Result<Vec<u8>> {
    torch::write_state_dict(sd, Vec::new(), "archive")
}

/// Reads a state dict from a native, safetensors or `torch.save` file, told apart by
/// their first bytes whatever the file's name. A nested `.pt` checkpoint
/// (`{"model": state_dict, ...}`) gives dotted keys (`model.0.weight`); its non-tensor
/// values are left out ([`inspect`] lists them).
pub fn load_state_dict_file(path: impl AsRef<Path>) -> Result<StateDict> {
    detect::open(path.as_ref())?.into_state_dict(false)
}

/// Like [`load_state_dict_file`], with the f32 and i64 tensors of a memory-mapped file
/// borrowing the mapping instead of being copied (the others are copied): opening costs
/// the file's verification, and a tensor is copied out of the mapping the first time it
/// is written. The file must not be truncated or rewritten in place meanwhile (see
/// [`LoadOptions::mmap`], which does the same for a load into a model).
pub fn map_state_dict_file(path: impl AsRef<Path>) -> Result<StateDict> {
    detect::open(path.as_ref())?.into_state_dict(true)
}

/// The in-memory twin of [`load_state_dict_file`]: a state dict from the bytes of a
/// native, safetensors or `torch.save` file, through the same scanners (layout and checksum verified
/// before any tensor is read).
pub fn state_dict_from_bytes(bytes: &[u8]) -> Result<StateDict> {
    detect::open_bytes(bytes)?.into_state_dict(false)
}

/// [`crate::ModuleExt::save`].
pub(crate) fn save_module(m: &dyn Module, path: &Path) -> Result<()> {
    save_state_dict(&crate::ModuleExt::state_dict(m)?, path)
}

/// [`crate::ModuleExt::load_with`].
pub(crate) fn load_module(m: &dyn Module, path: &Path, opts: &LoadOptions) -> Result<LoadReport> {
    // scanned and verified first, then read straight into the model's memory
    let file = detect::open(path)?;
    load::load_from(m, &file, opts)
}

/// [`crate::ModuleExt::load_state_dict`].
pub(crate) fn load_state_dict(
    m: &dyn Module,
    sd: &StateDict,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    load::load_into(m, sd, opts)
}

#[cfg(test)]
mod tests_support;
