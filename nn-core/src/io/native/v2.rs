//! Native format version 2: a 64-byte header, a postcard skeleton of the value whose
//! tensors point into a 64-byte-aligned data section, and xxh3-64 sums of that section's
//! chunks, verified in parallel. See the [`crate::io`] docs for the layout.
//!
//! The skeleton is the value as [postcard](https://docs.rs/postcard) writes it, except that
//! a tensor's `data` field is `(offset, length)` (two varints, the offset relative to the
//! data section) instead of the bytes (the serializer and deserializer of
//! `io/skeleton/` write and read that form for [`encode`] and [`decode`], carrying the
//! data section in their state; every other serializer sees the bytes).

use super::kind::payload_kind;
use super::scan::{format_error, pretty_type, Scan};
use crate::io::bytes::{le_u32, le_u64, MAGIC};
use crate::io::skeleton::{de, ser};
use crate::io::tensor_file::Entry;
use crate::io::xxh3::xxh3_64;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Seek, SeekFrom, Write};
use xxhash_rust::xxh3::Xxh3;

/// The format version this build writes (it reads versions 1 and 2).
pub const VERSION: u32 = 2;
/// Size of the fixed version-2 header.
pub const HEADER_LEN: usize = 64;
/// Alignment of the data section and of every tensor in it (a cache line, and enough
/// for any element type and for AVX-512 loads).
pub(crate) const ALIGN: u64 = 64;
/// Bytes per checksummed chunk in the files this build writes. 4 MiB: large enough that
/// the per-chunk cost (a task, 8 bytes of table) is nothing, small enough that a
/// 400 MB file splits into ~100 chunks for two threads, and that a chunk being hashed
/// still sits in the L3 cache when it is written out.
pub(crate) const CHUNK: u64 = 4 << 20;
/// The chunk sizes a reader accepts (powers of two).
const MIN_CHUNK: u64 = 4 << 10;
const MAX_CHUNK: u64 = 1 << 30;
/// Byte range of the header's own checksum field (zero while hashing).
const SUM_AT: usize = 48;

fn align(n: u64) -> Option<u64> {
    n.checked_next_multiple_of(ALIGN)
}

/// The xxh3-64 of everything before the data section, with the header's checksum field
/// read as zeros.
fn head_sum(head: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&head[..SUM_AT]);
    h.update(&[0u8; 8]);
    h.update(&head[SUM_AT + 8..]);
    h.digest()
}

/// Checks a tensor reference of the skeleton against the data section (`data_len`
/// bytes, the previous tensor ending at `next`) and returns its end.
pub(crate) fn check_ref(
    off: u64,
    len: u64,
    data_len: u64,
    next: u64,
) -> std::result::Result<u64, String> {
    let end = off
        .checked_add(len)
        .filter(|&e| e <= data_len)
        .ok_or_else(|| {
            format!("data at {off}+{len} lies outside the {data_len}-byte data section")
        })?;
    if !off.is_multiple_of(ALIGN) {
        return Err(format!("data offset {off} is not {ALIGN}-byte aligned"));
    }
    if off < next {
        return Err(format!(
            "data at {off}..{end} overlaps the previous tensor's (which ends at {next})"
        ));
    }
    Ok(end)
}

// ---------------------------------------------------------------------------------------
// Writing.

/// Everything before the data section but the sums: the skeleton and the data
/// section's size and chunking.
struct Head {
    skeleton: Vec<u8>,
    data_len: u64,
    chunk: u64,
}

/// A value laid out for writing: the value and its [`Head`].
pub(crate) struct Plan<'v, T: ?Sized> {
    value: &'v T,
    head: Head,
}

/// Serializes `value`'s skeleton, placing its tensors (no tensor data is read yet).
pub(crate) fn encode<'v, T: Serialize + ?Sized>(value: &'v T, what: &str) -> Result<Plan<'v, T>> {
    let sk = ser::encode(value, ALIGN, None).map_err(|msg| Error::Serialize {
        path: what.to_string(),
        msg,
    })?;
    Ok(Plan {
        value,
        head: Head {
            skeleton: sk.bytes,
            data_len: sk.data_len,
            chunk: CHUNK,
        },
    })
}

impl Head {
    fn chunks(&self) -> u64 {
        self.data_len.div_ceil(self.chunk)
    }

