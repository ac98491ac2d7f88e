//! Crash-safe file replacement: write a temporary file in the target's directory, flush
//! and fsync it, rename it over the target, fsync the directory.
//!
//! A crash, a kill or a full disk at any moment leaves either the previous file or the
//! new one at the target path, never a mix: rename is atomic within one filesystem, and
//! the data is on disk before the rename makes it visible. A failed save removes its
//! temporary file; a killed one may leave a `.<name>.<pid>.<n>.tmp` file behind, which
//! is never read.

use crate::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn temp_path(path: &Path) -> Result<(PathBuf, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    Ok((dir, tmp))
}

/// Writes `path` through `fill`, which gets the open temporary file (and its path, for
/// writers that open files themselves); replaces `path` only once everything is on disk.
pub(crate) fn write(path: &Path, fill: impl FnOnce(&mut File, &Path) -> Result<()>) -> Result<()> {
    let (dir, tmp) = temp_path(path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    let result = fill(&mut file, &tmp)
        .and_then(|()| file.sync_all().map_err(|e| io_err(&tmp, e)))
        .and_then(|()| {
            drop(file);
            // Holding the old file open makes the rename cheap: the kernel frees the
            // replaced file's pages when the last handle closes, which then happens on
            // a background thread instead of inside `rename` (tens of ms for large files).
            // (Unix only: elsewhere an open handle can make the rename fail.)
            let old = if cfg!(unix) {
                File::open(path).ok()
            } else {
                None
            };
            let r = fs::rename(&tmp, path).map_err(|e| io_err(path, e));
            if let Some(old) = old {
                // if no thread can be spawned, the handle is simply closed right here
                let _ = std::thread::Builder::new()
                    .name("nn-io-close".into())
                    .spawn(move || drop(old));
            }
            r
        });
    if let Err(e) = result {
        // best effort: the original error is what the caller needs to see
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir).map_err(|e| io_err(&dir, e))
}

/// Makes the rename durable (the directory entry itself) on Unix; a no-op elsewhere.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_old_file_and_cleans_up() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("nn-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let target = dir.join("t.bin");
        write(&target, |f, _| {
            std::io::Write::write_all(f, b"old").map_err(|e| io_err(&target, e))
        })?;
        let r = write(&target, |f, _| {
            std::io::Write::write_all(f, b"half").map_err(|e| io_err(&target, e))?;
            Err(Error::Msg("disk full".into()))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&target).map_err(|e| io_err(&target, e))?, b"old");
        let left = fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.count();
        assert_eq!(left, 1, "temporary file removed");
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }
}
