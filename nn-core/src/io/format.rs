//! What the native and safetensors readers share: opening only regular files and
//! mapping them ([`FileBytes`]), the scanned [`Entry`] of one tensor, and
//! [`TensorFile`], a verified state-dict file (mapped or in memory) whose tensors are
//! copied out on demand.

use crate::module::StateDict;
use crate::{DType, Error, Result, Tensor};
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

/// Where one tensor of a state-dict file lies, found without reading its data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute file offset of the first data byte.
    pub offset: u64,
    /// Data length in bytes (checked against dtype and shape).
    pub len: usize,
    /// Element strides of a non-contiguous view (a `.pt` file's transposes and
    /// slices), checked not to overlap and to stay inside the file; `None`: row-major.
    pub strides: Option<Vec<usize>>,
}

/// The formats a state-dict file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// nn's own format ([`crate::io::save`]).
    Native,
    /// safetensors.
    Safetensors,
    /// PyTorch's `torch.save` zip archive (`.pt`, `.pth`, `.bin`).
    Torch,
}

impl FileFormat {
    /// A short name (`nn`, `safetensors`, `torch`).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Native => "nn",
            FileFormat::Safetensors => "safetensors",
            FileFormat::Torch => "torch",
        }
    }

    /// The format a path's extension names: `.safetensors`, `.pt`/`.pth`/`.bin`, and
    /// the native format for anything else.
    pub fn from_extension(path: &Path) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => FileFormat::Safetensors,
            Some("pt" | "pth" | "bin") => FileFormat::Torch,
            _ => FileFormat::Native,
        }
    }
}

