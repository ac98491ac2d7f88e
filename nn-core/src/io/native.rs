//! The native file format: version 1 (a 32-byte header with the CRC-32 of a postcard
//! payload holding everything) is read here; version 2 (written since, tensors in an
//! aligned data section with per-chunk sums) is laid out in [`super::native2`], and
//! dispatched to from here. See the [`crate::io`] docs.

use super::atomic;
use super::format::Entry;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
#[cfg(test)]
use std::io::{BufWriter, Write};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The first 8 bytes of every native file (PNG-style: a high byte to catch 7-bit
/// transfers, CR-LF and LF to catch newline translation, ^Z to stop `type` on Windows).
pub const MAGIC: [u8; 8] = *b"\x89NNT\r\n\x1a\n";
/// [`MAGIC`] as the docs and error messages write it.
pub(crate) const MAGIC_TEXT: &str = "[89 4e 4e 54 0d 0a 1a 0a] (\\x89NNT\\r\\n\\x1a\\n)";
/// The format version this build writes (it reads versions 1 and 2).
pub const VERSION: u32 = 2;
/// Size of the fixed header of a version-1 file (version 2's is
/// [`crate::io::HEADER_LEN_V2`], 64 bytes).
pub const HEADER_LEN: usize = 32;

/// The format version of a file that starts with the native magic number.
pub(crate) fn version_of(head: &[u8]) -> Option<u32> {
    (head.len() >= 12 && head[..8] == MAGIC).then(|| le_u32(head, 8))
}

fn header(payload_len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    // 12..16: flags, 0 in version 1
    h[16..24].copy_from_slice(&payload_len.to_le_bytes());
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    // 28..32: reserved, 0
    h
}

pub(super) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(super) fn le_u64(b: &[u8], at: usize) -> u64 {
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

/// Encodes `value` as a complete native file in memory (the current version, 2).
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    super::native2::to_bytes(value)
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

/// A format error about the file `what`, from its message.
fn format_error(what: &str) -> impl Fn(String) -> Error + Copy + '_ {
    move |msg| Error::Format {
        path: what.to_string(),
        msg,
    }
}

/// Decodes a complete native file held in memory. `what` names it in errors;
/// `release` is called on data already read (to drop a mapping's pages).
pub(crate) fn decode<T: DeserializeOwned>(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<T> {
    let fmt_err = format_error(what);
    if version_of(file) == Some(2) {
        return decode_v2(file, what, release);
    }
    let body = payload(file).map_err(fmt_err)?;
    let _ = super::tensor_serde::take_last_error();
    let (value, rest) = match postcard::take_from_bytes::<T>(body) {
        Ok(v) => v,
        Err(e) => {
            let detail = super::tensor_serde::take_last_error().unwrap_or_else(|| e.to_string());
            let expected = format!("a {}", pretty_type(std::any::type_name::<T>()));
            // a valid file of another kind says what it holds
            return Err(match payload_kind(body, false) {
                Some(found) if found != expected => Error::FileKind {
                    path: what.to_string(),
                    expected,
                    found,
                },
                _ => fmt_err(format!("bad payload: {detail}")),
            });
        }
    };
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
    decode(bytes, "<memory>", &|_| {})
}

/// Names for the tensors of a checked version-2 skeleton, for errors: the keys of a
/// state dict, else `#0`, `#1`... of a list or tuple; none for other values.
fn skeleton_refs(skel: &[u8]) -> Vec<(String, u64, u64)> {
    let n = skel.len() as u64;
    if let Ok(es) = Scan::refs(skel, n).state_dict() {
        return es
            .into_iter()
            .map(|e| (e.name, e.offset, e.len as u64))
            .collect();
    }
    let mut out = Vec::new();
    let mut sc = Scan::refs(skel, n);
    if let Ok(count) = sc.varint() {
        for i in 0..count {
            match sc.tensor("") {
                Ok(t) => out.push((format!("#{i}"), t.offset, t.len as u64)),
                Err(_) => break,
            }
        }
        if sc.end().is_ok() && out.len() as u64 == count {
            return out;
        }
    }
    let mut sc = Scan::refs(skel, n);
    out.clear();
    while sc.remaining > 0 {
        match sc.tensor("") {
            Ok(t) => out.push((format!("#{}", out.len()), t.offset, t.len as u64)),
            Err(_) => return Vec::new(),
        }
    }
    out
}

/// [`decode`] of a version-2 file: head checked, every chunk verified (in parallel),
/// then the skeleton decoded with tensors copied from the data section.
fn decode_v2<T: DeserializeOwned>(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<T> {
    let fmt_err = format_error(what);
    let lay = super::native2::check_head(file).map_err(fmt_err)?;
    let skel = &file[lay.skeleton.clone()];
    let refs = skeleton_refs(skel);
    super::native2::verify_chunks(file, &lay, release, |s, e| {
        super::native2::name_owners(&refs, s, e)
    })
    .map_err(fmt_err)?;
    // a state dict's or list's references, judged where their names are known; used
    // only to explain a failed decode (the decoder checks every reference itself)
    let mut next = 0;
    let named = refs.iter().find_map(|(name, off, len)| {
        match super::native2::check_ref(*off, *len, lay.data.len() as u64, next) {
            Ok(end) => {
                next = end;
                None
            }
            Err(m) => Some(format!("tensor `{name}`: {m}")),
        }
    });
    let _ = super::tensor_serde::take_last_error();
    match super::native2::decode_skeleton::<T>(skel, &file[lay.data.clone()]) {
        Ok((value, 0)) => Ok(value),
        Ok((_, rest)) => Err(fmt_err(format!(
            "{rest} unexpected bytes after the tensor list"
        ))),
        Err(e) => {
            let detail = super::tensor_serde::take_last_error().unwrap_or_else(|| e.to_string());
            // a state dict's scanner names the tensor at fault
            let detail = match (named, Scan::refs(skel, skel.len() as u64).state_dict()) {
                (Some(m), _) => m,
                (None, Err(m)) if m.starts_with('`') => m,
                _ => detail,
            };
            let expected = format!("a {}", pretty_type(std::any::type_name::<T>()));
            Err(match payload_kind(skel, true) {
                Some(found) if found != expected => Error::FileKind {
                    path: what.to_string(),
                    expected,
                    found,
                },
                _ => fmt_err(format!("bad payload: {detail}")),
            })
        }
    }
}

/// The entries of a version-2 state-dict file held in memory (a mapping): head checked,
/// the tensor list parsed and checked against the data section (aligned, in order, no
/// overlap, inside), every chunk verified in parallel. Offsets are absolute.
pub(crate) fn scan_state_dict_v2(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<Vec<Entry>> {
    let fmt_err = format_error(what);
    let lay = super::native2::check_head(file).map_err(fmt_err)?;
    let skel = &file[lay.skeleton.clone()];
    let parsed = Scan::refs(skel, skel.len() as u64).state_dict();
    let refs = skeleton_refs(skel);
    super::native2::verify_chunks(file, &lay, release, |s, e| {
        super::native2::name_owners(&refs, s, e)
    })
    .map_err(fmt_err)?;
    let mut entries = match parsed {
        Ok(es) => es,
        Err(m) => {
            return Err(match payload_kind(skel, true) {
                Some(found) => Error::FileKind {
                    path: what.to_string(),
                    expected: "a StateDict".into(),
                    found,
                },
                None => fmt_err(format!("bad payload: {m}")),
            })
        }
    };
    let data_len = lay.data.len() as u64;
    let mut next = 0;
    for e in &mut entries {
        next = super::native2::check_ref(e.offset, e.len as u64, data_len, next)
            .map_err(|m| fmt_err(format!("tensor `{}`: {m}", e.name)))?;
        e.offset += lay.data.start as u64;
    }
    Ok(entries)
}

#[cfg(test)]
/// Forwards writes while computing their CRC-32 and keeping the first I/O error
/// (postcard reports write failures without their cause).
struct HashWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
    error: Option<std::io::Error>,
}

#[cfg(test)]
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

#[cfg(test)]
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
        Err(e) => {
            return Err(Error::Serialize {
                path: path.display().to_string(),
                msg: e.to_string(),
            })
        }
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

/// Saves `value` to `path` in the native format (version 2), atomically (see
/// [`super::atomic`]): tensors' bytes go from their storage to the file in chunk-sized
/// writes, with no copy of the whole file in memory.
pub(crate) fn save<T: Serialize + ?Sized>(value: &T, path: &Path) -> Result<()> {
    let what = path.display().to_string();
    let plan = super::native2::encode(value, &what)?;
    atomic::write(path, |file, _tmp| {
        let f: &File = file;
        plan.write_to(f, |off, len| start_writeback(f, off, len))
            .map_err(|source| Error::Io {
                path: what.clone(),
                source,
            })
    })
}

/// Writes `value` as a version-1 file (tests of the v1 reader).
#[cfg(test)]
pub(crate) fn save_v1<T: Serialize + ?Sized>(value: &T, path: &Path) -> Result<()> {
    atomic::write(path, |file, _tmp| write_to(value, file, path))
}

/// Loads a native file (a regular file only, mapped or read no further than its length).
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = super::format::FileBytes::open(path)?;
    decode(bytes.bytes(), &path.display().to_string(), &|c| {
        bytes.release(c)
    })
}

/// A type name without module paths: `Vec<Tensor>`, `StateDict`, `(Tensor, Tensor)`.
fn pretty_type(full: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word.rsplit("::").next().unwrap_or(word));
        word.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Reads a payload sequentially, hashing every byte and never going past its end.
struct Scan<R> {
    inner: R,
    crc: crc32fast::Hasher,
    pos: u64,
    remaining: u64,
    /// A version-2 skeleton: a tensor's data is `(offset, length)`, not the bytes.
    refs: bool,
}

/// The layout of one tensor: dtype, shape, and where its data lies.
struct TensorMeta {
    dtype: crate::DType,
    shape: Vec<usize>,
    offset: u64,
    len: usize,
}

impl<R: std::io::BufRead> Scan<R> {
    fn new(inner: R, pos: u64, remaining: u64) -> Self {
        Scan {
            inner,
            crc: crc32fast::Hasher::new(),
            pos,
            remaining,
            refs: false,
        }
    }

    /// A scanner of a version-2 skeleton.
    fn refs(inner: R, remaining: u64) -> Self {
        let mut s = Self::new(inner, 0, remaining);
        s.refs = true;
        s
    }

    fn eof() -> String {
        "unexpected end of payload (truncated or damaged file)".into()
    }

    fn byte(&mut self) -> std::result::Result<u8, String> {
        let mut b = 0;
        self.skip(1, |c| b = c.first().copied().unwrap_or(0))?;
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
            let Some(chunk) = buf.get(..k).filter(|c| !c.is_empty()) else {
                return Err(Self::eof());
            };
            sink(chunk);
            self.crc.update(chunk);
            self.inner.consume(k);
            self.pos += k as u64;
            self.remaining -= k as u64;
            n -= k;
        }
        Ok(())
    }

    /// Hashes whatever the parser left unread, so the checksum covers the whole payload
    /// even when parsing stopped early.
    fn drain(&mut self) -> std::result::Result<(), String> {
        while self.remaining > 0 {
            let k = usize::try_from(self.remaining.min(1 << 30)).unwrap_or(1 << 30);
            self.skip(k, |_| {})?;
        }
        Ok(())
    }

    /// One tensor as the serde impl writes it: dtype name, shape, data bytes (skipped).
    fn tensor(&mut self, name: &str) -> std::result::Result<TensorMeta, String> {
        let dt = self.string()?;
        let dtype = super::tensor_serde::dtype_from_str(&dt)
            .ok_or_else(|| format!("`{name}`: unknown dtype `{dt}`"))?;
        let rank = self.length()?;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = self.varint()?;
            shape.push(usize::try_from(d).map_err(|_| format!("`{name}`: dim {d} too large"))?);
        }
        if self.refs {
            let (offset, len) = (self.varint()?, self.varint()?);
            let need = super::tensor_serde::byte_len(dtype, &shape);
            if need.map(|n| n as u64) != Some(len) {
                return Err(format!(
                    "`{name}`: {len} data bytes for a {dtype} tensor of shape {shape:?}"
                ));
            }
            let len = usize::try_from(len).map_err(|_| format!("`{name}`: too large"))?;
            return Ok(TensorMeta {
                dtype,
                shape,
                offset,
                len,
            });
        }
        let len = self.length()?;
        let need = super::tensor_serde::byte_len(dtype, &shape);
        if need != Some(len) {
            return Err(format!(
                "`{name}`: {len} data bytes for a {dtype} tensor of shape {shape:?}"
            ));
        }
        let offset = self.pos;
        self.skip(len, |_| {})?;
        Ok(TensorMeta {
            dtype,
            shape,
            offset,
            len,
        })
    }

    /// A state dict: a count, then (name, tensor) pairs with distinct names.
    fn state_dict(&mut self) -> std::result::Result<Vec<Entry>, String> {
        let count = self.varint()?;
        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::new();
        for _ in 0..count {
            let name = self.string()?;
            let t = self.tensor(&name)?;
            if !seen.insert(name.clone()) {
                return Err(format!("duplicate key `{name}`"));
            }
            entries.push(Entry {
                name,
                dtype: t.dtype,
                shape: t.shape,
                offset: t.offset,
                len: t.len,
                strides: None,
            });
        }
        self.end()?;
        Ok(entries)
    }

    fn end(&self) -> std::result::Result<(), String> {
        if self.remaining != 0 {
            return Err(format!(
                "{} unexpected bytes after the payload",
                self.remaining
            ));
        }
        Ok(())
    }
}

/// What a checksum-verified payload holds, for "this file holds X, expected Y": one or
/// more tensors back to back (`a Tensor`, a tuple), a counted list of tensors, or a
/// state dict. None if it is none of these.
fn payload_kind(body: &[u8], refs: bool) -> Option<String> {
    let n = body.len() as u64;
    let scan = || {
        let mut s = Scan::new(body, 0, n);
        s.refs = refs;
        s
    };
    if scan().state_dict().is_ok() {
        return Some("a StateDict".into());
    }
    let mut sc = scan();
    if let Ok(count) = sc.varint() {
        if (0..count).all(|_| sc.tensor("").is_ok()) && sc.end().is_ok() {
            return Some(format!("a Vec<Tensor> ({count} tensors)"));
        }
    }
    let mut sc = scan();
    let mut count = 0;
    while sc.remaining > 0 {
        sc.tensor("").ok()?;
        count += 1;
    }
    match count {
        0 => None,
        1 => Some("a Tensor".into()),
        k => Some(format!("a tuple of {k} tensors")),
    }
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
                payload_kind(&body, false)
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
