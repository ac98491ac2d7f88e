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
    if version != VERSION {
        return Err(format!(
            "format version {version} is not supported (this build reads version {VERSION})"
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

impl Write for HashWriter<&File> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.crc.update(&buf[..n]);
                let start = self.len + HEADER_LEN as u64;
                self.len += n as u64;
                if n >= 1 << 20 {
                    start_writeback(self.inner, start, n as u64);
                }
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

/// Asks the kernel to start writing a just-written range to disk now, so the fsync that
/// ends a save waits for little (Linux; elsewhere the fsync does all the work).
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: plain syscall on a file descriptor this `File` owns and keeps open for
        // the call; no memory is passed. Failure is harmless (fsync still follows), so
        // the result is ignored.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
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
        inner: &*file,
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

/// Where one tensor of a state-dict file lies, found without reading its data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub name: String,
    pub dtype: crate::DType,
    pub shape: Vec<usize>,
    /// Absolute file offset of the first data byte.
    pub offset: u64,
    /// Data length in bytes (checked against dtype and shape).
    pub len: usize,
}

/// Reads a payload sequentially, hashing every byte and never going past its end.
struct Scan<R> {
    inner: R,
    crc: crc32fast::Hasher,
    pos: u64,
    remaining: u64,
}

impl<R: std::io::BufRead> Scan<R> {
    fn eof() -> String {
        "unexpected end of payload (truncated or damaged file)".into()
    }

    fn byte(&mut self) -> std::result::Result<u8, String> {
        let mut b = 0;
        self.skip(1, |c| b = c[0])?;
        Ok(b)
    }

    /// A LEB128 varint (postcard's encoding of lengths and usizes).
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err("varint overflows 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn length(&mut self) -> std::result::Result<usize, String> {
        let n = self.varint()?;
        if n > self.remaining {
            return Err(format!(
                "a length of {n} exceeds the {} bytes left in the file",
                self.remaining
            ));
        }
        usize::try_from(n).map_err(|_| format!("length {n} too large"))
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.length()?;
        let mut v = Vec::with_capacity(n);
        self.skip(n, |b| v.extend_from_slice(b))?;
        String::from_utf8(v).map_err(|_| "a name is not valid UTF-8".to_string())
    }

    /// Passes `n` bytes through `sink` (and the hash) chunk by chunk.
    fn skip(
        &mut self,
        mut n: usize,
        mut sink: impl FnMut(&[u8]),
    ) -> std::result::Result<(), String> {
        while n > 0 {
            if self.remaining == 0 {
                return Err(Self::eof());
            }
            let buf = self.inner.fill_buf().map_err(|e| e.to_string())?;
            let k = buf.len().min(n);
            if k == 0 {
                return Err(Self::eof());
            }
            let chunk = &buf[..k];
            sink(chunk);
            self.crc.update(chunk);
            self.inner.consume(k);
            self.pos += k as u64;
            self.remaining -= k as u64;
            n -= k;
        }
        Ok(())
    }
}

/// One sequential pass over a native state-dict file: checks the header, the layout of
/// every entry and the checksum, and returns where each tensor's data lies, reading the
/// data only through a small reused buffer (so nothing is allocated per tensor).
pub(crate) fn scan_state_dict(file: &mut File, path: &Path) -> Result<Vec<Entry>> {
    let what = path.display().to_string();
    let fmt_err = |msg: String| Error::Format {
        path: what.clone(),
        msg,
    };
    let io_err = |source: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut h = [0u8; HEADER_LEN];
    if file_len >= HEADER_LEN as u64 {
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        file.read_exact(&mut h).map_err(io_err)?;
    }
    let (payload_len, want) = check_header(&h, file_len).map_err(fmt_err)?;
    let mut sc = Scan {
        inner: std::io::BufReader::with_capacity(1 << 20, &mut *file),
        crc: crc32fast::Hasher::new(),
        pos: HEADER_LEN as u64,
        remaining: payload_len,
    };
    let mut parse = || -> std::result::Result<Vec<Entry>, String> {
        let count = sc.varint()?;
        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::new();
        for _ in 0..count {
            let name = sc.string()?;
            let dt = sc.string()?;
            let dtype = super::tensor_serde::dtype_from_str(&dt)
                .ok_or_else(|| format!("`{name}`: unknown dtype `{dt}`"))?;
            let rank = sc.length()?;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                let d = sc.varint()?;
                shape.push(usize::try_from(d).map_err(|_| format!("`{name}`: dim {d} too large"))?);
            }
            let len = sc.length()?;
            let need = super::tensor_serde::byte_len(dtype, &shape);
            if need != Some(len) {
                return Err(format!(
                    "`{name}`: {len} data bytes for a {dtype} tensor of shape {shape:?}"
                ));
            }
            let offset = sc.pos;
            sc.skip(len, |_| {})?;
            if !seen.insert(name.clone()) {
                return Err(format!("duplicate key `{name}`"));
            }
            entries.push(Entry {
                name,
                dtype,
                shape,
                offset,
                len,
            });
        }
        if sc.remaining != 0 {
            return Err(format!(
                "{} unexpected bytes after the payload",
                sc.remaining
            ));
        }
        Ok(entries)
    };
    let entries = parse().map_err(|m| fmt_err(format!("bad payload: {m}")))?;
    check_crc(want, sc.crc.finalize()).map_err(fmt_err)?;
    Ok(entries)
}

/// A state-dict file (native or safetensors) opened for loading: entries scanned and
/// verified, data read on demand, straight into its destination.
pub(crate) struct TensorFile {
    file: File,
    path: String,
    entries: Vec<Entry>,
    index: std::collections::HashMap<String, usize>,
}

impl TensorFile {
    /// Opens a state-dict file, native (scanned, checksum verified) or safetensors
    /// (header validated against the file size), told apart by the native magic number.
    pub(crate) fn open(path: &Path) -> Result<TensorFile> {
        let mut file = File::open(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut head = Vec::with_capacity(MAGIC.len());
        (&mut file)
            .take(MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
        let entries = if head == MAGIC {
            scan_state_dict(&mut file, path)?
        } else {
            super::safetensors::scan(&mut file, path)?
        };
        Ok(Self::with_entries(file, path, entries))
    }

    /// Opens a safetensors file (whatever its first bytes).
    pub(crate) fn open_safetensors(path: &Path) -> Result<TensorFile> {
        let mut file = File::open(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let entries = super::safetensors::scan(&mut file, path)?;
        Ok(Self::with_entries(file, path, entries))
    }

    fn with_entries(file: File, path: &Path, entries: Vec<Entry>) -> TensorFile {
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        TensorFile {
            file,
            path: path.display().to_string(),
            entries,
            index,
        }
    }

    fn entry(&self, key: &str) -> Result<&Entry> {
        self.index
            .get(key)
            .map(|&i| &self.entries[i])
            .ok_or_else(|| Error::Msg(format!("{}: no key `{key}`", self.path)))
    }

    fn read_at(&self, e: &Entry, dst: &mut [u8]) -> Result<()> {
        if dst.len() != e.len {
            return Err(Error::Msg(format!(
                "{}: `{}` has {} bytes, destination {}",
                self.path,
                e.name,
                e.len,
                dst.len()
            )));
        }
        let io_err = |source: std::io::Error| Error::Io {
            path: self.path.clone(),
            source,
        };
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, dst, e.offset).map_err(io_err)
        }
        #[cfg(not(unix))]
        {
            let mut f = &self.file;
            f.seek(SeekFrom::Start(e.offset)).map_err(io_err)?;
            f.read_exact(dst).map_err(io_err)
        }
    }

    /// Every tensor, in file order.
    pub(crate) fn into_state_dict(self) -> Result<crate::module::StateDict> {
        use rayon::prelude::*;
        // fresh memory is paid for in page faults: two threads fault (and read) in parallel
        let out = self
            .entries
            .par_iter()
            .map(|e| Ok((e.name.clone(), self.read_tensor(e)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::module::StateDict::from_unique_entries(out))
    }

    fn read_tensor(&self, e: &Entry) -> Result<crate::Tensor> {
        use crate::HostData;
        let n = crate::shape::numel(&e.shape);
        let mut st = HostData::zeros(n, e.dtype)?;
        if cfg!(target_endian = "little") {
            self.read_at(e, st.bytes_mut())?;
        } else {
            let mut bytes = vec![0u8; e.len];
            self.read_at(e, &mut bytes)?;
            st = HostData::from_le_bytes(e.dtype, &bytes)?;
        }
        crate::Tensor::from_host(st, &e.shape)
    }
}

impl super::load::Source for TensorFile {
    fn keys(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }
    fn meta(&self, key: &str) -> Option<(crate::DType, &[usize])> {
        let e = &self.entries[*self.index.get(key)?];
        Some((e.dtype, &e.shape))
    }
    fn tensor(&self, key: &str) -> Result<crate::Tensor> {
        self.read_tensor(self.entry(key)?)
    }
    fn fill(&self, key: &str, dst: &mut [u8]) -> Result<bool> {
        self.read_at(self.entry(key)?, dst)?;
        Ok(true)
    }
}