/// Scans `len` bytes whose first bytes are `head` with the reader the magic bytes call
/// for: native magic, a zip archive (PyTorch), a legacy PyTorch pickle (an error
/// saying how to convert it), else safetensors (which has no magic number).
fn scan_any(
    bytes: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<(FileFormat, Vec<Entry>, super::torch::Extras)> {
    let len = bytes.len() as u64;
    let head = bytes.get(..16).unwrap_or(bytes);
    let (r, at) = (&mut Cursor::new(bytes), bytes);
    if head.starts_with(&super::native::MAGIC) {
        let e = match super::native::version_of(head) {
            Some(2) => super::native::scan_state_dict_v2(bytes, what, release)?,
            _ => super::native::scan_state_dict(r, len, what)?,
        };
        return Ok((FileFormat::Native, e, Vec::new()));
    }
    if super::zip::is_zip(head) {
        let (e, x) = super::torch::scan(at, len, what)?;
        return Ok((FileFormat::Torch, e, x));
    }
    if let Some(kind) = super::torch::foreign_kind(head).filter(|_| !safetensors_like(head, len)) {
        return Err(Error::Format {
            path: what.to_string(),
            msg: kind.to_string(),
        });
    }
    let e = super::safetensors::scan(r, len, what).map_err(|e| match e {
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

/// What a path names when it is not a regular file.
fn kind_of(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file, with its length. A FIFO, a device
/// (`/dev/zero`), a socket or a directory is an [`Error::Io`] (`InvalidInput`): they
/// can block or never end. On Unix the file is opened non-blocking, so opening a FIFO
/// with no writer returns at once; the type is then checked on the open handle (no
/// window for the path to change in between).
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64)> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // reads of regular files ignore O_NONBLOCK
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{}: only regular files are loaded",
                    kind_of(meta.file_type())
                ),
            ),
        ));
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file opened with [`open_regular`] into memory: never more
/// than the length it had when opened (a file growing meanwhile is an error, not a
/// longer read).
fn read_all(path: &Path, f: File, len: u64) -> Result<Vec<u8>> {
    let n = usize::try_from(len).map_err(|_| Error::Format {
        path: path.display().to_string(),
        msg: format!("{len} bytes is too large for this platform"),
    })?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(n).map_err(|_| Error::Format {
        path: path.display().to_string(),
        msg: format!("{len} bytes do not fit in memory"),
    })?;
    // one byte more than expected tells a grown file from a complete one
    f.take(len.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    if buf.len() as u64 != len {
        return Err(Error::Format {
            path: path.display().to_string(),
            msg: format!(
                "the file changed size while being read ({len} bytes, then {})",
                buf.len()
            ),
        });
    }
    Ok(buf)
}

/// Bytes copied out of a mapping between two drops of its pages: large enough that a
/// copy runs at memcpy speed (non-temporal stores), small enough that the pages of the
/// file a load has touched add little to its peak RSS.
const PIECE: usize = 16 << 20;

/// A whole regular file as bytes: memory-mapped (read-only), or read into memory when
/// mapping fails (some file systems, empty files).
///
/// The mapping is of a file that must not shrink while it is loaded: a mapped page past
/// a new end of file reads as a fault (SIGBUS) that kills the process. Our writers
/// never truncate in place (they replace files by rename, which leaves a mapping of the
/// old file intact).
pub(crate) enum FileBytes {
    Map(std::sync::Arc<memmap2::Mmap>),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Opens a regular file (see [`open_regular`]) and maps it, or reads it.
    pub(crate) fn open(path: &Path) -> Result<FileBytes> {
        let (file, len) = open_regular(path)?;
        if let Ok(n) = usize::try_from(len) {
            if n > 0 {
                // SAFETY: the mapping is read-only and private to this value; the file is
                // a regular file, mapped for exactly the length it has now. Changes to the
                // file by others while it is mapped are the hazard memmap2 names: in-place
                // modification (documented as unsupported in `crate::io`) can change what
                // is read, and truncation faults; no Rust reference is created to memory
                // outside the mapping.
                let map = unsafe { memmap2::MmapOptions::new().len(n).map(&file) };
                if let Ok(map) = map {
                    return Ok(FileBytes::Map(std::sync::Arc::new(map)));
                }
            }
        }
        Ok(FileBytes::Owned(read_all(path, file, len)?))
    }

    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            FileBytes::Map(m) => m,
            FileBytes::Owned(v) => v,
        }
    }

    /// Drops the mapped pages wholly inside `part` (a slice of [`FileBytes::bytes`])
    /// from this process, so data already read does not count in its resident set; a
    /// later read maps them again from the page cache. No-op for read files.
    pub(crate) fn release(&self, part: &[u8]) {
        #[cfg(unix)]
        if let FileBytes::Map(m) = self {
            const PAGE: usize = 4096;
            let base = m.as_ptr() as usize;
            let (s, e) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
            if s < base || e > base + m.len() {
                return;
            }
            // whole pages only (4 KiB, or a multiple of the real page size: madvise
            // wants a page-aligned start, which mmap's base is)
            let s = s.next_multiple_of(PAGE);
            let e = if e == base + m.len() {
                e
            } else {
                e / PAGE * PAGE
            };
            if e > s {
                // SAFETY: `s..e` lies inside a read-only shared mapping of a regular file
                // that this value owns. MADV_DONTNEED on such a mapping only unmaps its
                // pages: the next read maps the same file contents again, so no slice
                // into the mapping sees different bytes. Failure (e.g. a 64 KiB page
                // size making `s` unaligned) is harmless and ignored.
                unsafe {
                    libc::madvise(s as *mut libc::c_void, e - s, libc::MADV_DONTNEED);
                }
            }
        }
        #[cfg(not(unix))]
        let _ = part;
    }

    /// Copies `src` (a slice of [`FileBytes::bytes`]) into `dst` piece by piece, in
    /// parallel, dropping each copied piece's pages.
    pub(crate) fn copy_out(&self, src: &[u8], dst: &mut [u8]) {
        use rayon::prelude::*;
        // two threads: the copy itself is memory-bound, but mapping the pages again
        // (page faults, costly in a VM) is not, and runs beside it
        dst.par_chunks_mut(PIECE)
            .zip(src.par_chunks(PIECE))
            .for_each(|(d, s)| {
                stream_copy(d, s);
                self.release(s);
            });
    }
}

