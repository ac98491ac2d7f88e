//! Byte-level facts every reader and writer shares: the native magic number,
//! little-endian readers, dtype names and element sizes, a tensor's elements as
//! little-endian bytes. Knows nothing of any file layout.

use crate::{DType, Tensor};
use std::borrow::Cow;

/// The first 8 bytes of every native file (PNG-style: a high byte to catch 7-bit
/// transfers, CR-LF and LF to catch newline translation, ^Z to stop `type` on Windows).
pub const MAGIC: [u8; 8] = *b"\x89NNT\r\n\x1a\n";
/// [`MAGIC`] as the docs and error messages write it.
pub(crate) const MAGIC_TEXT: &str = "[89 4e 4e 54 0d 0a 1a 0a] (\\x89NNT\\r\\n\\x1a\\n)";

/// The little-endian u32 at `b[at..at + 4]` (the caller checked the length).
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The little-endian u64 at `b[at..at + 8]` (the caller checked the length).
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses a dtype name as written by [`DType::as_str`].
pub(crate) fn dtype_from_str(s: &str) -> Option<DType> {
    DType::ALL.into_iter().find(|d| d.as_str() == s)
}

/// Bytes needed for `shape` of `dtype`, or None on overflow.
pub(crate) fn byte_len(dtype: DType, shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
}

/// Element bytes of a tensor as little-endian bytes, borrowed from its storage when that
/// can lend them (host memory on a little-endian host, a file mapping: no copy), copied
/// otherwise (GPU storage, big-endian hosts).
pub(crate) fn le_bytes(t: &Tensor) -> crate::Result<Cow<'_, [u8]>> {
    match t.storage().as_le_bytes() {
        Some(b) => Ok(Cow::Borrowed(b)),
        None => Ok(Cow::Owned(t.to_host()?.to_le_bytes())),
    }
}