    /// Header, skeleton, chunk table (zeros) and padding: everything before the data.
    fn bytes(&self) -> std::result::Result<Vec<u8>, String> {
        let m = self.skeleton.len() as u64;
        let table = self.chunks() * 8;
        let d = (HEADER_LEN as u64)
            .checked_add(m)
            .and_then(|x| x.checked_add(table))
            .and_then(align)
            .ok_or("file too large")?;
        let d_usize = usize::try_from(d).map_err(|_| "file too large")?;
        let mut h = vec![0u8; d_usize];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&2u32.to_le_bytes());
        h[16..24].copy_from_slice(&m.to_le_bytes());
        h[24..32].copy_from_slice(&d.to_le_bytes());
        h[32..40].copy_from_slice(&self.data_len.to_le_bytes());
        h[40..44].copy_from_slice(&(self.chunk as u32).to_le_bytes());
        h[HEADER_LEN..HEADER_LEN + self.skeleton.len()].copy_from_slice(&self.skeleton);
        Ok(h)
    }
}

impl<T: Serialize + ?Sized> Plan<'_, T> {
    /// Writes the file to `w` (at position 0): the data section first, the value
    /// serialized again with each tensor's bytes sent straight from its storage in
    /// chunk-sized writes, hashed on the way; then the head with the chunk table and its
    /// own sum. `wrote(offset, len)` is told about every large write (to start writeback
    /// early).
    pub(crate) fn write_to<W: Write + Seek>(
        &self,
        mut w: W,
        mut wrote: impl FnMut(u64, u64),
    ) -> std::io::Result<()> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let hd = &self.head;
        let mut head = hd.bytes().map_err(bad)?;
        let d = head.len() as u64;
        w.seek(SeekFrom::Start(d))?;
        let mut sums: Vec<u64> = Vec::with_capacity(hd.chunks() as usize);
        let mut hasher = Xxh3::new();
        let mut pos = 0u64; // within the data section
        let mut io_err = None;
        let pad = [0u8; ALIGN as usize];
        let mut put = |off: u64, bytes: &[u8]| -> std::result::Result<(), String> {
            let gap = pad
                .get(..off.saturating_sub(pos) as usize)
                .filter(|g| pos + g.len() as u64 == off)
                .ok_or("tensors out of order in the plan")?;
            let mut parts: [&[u8]; 2] = [gap, bytes];
            for part in parts.iter_mut() {
                while !part.is_empty() {
                    let room = hd.chunk - pos % hd.chunk;
                    let k = (part.len() as u64).min(room) as usize;
                    let (now, rest) = part.split_at(k);
                    if let Err(e) = w.write_all(now) {
                        let msg = e.to_string();
                        io_err = Some(e);
                        return Err(msg);
                    }
                    if k as u64 == hd.chunk {
                        sums.push(xxh3_64(now));
                    } else {
                        hasher.update(now);
                        if k as u64 == room {
                            sums.push(hasher.digest());
                            hasher.reset();
                        }
                    }
                    if k >= 1 << 20 {
                        wrote(d + pos, k as u64);
                    }
                    pos += k as u64;
                    *part = rest;
                }
            }
            Ok(())
        };
        let again = ser::encode(self.value, ALIGN, Some(&mut put));
        if let Some(e) = io_err {
            return Err(e);
        }
        let again = again.map_err(bad)?;
        if !pos.is_multiple_of(hd.chunk) {
            sums.push(hasher.digest());
        }
        if again.bytes != hd.skeleton
            || again.data_len != hd.data_len
            || pos != hd.data_len
            || sums.len() as u64 != hd.chunks()
        {
            return Err(bad("tensors changed size while being saved".into()));
        }
        let at = HEADER_LEN + hd.skeleton.len();
        for (i, s) in sums.iter().enumerate() {
            head[at + 8 * i..at + 8 * i + 8].copy_from_slice(&s.to_le_bytes());
        }
        let sum = head_sum(&head);
        head[SUM_AT..SUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
        w.seek(SeekFrom::Start(0))?;
        w.write_all(&head)?;
        Ok(())
    }
}

/// Encodes `value` as a complete version-2 file in memory.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let plan = encode(value, "<memory>")?;
    let mut out = std::io::Cursor::new(Vec::new());
    plan.write_to(&mut out, |_, _| {})
        .map_err(|e| Error::Serialize {
            path: "<memory>".into(),
            msg: e.to_string(),
        })?;
    Ok(out.into_inner())
}

