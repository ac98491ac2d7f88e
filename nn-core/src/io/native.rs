//! The native file format: a fixed 32-byte header (magic, version, payload length,
//! CRC-32 of the payload) followed by a postcard payload. See the [`crate::io`] docs.

use super::atomic;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The first 8 bytes of every native file (PNG-style: a high byte to catch 7-bit
/// transfers, CR-LF and LF to catch newline translation, ^Z to stop `type` on Windows).
pub const MAGIC: [u8; 8] = *b"\x89NNT\r\n\x1a\n";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;

fn header(payload_len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    // 12..16: flags, 0 in version 1
    h[16..24].copy_from_slice(&payload_len.to_le_bytes());
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    // 28..32: reserved, 0
    h
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks the header of a whole file and returns its payload (verified against the
/// checksum), or a message saying what is wrong.
pub(crate) fn payload(file: &[u8]) -> std::result::Result<&[u8], String> {
    if file.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header (truncated file?)",
            file.len()
        ));
    }
    if file[..8] != MAGIC {
        return Err("not an nn tensor file (bad magic number)".into());
    }
    let version = le_u32(file, 8);
    if version != VERSION {
        return Err(format!(
            "format version {version} is not supported (this build reads version {VERSION})"
        ));
    }
    let (flags, reserved) = (le_u32(file, 12), le_u32(file, 28));
    if flags != 0 || reserved != 0 {
        return Err(format!(
            "unknown header flags {flags:#x}/{reserved:#x} (written by a newer version?)"
        ));
    }
    let declared = le_u64(file, 16);
    let body = &file[HEADER_LEN..];
    if declared != body.len() as u64 {
        return Err(format!(
            "header declares a {declared}-byte payload but {} bytes follow (truncated or damaged file)",
            body.len()
        ));
    }
    let (want, got) = (le_u32(file, 24), crc32fast::hash(body));
    if want != got {
        return Err(format!(
            "checksum mismatch (stored {want:#010x}, computed {got:#010x}): the file is damaged"
        ));
    }
    Ok(body)
}

/// Encodes `value` as a complete native file in memory.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let body = postcard::to_stdvec(value).map_err(|e| Error::Msg(format!("serialize: {e}")))?;
    Ok(frame(&body))
}

/// Wraps a raw postcard payload in a valid header (tests and the fuzz target use it to
/// reach the payload decoder past the checksum).
#[doc(hidden)]
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header(body.len() as u64, crc32fast::hash(body)));
    out.extend_from_slice(body);
    out
}

/// Decodes a complete native file held in memory. `what` names it in errors.
pub(crate) fn decode<T: DeserializeOwned>(file: &[u8], what: &str) -> Result<T> {
    let fmt_err = |msg: String| Error::Format {
        path: what.to_string(),
        msg,
    };
    let body = payload(file).map_err(fmt_err)?;
    let _ = super::tensor_serde::take_last_error();
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(|e| {
        let detail = super::tensor_serde::take_last_error().unwrap_or_else(|| e.to_string());
        fmt_err(format!("bad payload: {detail}"))
    })?;
    if !rest.is_empty() {
        return Err(fmt_err(format!(
            "{} unexpected bytes after the payload",
            rest.len()
        )));
    }
    Ok(value)
}

/// Decodes a native file held in memory (the in-memory twin of [`super::load`]).
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode(bytes, "<memory>")
}

/// Forwards writes while computing their CRC-32 and keeping the first I/O error
/// (postcard reports write failures without their cause).
struct HashWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
    error: Option<std::io::Error>,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.crc.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streams `value` into `file` (already positioned at 0): header placeholder, payload
/// hashed on its way out (tensor bytes go from storage to the file in one write each),
/// then the real header.
pub(crate) fn write_to<T: Serialize + ?Sized>(
    value: &T,
    file: &mut File,
    path: &Path,
) -> Result<()> {
    let io_err = |source: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source,
    };
    file.write_all(&[0u8; HEADER_LEN]).map_err(io_err)?;
    let hw = HashWriter {
        inner: &mut *file,
        crc: crc32fast::Hasher::new(),
        len: 0,
        error: None,
    };
    // small fields are batched; a tensor's bytes (larger than the buffer) pass straight through
    let bw = BufWriter::with_capacity(64 * 1024, hw);
    let bw = match postcard::to_io(value, bw) {
        Ok(bw) => bw,
        Err(e) => return Err(Error::Msg(format!("{}: serialize: {e}", path.display()))),
    };
    let mut hw = bw.into_inner().map_err(|e| io_err(e.into_error()))?;
    if let Some(e) = hw.error.take() {
        return Err(io_err(e));
    }
    let (len, crc) = (hw.len, hw.crc.finalize());
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    file.write_all(&header(len, crc)).map_err(io_err)?;
    Ok(())
}

/// Saves `value` to `path` in the native format, atomically (see [`super::atomic`]).
pub(crate) fn save<T: Serialize + ?Sized>(value: &T, path: &Path) -> Result<()> {
    atomic::write(path, |file, _tmp| write_to(value, file, path))
}

/// Reads a whole file into memory, refusing files too large to address.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io_err = |source: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    let len = usize::try_from(len).map_err(|_| Error::Format {
        path: path.display().to_string(),
        msg: format!("{len} bytes is too large for this platform"),
    })?;
    let mut buf = Vec::with_capacity(len);
    // read_to_end stops at the real end even if the file changed size meanwhile
    f.read_to_end(&mut buf).map_err(io_err)?;
    Ok(buf)
}

/// Loads a native file.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_file(path)?;
    decode(&bytes, &path.display().to_string())
}
