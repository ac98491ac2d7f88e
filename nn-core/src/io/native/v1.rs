//! Native format version 1 (still read, no longer written): a 32-byte header with the
//! CRC-32 of a postcard payload holding everything, tensor bytes inline. See the
//! [`crate::io`] docs for the layout.

use super::kind::payload_kind;
use super::scan::{format_error, pretty_type, Scan};
use super::v2::VERSION;
use crate::io::bytes::{le_u32, le_u64, MAGIC};
use crate::io::skeleton::de;
use crate::io::tensor_file::Entry;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};

/// Size of the fixed header of a version-1 file (version 2's is
/// [`crate::io::HEADER_LEN_V2`], 64 bytes).
pub const HEADER_LEN: usize = 32;

pub(super) fn header(payload_len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    // 12..16: flags, 0 in version 1
    h[16..24].copy_from_slice(&payload_len.to_le_bytes());
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    // 28..32: reserved, 0
    h
}

/// Checks a header against the file's total length; returns the payload length and
/// the stored checksum.
fn check_header(h: &[u8], file_len: u64) -> std::result::Result<(u64, u32), String> {
    if file_len < HEADER_LEN as u64 || h.len() < HEADER_LEN {
        return Err(format!(
            "{file_len} bytes is shorter than the {HEADER_LEN}-byte header (truncated file?)"
        ));
    }
    if h[..8] != MAGIC {
        return Err("not an nn tensor file (bad magic number)".into());
    }
    let version = le_u32(h, 8);
    if version != 1 {
        return Err(format!(
            "format version {version} is not supported (this build reads versions 1 and {VERSION})"
        ));
    }
    let (flags, reserved) = (le_u32(h, 12), le_u32(h, 28));
    if flags != 0 || reserved != 0 {
        return Err(format!(
            "unknown header flags {flags:#x}/{reserved:#x} (written by a newer version?)"
        ));
    }
    let declared = le_u64(h, 16);
    let present = file_len - HEADER_LEN as u64;
    if declared != present {
        return Err(format!(
            "header declares a {declared}-byte payload but {present} bytes follow (truncated or damaged file)"
        ));
    }
    Ok((declared, le_u32(h, 24)))
}

fn check_crc(want: u32, got: u32) -> std::result::Result<(), String> {
    if want != got {
        return Err(format!(
            "checksum mismatch (stored {want:#010x}, computed {got:#010x}): the file is damaged"
        ));
    }
    Ok(())
}

/// Checks the header of a whole file and returns its payload (verified against the
/// checksum), or a message saying what is wrong.
pub(crate) fn payload(file: &[u8]) -> std::result::Result<&[u8], String> {
    let (_, want) = check_header(file, file.len() as u64)?;
    let body = &file[HEADER_LEN..];
    check_crc(want, crc32fast::hash(body))?;
    Ok(body)
}

/// Encodes `value` as a version-1 file, as earlier builds wrote (tests of the v1 reader).
#[doc(hidden)]
pub fn to_bytes_v1<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let body = postcard::to_stdvec(value).map_err(|e| Error::Serialize {
        path: "<memory>".into(),
        msg: e.to_string(),
    })?;
    Ok(frame(&body))
}

/// Wraps a raw postcard payload in a valid version-1 header (tests and the fuzz target
/// use it to reach the payload decoder past the checksum).
#[doc(hidden)]
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header(body.len() as u64, crc32fast::hash(body)));
    out.extend_from_slice(body);
    out
}

/// Decodes a complete version-1 file held in memory. `what` names it in errors.
pub(crate) fn decode<T: DeserializeOwned>(file: &[u8], what: &str) -> Result<T> {
    let fmt_err = format_error(what);
    let body = payload(file).map_err(fmt_err)?;
    let (value, rest) = match de::decode::<T>(body, None) {
        Ok(v) => v,
        Err(detail) => {
            let expected = format!("a {}", pretty_type(std::any::type_name::<T>()));
            // a valid file of another kind says what it holds
            return Err(match payload_kind(body, false).found() {
                Some(found) if found != expected => Error::FileKind {
                    path: what.to_string(),
                    expected,
                    found,
                },
                _ => fmt_err(format!("bad payload: {detail}")),
            });
        }
    };
    if rest != 0 {
        return Err(fmt_err(format!(
            "{rest} unexpected bytes after the payload"
        )));
    }
    Ok(value)
}

/// One sequential pass over a native state-dict file of `file_len` bytes: checks the
/// header, the layout of every entry and the checksum, and returns where each tensor's
/// data lies, reading the data only through a small reused buffer (so nothing is
/// allocated per tensor). The checksum is judged first: a damaged file is a checksum
/// mismatch whatever its payload looks like; a sound file of another kind (a tensor
/// file) says what it holds.
pub(crate) fn scan_state_dict<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
    what: &str,
) -> Result<Vec<Entry>> {
    let fmt_err = format_error(what);
    let io_err = |source: std::io::Error| Error::Io {
        path: what.to_string(),
        source,
    };
    let mut h = [0u8; HEADER_LEN];
    if file_len >= HEADER_LEN as u64 {
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        file.read_exact(&mut h).map_err(io_err)?;
    }
    let (payload_len, want) = check_header(&h, file_len).map_err(fmt_err)?;
    let (parsed, crc) = {
        let mut sc = Scan::new(
            std::io::BufReader::with_capacity(1 << 20, &mut *file),
            HEADER_LEN as u64,
            payload_len,
        );
        let parsed = sc.state_dict();
        sc.drain()
            .map_err(|m| fmt_err(format!("bad payload: {m}")))?;
        (parsed, sc.crc.finalize())
    };
    check_crc(want, crc).map_err(fmt_err)?;
    match parsed {
        Ok(entries) => Ok(entries),
        Err(m) => {
            // sound but not a state dict: look at the payload again to say what it is
            let kind = if payload_len <= 1 << 26 {
                let mut body = Vec::new();
                file.seek(SeekFrom::Start(HEADER_LEN as u64))
                    .map_err(io_err)?;
                file.take(payload_len)
                    .read_to_end(&mut body)
                    .map_err(io_err)?;
                payload_kind(&body, false).found_by_state_dict_reader()
            } else {
                None
            };
            Err(match kind {
                Some(found) => Error::FileKind {
                    path: what.to_string(),
                    expected: "a StateDict".into(),
                    found,
                },
                None => fmt_err(format!("bad payload: {m}")),
            })
        }
    }
}
