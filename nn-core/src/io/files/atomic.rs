//! Crash-safe file replacement: write a temporary file in the target's directory, flush
//! and fsync it, rename it over the target, fsync the directory.
//!
//! A crash, a kill or a full disk at any moment leaves either the previous file or the
//! new one at the target path, never a mix: rename is atomic within one filesystem, and
//! the data is on disk before the rename makes it visible. A failed save removes its
//! temporary file. A killed one leaves `.<name>.nn-tmp.<pid>.<n>` behind, which is never
//! read; the next save to the same target removes such files when they are stale: their
//! process is gone, or it is this process and no save of it is writing them.

use crate::{Error, Result};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::io(path, source)
}

/// Marks the temporary files of saves in flight in this process.
const TMP_TAG: &str = ".nn-tmp.";

/// Temporary files this process is writing right now (never removed as stale).
static LIVE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<PathBuf>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the temp file from the live set when the save ends, however it ends.
struct LiveGuard(PathBuf);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Some(set) = live().as_mut() {
            set.remove(&self.0);
        }
    }
}

fn temp_path(path: &Path) -> Result<(PathBuf, PathBuf, String)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let prefix = format!(".{}{TMP_TAG}", name.to_string_lossy());
    let tmp = dir.join(format!("{prefix}{}.{n}", std::process::id()));
    Ok((dir, tmp, prefix))
}

/// Whether process `pid` is alive (Unix: `kill(pid, 0)`; elsewhere only this process
/// is known, every other one counts as alive).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(p) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if p <= 0 {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists and may be signalled;
        // nothing is sent and no memory is passed.
        let r = unsafe { libc::kill(p, 0) };
        // EPERM: it exists but belongs to someone else
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Removes the temporary files a killed save to the same target left in `dir`: those
/// named `<prefix><pid>.<n>` whose process is gone, or which are this process's but not
/// being written by any of its saves. Best effort: a file that cannot be removed stays.
fn remove_stale(dir: &Path, prefix: &str) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('.') else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), n.parse::<u64>().is_ok()) else {
            continue;
        };
        let path = entry.path();
        let stale = if pid == me {
            !live().as_ref().is_some_and(|s| s.contains(&path))
        } else {
            !process_alive(pid)
        };
        if stale {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Writes `path` through `fill`, which gets the open temporary file (and its path, for
/// writers that open files themselves); replaces `path` only once everything is on disk.
pub(crate) fn write(path: &Path, fill: impl FnOnce(&mut File, &Path) -> Result<()>) -> Result<()> {
    let (dir, tmp, prefix) = temp_path(path)?;
    live().get_or_insert_with(HashSet::new).insert(tmp.clone());
    let _live = LiveGuard(tmp.clone());
    remove_stale(&dir, &prefix);
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
            Err(Error::io(
                &target,
                std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full"),
            ))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&target).map_err(|e| io_err(&target, e))?, b"old");
        let left = fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.count();
        assert_eq!(left, 1, "temporary file removed");
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn the_next_save_removes_stale_temp_files_but_not_live_ones() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("nn-atomic-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let target = dir.join("m.bin");
        let put = |p: &Path| fs::write(p, b"junk").map_err(|e| io_err(p, e));
        // what killed saves leave: one of this process (no save is writing it), one of a
        // process that has exited
        let me = std::process::id();
        let mine = dir.join(format!(".m.bin{TMP_TAG}{me}.999999"));
        put(&mine)?;
        let mut child = std::process::Command::new("true")
            .spawn()
            .map_err(|e| io_err(Path::new("true"), e))?;
        let dead = child.id();
        child.wait().map_err(|e| io_err(Path::new("true"), e))?;
        let gone = dir.join(format!(".m.bin{TMP_TAG}{dead}.0"));
        put(&gone)?;
        // not ours: other targets, other names
        let other = dir.join(format!(".n.bin{TMP_TAG}{me}.999999"));
        put(&other)?;
        let unrelated = dir.join(".m.bin.nn-tmp.notes");
        put(&unrelated)?;

        // a save in flight on another thread holds its temp file open while the main
        // thread saves to the same target
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t2 = target.clone();
        let slow = std::thread::spawn(move || {
            write(&t2, |f, tmp| {
                let _ = started_tx.send(tmp.to_path_buf());
                let _ = go_rx.recv();
                std::io::Write::write_all(f, b"slow").map_err(|e| io_err(tmp, e))
            })
        });
        let live_tmp = started_rx
            .recv()
            .map_err(|_| io_err(&target, std::io::ErrorKind::BrokenPipe.into()))?;
        write(&target, |f, _| {
            std::io::Write::write_all(f, b"new").map_err(|e| io_err(&target, e))
        })?;
        assert!(!mine.exists(), "stale temp file of this process removed");
        assert!(!gone.exists(), "temp file of an exited process removed");
        assert!(live_tmp.exists(), "a save in flight keeps its temp file");
        assert!(
            other.exists() && unrelated.exists(),
            "other files untouched"
        );
        let _ = go_tx.send(());
        slow.join()
            .map_err(|_| io_err(&target, std::io::ErrorKind::Other.into()))??;
        assert_eq!(fs::read(&target).map_err(|e| io_err(&target, e))?, b"slow");
        assert!(!live_tmp.exists());
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }
}