/// Copies `src` into `dst` (of the same length) with non-temporal stores on x86-64:
/// the destination (a model's parameters) is not read back soon, and streaming stores
/// skip reading each destination line into the cache first. glibc's `memcpy` does this
/// only above its threshold (192 MiB on the 2-core EPYC we measure on), which no single
/// piece or parameter reaches: 16 MiB pieces copied from a mapping went from 77 ms to
/// 55 ms per 400 MB there.
pub(crate) fn stream_copy(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let head = dst.as_ptr().align_offset(16).min(n);
        dst[..head].copy_from_slice(&src[..head]);
        let body = (n - head) / 64 * 64;
        let (d, s) = (dst[head..].as_mut_ptr(), src[head..].as_ptr());
        let mut i = 0;
        while i < body {
            // SAFETY: SSE2 is part of the x86-64 baseline. `i + 64 <= body <= n - head`,
            // so the four 16-byte loads read inside `src[head..]` and the four stores write
            // inside `dst[head..]`; loads are unaligned (`loadu`), and stores are 16-byte
            // aligned because `d` is (`head` aligned it) and `i` is a multiple of 64. The
            // slices are distinct (`&mut` and `&`), so they do not overlap.
            unsafe {
                let a = _mm_loadu_si128(s.add(i).cast::<__m128i>());
                let b = _mm_loadu_si128(s.add(i + 16).cast::<__m128i>());
                let c = _mm_loadu_si128(s.add(i + 32).cast::<__m128i>());
                let e = _mm_loadu_si128(s.add(i + 48).cast::<__m128i>());
                _mm_stream_si128(d.add(i).cast::<__m128i>(), a);
                _mm_stream_si128(d.add(i + 16).cast::<__m128i>(), b);
                _mm_stream_si128(d.add(i + 32).cast::<__m128i>(), c);
                _mm_stream_si128(d.add(i + 48).cast::<__m128i>(), e);
            }
            i += 64;
        }
        // SAFETY: a store fence has no preconditions; it orders the streaming stores
        // before anything this thread does next (and rayon's join publishes them).
        unsafe { _mm_sfence() };
        let tail = head + body;
        dst[tail..].copy_from_slice(&src[tail..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Where a [`TensorFile`]'s bytes live.
enum Backing<'a> {
    File(FileBytes),
    Memory(&'a [u8]),
}

/// A state-dict file (native or safetensors) opened for loading: entries scanned and
/// verified, data read on demand, straight into its destination.
pub(crate) struct TensorFile<'a> {
    backing: Backing<'a>,
    path: String,
    entries: Vec<Entry>,
    index: std::collections::HashMap<String, usize>,
    format: FileFormat,
    extras: super::torch::Extras,
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
        super::native::MAGIC_TEXT
    )
}

impl TensorFile<'static> {
    /// Opens a state-dict file, native (scanned, checksum verified) or safetensors
    /// (header validated against the file size), told apart by the native magic number.
    /// The file is mapped; its tensors are copied out of the mapping on demand.
    pub(crate) fn open(path: &Path) -> Result<TensorFile<'static>> {
        let fb = FileBytes::open(path)?;
        let what = path.display().to_string();
        let (format, entries, extras) = scan_any(fb.bytes(), &what, &|c| fb.release(c))?;
        let mut f = Self::with_entries(Backing::File(fb), what, entries);
        f.format = format;
        f.extras = extras;
        Ok(f)
    }

    /// Opens a safetensors file (whatever its first bytes).
    pub(crate) fn open_safetensors(path: &Path) -> Result<TensorFile<'static>> {
        let fb = FileBytes::open(path)?;
        let what = path.display().to_string();
        let len = fb.bytes().len() as u64;
        let entries = super::safetensors::scan(&mut Cursor::new(fb.bytes()), len, &what)?;
        Ok(Self::with_entries(Backing::File(fb), what, entries))
    }
}

