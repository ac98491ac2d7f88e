//! PyTorch's `torch.save` format (the zip archive written since PyTorch 1.6): scanning
//! one into [`Entry`]s without running or trusting anything in it, and writing one that
//! `torch.load(path, weights_only=True)` reads.
//!
//! An archive `<name>/` holds `data.pkl` (the pickled object: a state dict, or a dict
//! holding state dicts), `data/<key>` (one entry per storage, raw little-endian
//! elements), `byteorder`, `version`. Tensors are views of storages: an element offset,
//! a shape and strides. Reading checks every view against its storage (no negative
//! strides, no overlapping elements, inside the storage) and every storage against its
//! zip entry (exactly its size), so nothing is allocated that the file does not hold.

pub(crate) mod pickle_value;
pub(crate) mod pickle_write;
pub(crate) mod unpickle;
pub(crate) mod zip;

use self::pickle_value::{Leaf, Obj, TensorRef};
use self::zip::ReadAt;
use super::bytes::le_bytes;
use super::tensor_file::{Entry, NonTensorValues};
use crate::module::StateDict;
use crate::{DType, Error, Result};
use std::collections::HashMap;

/// The first bytes of a legacy (pre-1.6) `torch.save` file: pickle protocol 2, then the
/// LONG1 magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// What a file's first bytes say about it, when they speak of PyTorch.
pub(crate) fn foreign_kind(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&LEGACY_MAGIC) {
        return Some(
            "a legacy PyTorch file (torch.save before PyTorch 1.6, or _use_new_zipfile_serialization=False), which is not supported: re-save it in PyTorch with torch.save(torch.load(path, weights_only=True), 'new.pt')",
        );
    }
    // a tar archive (PyTorch before 0.4 saved tarfiles): "ustar" at offset 257 is past
    // the head we read, so the pickle protocol byte is what we can tell
    if head.first() == Some(&0x80) {
        return Some(
            "a bare pickle, not a torch.save archive: if it came from pickle.dump or an old PyTorch, load it in PyTorch and re-save it with torch.save(obj, 'new.pt')",
        );
    }
    None
}

/// Views are copied on load, so the tensors of a file may total at most this many times
/// its size (tied weights make it 2x or 3x; a file repeating one view of a large storage
/// thousands of times is refused rather than multiplied).
const VIEW_BOUND: u64 = 8;

fn bad(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::Format {
        path: what.to_string(),
        msg: format!("torch: {msg}"),
    }
}

