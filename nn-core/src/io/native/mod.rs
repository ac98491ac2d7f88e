//! The native file format: version 2 ([`v2`]: tensors in an aligned data section with
//! per-chunk sums) is written; versions 1 ([`v1`]: one CRC-32 over a postcard payload)
//! and 2 are read, told apart by the header. See the [`crate::io`] docs.

pub(crate) mod kind;
mod scan;
#[cfg(test)]
pub(crate) mod test_writer;
pub(crate) mod v1;
pub(crate) mod v2;

use crate::io::bytes::{le_u32, MAGIC};
use crate::io::files::{atomic, start_writeback, FileBytes};
use crate::io::tensor_file::Entry;
use crate::{Error, Result};
use kind::NativeKind;
use scan::format_error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::path::Path;

/// The format version of a file that starts with the native magic number.
pub(crate) fn version_of(head: &[u8]) -> Option<u32> {
    (head.len() >= 12 && head[..8] == MAGIC).then(|| le_u32(head, 8))
}

/// Encodes `value` as a complete native file in memory (the current version, 2).
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    v2::to_bytes(value)
}

/// Decodes a complete native file held in memory, of either version. `what` names it in
/// errors; `release` is called on data already read (to drop a mapping's pages).
pub(crate) fn decode<T: DeserializeOwned>(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<T> {
    if version_of(file) == Some(2) {
        return v2::decode(file, what, release);
    }
    v1::decode(file, what)
}

/// Decodes a native file held in memory (the in-memory twin of [`super::load`]).
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode(bytes, "<memory>", &|_| {})
}

/// The entries of a native state-dict file held in memory (a mapping), of either
/// version, every checksum verified; `release` as for [`decode`].
pub(crate) fn scan_state_dict(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<Vec<Entry>> {
    match version_of(file.get(..16).unwrap_or(file)) {
        Some(2) => v2::scan_state_dict(file, what, release),
        _ => v1::scan_state_dict(&mut std::io::Cursor::new(file), file.len() as u64, what),
    }
}

/// What the native file `file` (held in memory) holds, every checksum verified (a
/// damaged file is the error loading it gives); `None` when it does not start with the
/// native magic number. `what` names it in errors, `release` as for [`decode`].
pub(crate) fn kind_of(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<Option<NativeKind>> {
    if file.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Ok(None);
    }
    let fmt_err = format_error(what);
    if version_of(file) == Some(2) {
        let lay = v2::check_file(file, release).map_err(fmt_err)?;
        return Ok(Some(kind::payload_kind(&file[lay.skeleton], true)));
    }
    let body = v1::payload(file).map_err(fmt_err)?;
    Ok(Some(kind::payload_kind(body, false)))
}

/// What the native file at `path` holds ([`kind_of`]); `None` when it is not a native
/// file.
pub(crate) fn kind_of_path(path: &Path) -> Result<Option<NativeKind>> {
    let bytes = FileBytes::open(path)?;
    kind_of(bytes.bytes(), &path.display().to_string(), &|c| {
        bytes.release(c)
    })
}

/// Saves `value` to `path` in the native format (version 2), atomically (see
/// [`atomic`]): tensors' bytes go from their storage to the file in chunk-sized
/// writes, with no copy of the whole file in memory.
pub(crate) fn save<T: Serialize + ?Sized>(value: &T, path: &Path) -> Result<()> {
    let what = path.display().to_string();
    let plan = v2::encode(value, &what)?;
    atomic::write(path, |file, _tmp| {
        let f: &File = file;
        plan.write_to(f, |off, len| start_writeback(f, off, len))
            .map_err(|source| Error::Io {
                path: what.clone(),
                source,
            })
    })
}

/// Loads a native file (a regular file only, mapped or read no further than its length).
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = FileBytes::open(path)?;
    decode(bytes.bytes(), &path.display().to_string(), &|c| {
        bytes.release(c)
    })
}

#[cfg(test)]
mod tests;
