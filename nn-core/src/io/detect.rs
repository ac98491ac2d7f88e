//! Which reader a file calls for, told by its first bytes whatever its name: the native
//! magic number, a zip archive (PyTorch), a legacy PyTorch pickle (an error saying how to
//! convert it), else safetensors (which has no magic number). Opens a [`TensorFile`] of
//! any format.

use super::bytes::{MAGIC, MAGIC_TEXT};
use super::files::FileBytes;
use super::tensor_file::{Backing, Entry, FileFormat, NonTensorValues, TensorFile};
use super::{native, safetensors, torch};
use crate::{Error, Result};
use std::io::Cursor;
use std::path::Path;

/// Scans `len` bytes whose first bytes are `head` with the reader the magic bytes call
/// for: native magic, a zip archive (PyTorch), a legacy PyTorch pickle (an error
/// saying how to convert it), else safetensors (which has no magic number).
fn scan_any(
    bytes: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<(FileFormat, Vec<Entry>, NonTensorValues)> {
    let len = bytes.len() as u64;
    let head = bytes.get(..16).unwrap_or(bytes);
    if head.starts_with(&MAGIC) {
        let e = native::scan_state_dict(bytes, what, release)?;
        return Ok((FileFormat::Native, e, Vec::new()));
    }
    if torch::zip::is_zip(head) {
        let (e, x) = torch::scan(bytes, len, what)?;
        return Ok((FileFormat::Torch, e, x));
    }
    if let Some(kind) = torch::foreign_kind(head).filter(|_| !safetensors_like(head, len)) {
        return Err(Error::Format {
            path: what.to_string(),
            msg: kind.to_string(),
        });
    }
    let e = safetensors::scan(&mut Cursor::new(bytes), len, what).map_err(|e| match e {
        Error::Format { .. } => Error::Format {
            path: what.to_string(),
            msg: neither(head, e),
        },
        other => other,
    })?;
    Ok((FileFormat::Safetensors, e, Vec::new()))
}

/// Whether `head` opens like a safetensors file of `len` bytes: a little-endian header
/// length that fits the file, then the header's `{`. Safetensors has no magic number, and
/// a header length whose low byte is 0x80 starts like a pickle (protocol opcode 0x80).
fn safetensors_like(head: &[u8], len: u64) -> bool {
    let (Some(n), Some(&b'{')) = (head.get(..8), head.get(8)) else {
        return false;
    };
    let mut a = [0u8; 8];
    a.copy_from_slice(n);
    u64::from_le_bytes(a) <= len.saturating_sub(8)
}

/// The message for a file that is in neither supported format: what each reader found.
fn neither(head: &[u8], st: Error) -> String {
    let head = head.get(..8).unwrap_or(head);
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let st = match st {
        Error::Format { msg, .. } => msg,
        other => other.to_string(),
    };
    format!(
        "neither an nn native file (bad magic number: starts with [{}], expected {}), a PyTorch zip archive, nor a valid safetensors file ({st})",
        hex.join(" "),
        MAGIC_TEXT
    )
}

/// Opens a state-dict file, native (scanned, checksum verified), safetensors (header
/// validated against the file size) or `.pt`, told apart by their first bytes. The file
/// is mapped; its tensors are copied out of the mapping on demand.
pub(crate) fn open(path: &Path) -> Result<TensorFile<'static>> {
    let fb = FileBytes::open(path)?;
    let what = path.display().to_string();
    let (format, entries, other) = scan_any(fb.bytes(), &what, &|c| fb.release(c))?;
    Ok(TensorFile::new(
        Backing::File(fb),
        what,
        format,
        entries,
        other,
    ))
}

/// The in-memory twin of [`open`]: the same scanners over a byte slice.
pub(crate) fn open_bytes(bytes: &[u8]) -> Result<TensorFile<'_>> {
    let what = "<memory>".to_string();
    let (format, entries, other) = scan_any(bytes, &what, &|_| {})?;
    Ok(TensorFile::new(
        Backing::Memory(bytes),
        what,
        format,
        entries,
        other,
    ))
}

#[cfg(test)]
mod tests;