/// Scans a `torch.save` zip archive of `len` bytes: every tensor as an [`Entry`]
/// (dotted key, dtype, shape, where its elements lie), and the non-tensor leaves.
pub(crate) fn scan<R: ReadAt + ?Sized>(
    r: &R,
    len: u64,
    what: &str,
) -> Result<(Vec<Entry>, NonTensorValues)> {
    let files = zip::read_entries(r, len, what)?;
    let pkl = files
        .iter()
        .filter(|e| e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1)
        .min_by_key(|e| e.name.len())
        .ok_or_else(|| {
            bad(
                what,
                "a zip archive without <name>/data.pkl: not a torch.save file",
            )
        })?;
    let root = pkl.name.trim_end_matches("data.pkl").to_string();
    let has = |n: &str| {
        files
            .iter()
            .any(|e| e.name.starts_with(&format!("{root}{n}")))
    };
    if has("constants.pkl") || has("code/") {
        return Err(bad(
            what,
            "a TorchScript archive (torch.jit.save), not a state dict: in PyTorch, torch.save(torch.jit.load(path).state_dict(), 'weights.pt') writes one this can read",
        ));
    }
    if let Some(c) = files.iter().find(|e| e.method != 0) {
        return Err(bad(
            what,
            format!(
                "entry `{}` is compressed (method {}, {} bytes); torch.save writes stored entries only, so this file was repacked or crafted (a zip bomb is one such file) and is refused",
                c.name, c.method, c.len
            ),
        ));
    }
    let by_name: HashMap<&str, &zip::ZipEntry> =
        files.iter().map(|e| (e.name.as_str(), e)).collect();
    if let Some(bo) = by_name.get(format!("{root}byteorder").as_str()) {
        let mut b = vec![0u8; bo.len.min(16) as usize];
        r.read_exact_at(&mut b, bo.offset)
            .map_err(|e| Error::io(std::path::Path::new(what), e))?;
        if b != b"little" {
            return Err(bad(
                what,
                format!(
                    "byte order `{}` is not supported (little-endian only)",
                    String::from_utf8_lossy(&b)
                ),
            ));
        }
    }
    let mut data = Vec::new();
    data.try_reserve_exact(pkl.len as usize)
        .map_err(|_| bad(what, "data.pkl does not fit in memory"))?;
    data.resize(pkl.len as usize, 0);
    r.read_exact_at(&mut data, pkl.offset)
        .map_err(|e| Error::io(std::path::Path::new(what), e))?;
    let p = unpickle::parse(&data).map_err(|m| bad(what, format!("data.pkl: {m}")))?;
    let leaves = p
        .leaves()
        .map_err(|m| bad(what, format!("data.pkl: {m}")))?;
    let mut entries = Vec::new();
    let mut extras = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    for (key, leaf) in leaves {
        let t = match leaf {
            Leaf::Tensor(t) => t,
            Leaf::Other(text) => {
                extras.push((key, text));
                continue;
            }
        };
        if !seen.insert(key.clone()) {
            return Err(bad(what, format!("key `{key}` appears twice")));
        }
        let Some(Obj::Storage {
            dtype,
            key: skey,
            numel,
        }) = p.objs.get(t.storage)
        else {
            return Err(bad(what, format!("`{key}`: no storage")));
        };
        let ze = by_name
            .get(format!("{root}data/{skey}").as_str())
            .ok_or_else(|| {
                bad(
                    what,
                    format!("`{key}`: storage `data/{skey}` is missing from the archive"),
                )
            })?;
        let el = dtype.size_in_bytes() as u64;
        if numel.checked_mul(el) != Some(ze.len) {
            return Err(bad(
                what,
                format!(
                    "`{key}`: storage `data/{skey}` claims {numel} {dtype} elements but its entry holds {} bytes",
                    ze.len
                ),
            ));
        }
        let e = view_entry(what, &key, *dtype, *numel, ze.offset, t)?;
        // many views of one storage would each be a copy: bound them by the file
        total = total.saturating_add(e.len as u64);
        if total > len.saturating_mul(VIEW_BOUND).saturating_add(1 << 16) {
            return Err(bad(
                what,
                format!(
                    "its tensors claim more than {total} bytes from a {len}-byte file (one storage viewed again and again); nn copies each view, so it reads at most {VIEW_BOUND}x the file"
                ),
            ));
        }
        entries.push(e);
    }
    Ok((entries, extras))
}

