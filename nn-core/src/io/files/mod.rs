//! Regular files: opening only regular files ([`open_regular`]), mapping or reading them
//! whole ([`FileBytes`]), copying out of a mapping ([`stream_copy`]), early writeback,
//! and the crash-safe writer ([`atomic`]). Knows nothing of any file format.

pub(crate) mod atomic;

use crate::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;

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