/// A version-2 file around a raw skeleton and data section, with valid sums over
/// `chunk`-byte chunks (tests and the fuzz target use it to reach the skeleton decoder
/// and the reference checks past the checksums). `chunk` is clamped to the sizes
/// readers accept.
#[doc(hidden)]
pub fn frame(skeleton: &[u8], data: &[u8], chunk: u64) -> Vec<u8> {
    let chunk = chunk.clamp(MIN_CHUNK, MAX_CHUNK).next_power_of_two();
    let hd = Head {
        skeleton: skeleton.to_vec(),
        data_len: data.len() as u64,
        chunk,
    };
    let Ok(mut head) = hd.bytes() else {
        return Vec::new();
    };
    let at = HEADER_LEN + skeleton.len();
    for (i, c) in data.chunks(chunk as usize).enumerate() {
        head[at + 8 * i..at + 8 * i + 8].copy_from_slice(&xxh3_64(c).to_le_bytes());
    }
    let sum = head_sum(&head);
    head[SUM_AT..SUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
    head.extend_from_slice(data);
    head
}

// ---------------------------------------------------------------------------------------
// Reading.

/// Where the parts of a checked version-2 file lie.
pub(crate) struct Layout {
    pub skeleton: std::ops::Range<usize>,
    pub table: std::ops::Range<usize>,
    pub data: std::ops::Range<usize>,
    pub chunk: usize,
}

/// Checks the header of a version-2 file of `file.len()` bytes against the file, and the
/// head's own checksum (so the skeleton and chunk table are sound); the data section is
/// checked later ([`verify_chunks`]).
pub(crate) fn check_head(file: &[u8]) -> std::result::Result<Layout, String> {
    let n = file.len() as u64;
    if file.len() < HEADER_LEN {
        return Err(format!(
            "{n} bytes is shorter than the {HEADER_LEN}-byte header (truncated file?)"
        ));
    }
    let (flags, r1, r2) = (le_u32(file, 12), le_u32(file, 44), le_u64(file, 56));
    if flags != 0 || r1 != 0 || r2 != 0 {
        return Err(format!(
            "unknown header flags {flags:#x}/{r1:#x}/{r2:#x} (written by a newer version?)"
        ));
    }
    let (m, d, l, c) = (
        le_u64(file, 16),
        le_u64(file, 24),
        le_u64(file, 32),
        u64::from(le_u32(file, 40)),
    );
    if !c.is_power_of_two() || !(MIN_CHUNK..=MAX_CHUNK).contains(&c) {
        return Err(format!(
            "chunk size {c} is not a power of two from {MIN_CHUNK} to {MAX_CHUNK}"
        ));
    }
    let table = l
        .div_ceil(c)
        .checked_mul(8)
        .ok_or("header sizes overflow")?;
    let need = (HEADER_LEN as u64)
        .checked_add(m)
        .and_then(|x| x.checked_add(table))
        .ok_or("header sizes overflow")?;
    if d.checked_add(l) != Some(n) {
        return Err(format!(
            "header declares {d} + {l} bytes but the file has {n} (truncated or damaged file)"
        ));
    }
    if d % ALIGN != 0 || d < need {
        return Err(format!(
            "data offset {d} is not {ALIGN}-aligned or leaves no room for the {m}-byte skeleton and {table}-byte chunk table"
        ));
    }
    let (want, got) = (le_u64(file, SUM_AT), head_sum(&file[..d as usize]));
    if want != got {
        return Err(format!(
            "checksum mismatch in the header or the tensor list (stored {want:#018x}, computed {got:#018x}): the file is damaged"
        ));
    }
    let (m, d, t) = (m as usize, d as usize, table as usize);
    Ok(Layout {
        skeleton: HEADER_LEN..HEADER_LEN + m,
        table: HEADER_LEN + m..HEADER_LEN + m + t,
        data: d..file.len(),
        chunk: c as usize,
    })
}

/// Verifies every chunk of the data section in parallel; `release` is called on each
/// chunk once hashed (to drop its pages from a mapping). A bad chunk is an error naming
/// what lies in it (`owners(start, end)`, data-section offsets).
pub(crate) fn verify_chunks(
    file: &[u8],
    lay: &Layout,
    release: &(dyn Fn(&[u8]) + Sync),
    owners: impl Fn(u64, u64) -> String,
) -> std::result::Result<(), String> {
    use rayon::prelude::*;
    let data = &file[lay.data.clone()];
    let table = &file[lay.table.clone()];
    let bad = data
        .par_chunks(lay.chunk)
        .zip(table.par_chunks(8))
        .enumerate()
        .filter_map(|(i, (c, s))| {
            let got = xxh3_64(c);
            release(c);
            (got != le_u64(s, 0)).then_some((i, got, le_u64(s, 0)))
        })
        .min_by_key(|b| b.0);
    match bad {
        None => Ok(()),
        Some((i, got, want)) => {
            let s = (i * lay.chunk) as u64;
            let e = (s + lay.chunk as u64).min(data.len() as u64);
            Err(format!(
                "checksum mismatch in data bytes {s}..{e} (chunk {i}: stored {want:#018x}, computed {got:#018x}), which hold {}: the file is damaged",
                owners(s, e)
            ))
        }
    }
}

/// Names the tensors `refs` (name, data offset, length) that meet bytes `s..e`.
pub(crate) fn name_owners(refs: &[(String, u64, u64)], s: u64, e: u64) -> String {
    let hit: Vec<String> = refs
        .iter()
        .filter(|(_, o, l)| *o < e && o.saturating_add(*l) > s)
        .map(|(n, _, _)| format!("`{n}`"))
        .collect();
    match hit.len() {
        0 => "only padding".into(),
        1..=4 => format!("tensor {}", hit.join(", ")),
        k => format!("tensors {} and {} more", hit[..3].join(", "), k - 3),
    }
}

/// Decodes a checked skeleton into `T`, tensors copying their bytes from `data`;
/// returns the value and the count of skeleton bytes left over, or what is wrong.
pub(crate) fn decode_skeleton<T: DeserializeOwned>(
    skeleton: &[u8],
    data: &[u8],
) -> std::result::Result<(T, usize), String> {
    let section = de::Section {
        data,
        check: check_ref,
    };
    de::decode(skeleton, Some(section))
}

/// Checks a whole version-2 file: its head, then every chunk of its data section (a bad
/// one named by the tensors in it, as [`decode`] does); `release` as for
/// [`verify_chunks`].
pub(crate) fn check_file(
    file: &[u8],
    release: &(dyn Fn(&[u8]) + Sync),
) -> std::result::Result<Layout, String> {
    let lay = check_head(file)?;
    let refs = skeleton_refs(&file[lay.skeleton.clone()]);
    verify_chunks(file, &lay, release, |s, e| name_owners(&refs, s, e))?;
    Ok(lay)
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

/// Decodes a complete version-2 file held in memory: head checked, every chunk verified (in parallel),
/// then the skeleton decoded with tensors copied from the data section.
pub(crate) fn decode<T: DeserializeOwned>(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<T> {
    let fmt_err = format_error(what);
    let lay = check_head(file).map_err(fmt_err)?;
    let skel = &file[lay.skeleton.clone()];
    let refs = skeleton_refs(skel);
    verify_chunks(file, &lay, release, |s, e| name_owners(&refs, s, e)).map_err(fmt_err)?;
    // a state dict's or list's references, judged where their names are known; used
    // only to explain a failed decode (the decoder checks every reference itself)
    let mut next = 0;
    let named = refs.iter().find_map(|(name, off, len)| {
        match check_ref(*off, *len, lay.data.len() as u64, next) {
            Ok(end) => {
                next = end;
                None
            }
            Err(m) => Some(format!("tensor `{name}`: {m}")),
        }
    });
    match decode_skeleton::<T>(skel, &file[lay.data.clone()]) {
        Ok((value, 0)) => Ok(value),
        Ok((_, rest)) => Err(fmt_err(format!(
            "{rest} unexpected bytes after the tensor list"
        ))),
        Err(detail) => {
            // a state dict's scanner names the tensor at fault
            let detail = match (named, Scan::refs(skel, skel.len() as u64).state_dict()) {
                (Some(m), _) => m,
                (None, Err(m)) if m.starts_with('`') => m,
                _ => detail,
            };
            let expected = format!("a {}", pretty_type(std::any::type_name::<T>()));
            Err(match payload_kind(skel, true).found() {
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
pub(crate) fn scan_state_dict(
    file: &[u8],
    what: &str,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Result<Vec<Entry>> {
    let fmt_err = format_error(what);
    let lay = check_head(file).map_err(fmt_err)?;
    let skel = &file[lay.skeleton.clone()];
    let parsed = Scan::refs(skel, skel.len() as u64).state_dict();
    let refs = skeleton_refs(skel);
    verify_chunks(file, &lay, release, |s, e| name_owners(&refs, s, e)).map_err(fmt_err)?;
    let mut entries = match parsed {
        Ok(es) => es,
        Err(m) => {
            return Err(
                match payload_kind(skel, true).found_by_state_dict_reader() {
                    Some(found) => Error::FileKind {
                        path: what.to_string(),
                        expected: "a StateDict".into(),
                        found,
                    },
                    None => fmt_err(format!("bad payload: {m}")),
                },
            )
        }
    };
    let data_len = lay.data.len() as u64;
    let mut next = 0;
    for e in &mut entries {
        next = check_ref(e.offset, e.len as u64, data_len, next)
            .map_err(|m| fmt_err(format!("tensor `{}`: {m}", e.name)))?;
        e.offset += lay.data.start as u64;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