/// Checks one tensor view against its storage and says where its elements lie.
fn view_entry(
    what: &str,
    key: &str,
    dtype: DType,
    storage_numel: u64,
    storage_at: u64,
    t: &TensorRef,
) -> Result<Entry> {
    let err = |m: String| bad(what, format!("`{key}`: {m}"));
    if t.size.len() != t.stride.len() {
        return Err(err(format!(
            "{} sizes but {} strides",
            t.size.len(),
            t.stride.len()
        )));
    }
    let conv = |v: &[i64], what: &str| -> Result<Vec<usize>> {
        v.iter()
            .map(|&x| usize::try_from(x).map_err(|_| err(format!("negative {what} {x} in {v:?}"))))
            .collect()
    };
    let shape = conv(&t.size, "size")?;
    let strides = conv(&t.stride, "stride")?;
    let offset = u64::try_from(t.offset)
        .map_err(|_| err(format!("negative storage offset {}", t.offset)))?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            err(format!(
                "shape {shape:?} has more elements than fit in memory"
            ))
        })?;
    let el = dtype.size_in_bytes();
    let len = numel
        .checked_mul(el)
        .ok_or_else(|| err(format!("shape {shape:?} has more bytes than fit in memory")))?;
    let contiguous = {
        let mut want = 1usize;
        let mut ok = true;
        for (&d, &s) in shape.iter().zip(&strides).rev() {
            if d != 1 && s != want {
                ok = false;
            }
            want = want.saturating_mul(d);
        }
        ok
    };
    // the last element's index, checked to stay inside the storage
    let mut last = offset;
    if numel > 0 {
        for (&d, &s) in shape.iter().zip(&strides) {
            let step = (d as u64 - 1)
                .checked_mul(s as u64)
                .and_then(|x| last.checked_add(x));
            last = step.ok_or_else(|| err(format!("strides {strides:?} overflow")))?;
        }
        if last >= storage_numel {
            return Err(err(format!(
                "view (offset {offset}, shape {shape:?}, strides {strides:?}) reaches element {last} of a {storage_numel}-element storage"
            )));
        }
        if !contiguous {
            // no two indices may reach one element: sorted by stride, each stride must
            // pass everything the smaller ones reach
            let mut dims: Vec<(usize, usize)> = shape
                .iter()
                .zip(&strides)
                .filter(|(&d, _)| d > 1)
                .map(|(&d, &s)| (s, d))
                .collect();
            dims.sort_unstable();
            let mut reach = 0usize;
            for &(s, d) in &dims {
                if s <= reach {
                    return Err(err(format!(
                        "strides {strides:?} make elements overlap (an expanded or self-overlapping view); save it with .contiguous() or .clone()"
                    )));
                }
                reach = reach.saturating_add(s.saturating_mul(d - 1));
            }
        }
    }
    // an empty tensor reads nothing: its offset need not lie in the storage
    let at = if numel == 0 {
        storage_at
    } else {
        // bounded: offset <= last < storage_numel, whose bytes lie in the file
        storage_at + offset * el as u64
    };
    Ok(Entry {
        name: key.to_string(),
        dtype,
        shape,
        offset: at,
        len,
        strides: if contiguous || numel == 0 {
            None
        } else {
            Some(strides)
        },
    })
}

/// Writes `sd` as a `torch.save` zip archive into `w`, tensors in state-dict order.
pub(crate) fn write_state_dict<W: std::io::Write>(
    sd: &StateDict,
    w: W,
    archive: &str,
) -> Result<W> {
    let io = Error::from;
    let mut z = zip::ZipWriter::new(w);
    let (ids, owners) = pickle_write::storage_ids(sd);
    let pickle = pickle_write::state_dict_pickle(sd, &ids).map_err(|msg| Error::Serialize {
        path: archive.to_string(),
        msg,
    })?;
    z.entry(&format!("{archive}/data.pkl"), &[&pickle])
        .map_err(io)?;
    z.entry(&format!("{archive}/.format_version"), &[b"1"])
        .map_err(io)?;
    z.entry(&format!("{archive}/.storage_alignment"), &[b"64"])
        .map_err(io)?;
    z.entry(&format!("{archive}/byteorder"), &[b"little"])
        .map_err(io)?;
    let ts: Vec<&crate::Tensor> = sd.iter().map(|(_, t)| t).collect();
    for (i, &o) in owners.iter().enumerate() {
        let bytes = le_bytes(ts[o])?;
        z.entry(&format!("{archive}/data/{i}"), &[&bytes])
            .map_err(io)?;
    }
    z.entry(&format!("{archive}/version"), &[b"3\n"])
        .map_err(io)?;
    z.finish().map_err(io)
}

/// The archive name PyTorch would use for `path` (its file stem).
pub(crate) fn archive_name(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("archive");
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "archive".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests;
