//! numpy's `.npz` archives (`np.savez`, stored, and `np.savez_compressed`, deflated):
//! a zip of `.npy` files, read with the project's own bounds-checked zip reader.

use super::npy::npy_from_bytes;
use super::{bad, inflate};
use crate::io::files::open_regular;
use crate::io::torch::zip::{read_entries, ReadAt};
use crate::{Error, Result, Tensor};
use std::path::Path;

/// Reads every array of an `.npz` file, in archive order, named as numpy names them
/// (`np.savez(f, x=a)` gives `"x"`; positional arrays `"arr_0"`, ...).
///
/// ```no_run
/// # extern crate nn_core as nn;
/// let arrays = nn::data::readers::read_npz("data.npz")?;
/// for (name, t) in &arrays {
///     println!("{name}: {:?}", t.shape());
/// }
/// # Ok::<(), nn::Error>(())
/// ```
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let (file, len) = open_regular(path)?;
    let what = path.display().to_string();
    let entries = read_entries(&file, len, &what)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(name) = e.name.strip_suffix(".npy") else {
            continue;
        };
        let n = usize::try_from(e.len)
            .map_err(|_| bad(path, format!("entry `{}` is too large", e.name)))?;
        let mut raw = Vec::new();
        raw.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
            bytes: n as u128,
            op: "read_npz",
        })?;
        raw.resize(n, 0);
        file.read_exact_at(&mut raw, e.offset)
            .map_err(|err| Error::io(path, err))?;
        let bytes = match e.method {
            0 => raw,
            8 => inflate(&raw, false, None, path)?,
            m => {
                return Err(bad(
                    path,
                    format!(
                        "entry `{}`: compression method {m} (only stored and deflate are read)",
                        e.name
                    ),
                ))
            }
        };
        if crc32fast::hash(&bytes) != e.crc32 {
            return Err(bad(
                path,
                format!("entry `{}`: CRC-32 mismatch (corrupt archive)", e.name),
            ));
        }
        let t = npy_from_bytes(&bytes, Path::new(&format!("{}:{}", path.display(), e.name)))?;
        out.push((name.to_string(), t));
    }
    Ok(out)
}
