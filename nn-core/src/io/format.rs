//! What the native and safetensors readers share: opening only regular files, the
//! scanned [`Entry`] of one tensor, and [`TensorFile`], a verified state-dict file (on
//! disk or in memory) whose tensors are read on demand.

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
fn scan_any<R: Read + std::io::Seek>(
    r: &mut R,
    at: &(impl super::zip::ReadAt + ?Sized),
    head: &[u8],
    len: u64,
    what: &str,
) -> Result<(FileFormat, Vec<Entry>, super::torch::Extras)> {
    if head.starts_with(&super::native::MAGIC) {
        let e = super::native::scan_state_dict(r, len, what)?;
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

/// Reads a whole regular file into memory: never more than the length it had when
/// opened (a file growing meanwhile is an error, not a longer read).
pub(crate) fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let (f, len) = open_regular(path)?;
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

/// Where a [`TensorFile`]'s bytes live.
enum Backing<'a> {
    File(File),
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
    pub(crate) fn open(path: &Path) -> Result<TensorFile<'static>> {
        let (mut file, len) = open_regular(path)?;
        let what = path.display().to_string();
        let mut head = Vec::with_capacity(16);
        (&mut file)
            .take(16)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(path, e))?;
        let at = file.try_clone().map_err(|e| Error::io(path, e))?;
        let (format, entries, extras) = scan_any(&mut file, &at, &head, len, &what)?;
        let mut f = Self::with_entries(Backing::File(file), what, entries);
        f.format = format;
        f.extras = extras;
        Ok(f)
    }

    /// Opens a safetensors file (whatever its first bytes).
    pub(crate) fn open_safetensors(path: &Path) -> Result<TensorFile<'static>> {
        let (mut file, len) = open_regular(path)?;
        let what = path.display().to_string();
        let entries = super::safetensors::scan(&mut file, len, &what)?;
        Ok(Self::with_entries(Backing::File(file), what, entries))
    }
}

impl<'a> TensorFile<'a> {
    /// The in-memory twin of [`TensorFile::open`]: the same scanners over a byte slice.
    pub(crate) fn from_bytes(bytes: &'a [u8]) -> Result<TensorFile<'a>> {
        let what = "<memory>".to_string();
        let len = bytes.len() as u64;
        let head = bytes.get(..16).unwrap_or(bytes);
        let (format, entries, extras) = scan_any(&mut Cursor::new(bytes), bytes, head, len, &what)?;
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
        match &self.backing {
            Backing::Memory(bytes) => {
                let src = usize::try_from(e.offset)
                    .ok()
                    .and_then(|s| bytes.get(s..s.checked_add(dst.len())?))
                    .ok_or_else(|| Error::Format {
                        path: self.path.clone(),
                        msg: format!("`{}` lies past the end of the data", e.name),
                    })?;
                dst.copy_from_slice(src);
                Ok(())
            }
            Backing::File(file) => {
                let io_err = |source: std::io::Error| Error::Io {
                    path: self.path.clone(),
                    source,
                };
                #[cfg(unix)]
                {
                    std::os::unix::fs::FileExt::read_exact_at(file, dst, e.offset).map_err(io_err)
                }
                #[cfg(not(unix))]
                {
                    use std::io::{Seek, SeekFrom};
                    let mut f = file;
                    f.seek(SeekFrom::Start(e.offset)).map_err(io_err)?;
                    f.read_exact(dst).map_err(io_err)
                }
            }
        }
    }

    /// Every tensor, in file order.
    pub(crate) fn into_state_dict(self) -> Result<StateDict> {
        use rayon::prelude::*;
        // fresh memory is paid for in page faults: two threads fault (and read) in parallel
        let out = self
            .entries
            .par_iter()
            .map(|e| Ok((e.name.clone(), self.read_tensor(e)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(StateDict::from_unique_entries(out))
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
}