impl<'a> TensorFile<'a> {
    /// The in-memory twin of [`TensorFile::open`]: the same scanners over a byte slice.
    pub(crate) fn from_bytes(bytes: &'a [u8]) -> Result<TensorFile<'a>> {
        let what = "<memory>".to_string();
        let (format, entries, extras) = scan_any(bytes, &what, &|_| {})?;
        let mut f = Self::with_entries(Backing::Memory(bytes), what, entries);
        f.format = format;
        f.extras = extras;
        Ok(f)
    }

    fn with_entries(backing: Backing<'a>, path: String, entries: Vec<Entry>) -> TensorFile<'a> {
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        TensorFile {
            backing,
            path,
            entries,
            index,
            format: FileFormat::Safetensors,
            extras: Vec::new(),
        }
    }

    /// The file's format.
    pub(crate) fn format(&self) -> FileFormat {
        self.format
    }

    /// The tensors' entries, in file order.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Non-tensor leaves of a `.pt` file (`epoch`, hyper-parameters), as text.
    pub(crate) fn extras(&self) -> &[(String, String)] {
        &self.extras
    }

    fn entry(&self, key: &str) -> Result<&Entry> {
        self.index
            .get(key)
            .and_then(|&i| self.entries.get(i))
            .ok_or_else(|| Error::MissingKey {
                container: self.path.clone(),
                key: key.to_string(),
            })
    }

    fn read_at(&self, e: &Entry, dst: &mut [u8]) -> Result<()> {
        if dst.len() != e.len {
            return Err(Error::ShapeMismatch {
                op: "read tensor data",
                lhs: vec![e.len],
                rhs: vec![dst.len()],
            });
        }
        if let Some(strides) = &e.strides {
            // a view: read the span it covers (checked inside its storage), then gather
            let mut span = vec![0u8; super::torch::span(e)];
            self.read_span(e, &mut span)?;
            super::torch::gather(&span, dst, &e.shape, strides, e.dtype.size_in_bytes());
            return Ok(());
        }
        self.read_span(e, dst)
    }

    fn read_span(&self, e: &Entry, dst: &mut [u8]) -> Result<()> {
        let bytes = match &self.backing {
            Backing::Memory(bytes) => bytes,
            Backing::File(fb) => fb.bytes(),
        };
        let src = usize::try_from(e.offset)
            .ok()
            .and_then(|s| bytes.get(s..s.checked_add(dst.len())?))
            .ok_or_else(|| Error::Format {
                path: self.path.clone(),
                msg: format!("`{}` lies past the end of the data", e.name),
            })?;
        match &self.backing {
            Backing::Memory(_) => dst.copy_from_slice(src),
            Backing::File(fb) => fb.copy_out(src, dst),
        }
        Ok(())
    }

    /// Every tensor, in file order, each borrowing the file's mapping when `borrow` and it
    /// can (f32 and i64 tensors of a mapped file), copied into new memory otherwise.
    pub(crate) fn into_state_dict(self, borrow: bool) -> Result<StateDict> {
        use rayon::prelude::*;
        // fresh memory is paid for in page faults: two threads fault (and read) in parallel
        let out = self
            .entries
            .par_iter()
            .map(|e| {
                let lent = if borrow { self.borrow_tensor(e)? } else { None };
                let t = match lent {
                    Some(t) => t,
                    None => self.read_tensor(e)?,
                };
                Ok((e.name.clone(), t))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StateDict::from_unique_entries(out))
    }

    /// The tensor of `e` borrowing the file's mapping (no copy), or `None` when it cannot
    /// (see [`crate::cpu::mapped`]; a view or an unmapped file).
    fn borrow_tensor(&self, e: &Entry) -> Result<Option<Tensor>> {
        let Backing::File(FileBytes::Map(map)) = &self.backing else {
            return Ok(None);
        };
        let n = crate::shape::numel(&e.shape);
        if e.strides.is_some() || e.len != n.saturating_mul(e.dtype.size_in_bytes()) {
            return Ok(None);
        }
        let Ok(start) = usize::try_from(e.offset) else {
            return Ok(None);
        };
        match crate::cpu::mapped(map, start, n, e.dtype) {
            Some(st) => Ok(Some(Tensor::from_storage(st, &e.shape)?)),
            None => Ok(None),
        }
    }

    fn read_tensor(&self, e: &Entry) -> Result<Tensor> {
        use crate::HostData;
        let n = crate::shape::numel(&e.shape);
        let mut st = HostData::zeros(n, e.dtype)?;
        if cfg!(target_endian = "little") {
            self.read_at(e, st.bytes_mut())?;
            st.normalize_bools();
        } else {
            let mut bytes = vec![0u8; e.len];
            self.read_at(e, &mut bytes)?;
            st = HostData::from_le_bytes(e.dtype, &bytes)?;
        }
        Tensor::from_host(st, &e.shape)
    }
}

impl super::load::Source for TensorFile<'_> {
    fn keys(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }
    fn meta(&self, key: &str) -> Option<(DType, &[usize])> {
        let e = self.entries.get(*self.index.get(key)?)?;
        Some((e.dtype, &e.shape))
    }
    fn tensor(&self, key: &str) -> Result<Tensor> {
        self.read_tensor(self.entry(key)?)
    }
    fn fill(&self, key: &str, dst: &mut [u8]) -> Result<bool> {
        self.read_at(self.entry(key)?, dst)?;
        Ok(true)
    }
    fn borrowed(&self, key: &str) -> Result<Option<Tensor>> {
        self.borrow_tensor(self.entry(key)?)
    }
}
