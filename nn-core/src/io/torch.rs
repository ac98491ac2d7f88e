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

use super::format::Entry;
use super::pickle::{self, Leaf, Obj};
use super::zip::{self, ReadAt};
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

/// What a torch archive holds besides tensors: non-tensor leaves (`epoch`, optimizer
/// hyper-parameters) as `(dotted key, Python-like text)`.
pub(crate) type Extras = Vec<(String, String)>;

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
) -> Result<(Vec<Entry>, Extras)> {
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
    let p = pickle::parse(&data).map_err(|m| bad(what, format!("data.pkl: {m}")))?;
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
    t: &pickle::TensorRef,
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

/// Copies a strided view out of `src` (which starts at the view's first element) into
/// the contiguous `dst`, element by element of `el` bytes.
pub(crate) fn gather(src: &[u8], dst: &mut [u8], shape: &[usize], strides: &[usize], el: usize) {
    let n = shape.len();
    if n == 0 || dst.is_empty() {
        dst.copy_from_slice(&src[..dst.len()]);
        return;
    }
    let mut idx = vec![0usize; n];
    let mut at = 0usize;
    for chunk in dst.chunks_exact_mut(el) {
        chunk.copy_from_slice(&src[at * el..at * el + el]);
        // advance the multi-index, innermost first
        let mut k = n;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            at += strides[k];
            if idx[k] < shape[k] {
                break;
            }
            at -= strides[k] * shape[k];
            idx[k] = 0;
        }
    }
}

/// Bytes a strided entry spans in its storage, from its first element.
pub(crate) fn span(e: &Entry) -> usize {
    match &e.strides {
        None => e.len,
        Some(st) => {
            let el = e.dtype.size_in_bytes();
            let last: usize = e.shape.iter().zip(st).map(|(&d, &s)| (d - 1) * s).sum();
            (last + 1) * el
        }
    }
}

fn storage_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "FloatStorage",
        DType::I64 => "LongStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::F64 => "DoubleStorage",
        DType::I32 => "IntStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
    }
}

/// A pickle protocol 2 writer of exactly what a state dict needs.
struct Pk {
    out: Vec<u8>,
    memo: HashMap<String, u32>,
    next: u32,
}

impl Pk {
    fn op(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    /// Stores the top of the stack in the next memo slot; returns the slot.
    fn memoize(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        if n < 256 {
            self.op(&[b'q', n as u8]);
        } else {
            self.op(b"r");
            self.op(&n.to_le_bytes());
        }
        n
    }
    fn get(&mut self, n: u32) {
        if n < 256 {
            self.op(&[b'h', n as u8]);
        } else {
            self.op(b"j");
            self.op(&n.to_le_bytes());
        }
    }
    /// A string or global, memoized so repeats cost two bytes (as CPython's pickler).
    fn shared(&mut self, key: String, write: impl FnOnce(&mut Pk)) {
        if let Some(&n) = self.memo.get(&key) {
            return self.get(n);
        }
        write(self);
        let n = self.memoize();
        self.memo.insert(key, n);
    }
    fn str(&mut self, s: &str) {
        self.shared(format!("s:{s}"), |p| {
            p.op(b"X");
            p.op(&(s.len() as u32).to_le_bytes());
            p.op(s.as_bytes());
        })
    }
    fn global(&mut self, module: &str, name: &str) {
        self.shared(format!("g:{module}.{name}"), |p| {
            p.op(b"c");
            p.op(module.as_bytes());
            p.op(b"\n");
            p.op(name.as_bytes());
            p.op(b"\n");
        })
    }
    fn int(&mut self, v: u64) {
        if v < 256 {
            self.op(&[b'K', v as u8]);
        } else if v < 65536 {
            self.op(b"M");
            self.op(&(v as u16).to_le_bytes());
        } else if v < (1 << 31) {
            self.op(b"J");
            self.op(&(v as u32).to_le_bytes());
        } else {
            self.op(&[0x8a, 8]);
            self.op(&v.to_le_bytes());
        }
    }
    fn int_tuple(&mut self, v: &[usize]) {
        match v.len() {
            0 => self.op(b")"),
            1..=3 => {
                for &x in v {
                    self.int(x as u64);
                }
                self.op(&[0x84 + v.len() as u8]);
            }
            _ => {
                self.op(b"(");
                for &x in v {
                    self.int(x as u64);
                }
                self.op(b"t");
            }
        }
    }
}

/// For each tensor of `sd`, the index of the storage it is written to, and the tensor
/// holding each storage: tensors sharing memory (tied parameters) share one storage,
/// as `torch.save` writes them.
fn storage_ids(sd: &StateDict) -> (Vec<usize>, Vec<usize>) {
    let ts: Vec<&crate::Tensor> = sd.iter().map(|(_, t)| t).collect();
    let mut ids = Vec::with_capacity(ts.len());
    let mut owners: Vec<usize> = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let same = owners
            .iter()
            .position(|&o| ts[o].same_storage(t) && ts[o].shape() == t.shape());
        ids.push(same.unwrap_or_else(|| {
            owners.push(i);
            owners.len() - 1
        }));
    }
    (ids, owners)
}

/// The `data.pkl` of a state dict: an `OrderedDict` of `_rebuild_tensor_v2` calls on
/// storages `0`, `1`, ... (one per distinct storage), as `torch.save(state_dict)`
/// writes it.
fn state_dict_pickle(sd: &StateDict, ids: &[usize]) -> Vec<u8> {
    let mut p = Pk {
        out: Vec::new(),
        memo: HashMap::new(),
        next: 0,
    };
    p.op(&[0x80, 2]);
    p.global("collections", "OrderedDict");
    p.op(b")R");
    p.memoize();
    p.op(b"(");
    for (i, (k, t)) in sd.iter().enumerate() {
        p.str(k);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b"((");
        p.str("storage");
        p.global("torch", storage_name(t.dtype()));
        p.str(&ids[i].to_string());
        p.str("cpu");
        p.int(t.numel() as u64);
        p.op(b"tQ");
        p.int(0);
        p.int_tuple(t.shape());
        let mut strides = vec![1usize; t.shape().len()];
        for d in (0..t.shape().len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * t.shape()[d + 1];
        }
        p.int_tuple(&strides);
        p.op(&[0x89]); // requires_grad False
        p.global("collections", "OrderedDict");
        p.op(b")R");
        p.op(b"tR");
        // SETITEMS in batches of 1000, as CPython does
        if i % 1000 == 999 {
            p.op(b"u(");
        }
    }
    p.op(b"u");
    p.op(b".");
    p.out
}

/// Writes `sd` as a `torch.save` zip archive into `w`, tensors in state-dict order.
pub(crate) fn write_state_dict<W: std::io::Write>(
    sd: &StateDict,
    w: W,
    archive: &str,
) -> Result<W> {
    let io = Error::from;
    let mut z = zip::ZipWriter::new(w);
    let (ids, owners) = storage_ids(sd);
    z.entry(
        &format!("{archive}/data.pkl"),
        &[&state_dict_pickle(sd, &ids)],
    )
    .map_err(io)?;
    z.entry(&format!("{archive}/.format_version"), &[b"1"])
        .map_err(io)?;
    z.entry(&format!("{archive}/.storage_alignment"), &[b"64"])
        .map_err(io)?;
    z.entry(&format!("{archive}/byteorder"), &[b"little"])
        .map_err(io)?;
    let ts: Vec<&crate::Tensor> = sd.iter().map(|(_, t)| t).collect();
    for (i, &o) in owners.iter().enumerate() {
        let bytes = super::tensor_serde::le_bytes(ts[o])?;
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
