//! The version-1 writer earlier builds used, kept for tests of the version-1 reader.

use super::v1::{header, HEADER_LEN};
use crate::io::files::{atomic, start_writeback};
use crate::{Error, Result};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

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

/// Streams `value` into `file` (already positioned at 0): header placeholder, payload
/// hashed on its way out (tensor bytes go from storage to the file in one write each),
/// then the real header.
fn write_to<T: Serialize + ?Sized>(value: &T, file: &mut File, path: &Path) -> Result<()> {
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

/// Writes `value` as a version-1 file (tests of the v1 reader).
pub(crate) fn save_v1<T: Serialize + ?Sized>(value: &T, path: &Path) -> Result<()> {
    atomic::write(path, |file, _tmp| write_to(value, file, path))
}
