//! The zip container of `torch.save` files: a reader of stored (uncompressed) entries
//! with every offset and size bounds-checked against the file, and a writer of stored,
//! 64-byte-aligned entries as PyTorch writes them.
//!
//! Hand-written rather than a zip crate: PyTorch only ever writes stored entries, so a
//! reader needs the central directory, local headers and zip64 records, and nothing
//! else (no decompression, so no zip bomb can make us allocate: a compressed entry is
//! an error). The tensor data is then read straight from the file at its offset.

use crate::{Error, Result};

/// Positioned reads from a file or a byte slice.
pub(crate) trait ReadAt {
    /// Fills `buf` from `offset`, or fails.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|s| self.get(s..s.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = self;
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(buf)
        }
    }
}

/// One stored entry of an archive: its name and where its bytes lie in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZipEntry {
    /// The entry's name (`archive/data/0`).
    pub name: String,
    /// Absolute file offset of the first data byte.
    pub offset: u64,
    /// Data length in bytes.
    pub len: u64,
    /// CRC-32 from the central directory.
    pub crc32: u32,
    /// Compression method (0: stored); the caller refuses compressed data it needs.
    pub method: u16,
}

/// At most this many entries (a 100 000-tensor checkpoint has 100 000 + a few).
const MAX_ENTRIES: u64 = 10_000_000;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Whether `head` starts like a zip archive (a local file header).
pub(crate) fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// Reads the central directory of a zip archive of `file_len` bytes: every entry,
/// checked to lie inside the file (compressed entries are listed, never inflated). `what` names the
/// file in errors.
pub(crate) fn read_entries<R: ReadAt + ?Sized>(
    r: &R,
    file_len: u64,
    what: &str,
) -> Result<Vec<ZipEntry>> {
    let bad = |msg: String| Error::Format {
        path: what.to_string(),
        msg: format!("zip: {msg}"),
    };
    let io = |source: std::io::Error| Error::Io {
        path: what.to_string(),
        source,
    };
    // the end-of-central-directory record is in the last 22 + 65535 bytes
    let tail_len = file_len.min(22 + 65_535);
    if tail_len < 22 {
        return Err(bad(format!("{file_len} bytes is too short for an archive")));
    }
    let tail_start = file_len - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact_at(&mut tail, tail_start).map_err(io)?;
    let eocd = (0..=tail.len() - 22)
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| bad("no end-of-central-directory record (truncated?)".into()))?;
    let mut count = u64::from(le16(&tail, eocd + 10));
    let mut cd_size = u64::from(le32(&tail, eocd + 12));
    let mut cd_off = u64::from(le32(&tail, eocd + 16));
    // zip64: a locator 20 bytes before the record points at the zip64 record
    if eocd >= 20 && tail[eocd - 20..].starts_with(b"PK\x06\x07") {
        let rec = le64(&tail, eocd - 20 + 8);
        let mut z = [0u8; 56];
        if rec.checked_add(56).is_none_or(|e| e > file_len) {
            return Err(bad(format!("zip64 record at {rec} lies outside the file")));
        }
        r.read_exact_at(&mut z, rec).map_err(io)?;
        if !z.starts_with(b"PK\x06\x06") {
            return Err(bad("bad zip64 end-of-central-directory record".into()));
        }
        count = le64(&z, 32);
        cd_size = le64(&z, 40);
        cd_off = le64(&z, 48);
    }
    if count > MAX_ENTRIES || cd_off.checked_add(cd_size).is_none_or(|e| e > file_len) {
        return Err(bad(format!(
            "central directory ({count} entries, {cd_size} bytes at {cd_off}) does not fit the {file_len}-byte file"
        )));
    }
    // 46 bytes per entry at least: the count cannot ask for more than the file holds
    if count.saturating_mul(46) > cd_size {
        return Err(bad(format!(
            "{count} entries cannot fit a {cd_size}-byte central directory"
        )));
    }
    let mut cd = vec![0u8; cd_size as usize];
    r.read_exact_at(&mut cd, cd_off).map_err(io)?;
    let mut out = Vec::with_capacity(count as usize);
    let mut at = 0usize;
    for _ in 0..count {
        let Some(h) = cd.get(at..at + 46) else {
            return Err(bad("central directory ends inside an entry".into()));
        };
        if !h.starts_with(b"PK\x01\x02") {
            return Err(bad(format!(
                "bad central directory entry at {}",
                cd_off + at as u64
            )));
        }
        let method = le16(h, 10);
        let crc32 = le32(h, 16);
        let mut csize = u64::from(le32(h, 20));
        let mut usize_ = u64::from(le32(h, 24));
        let (nlen, xlen, clen) = (
            usize::from(le16(h, 28)),
            usize::from(le16(h, 30)),
            usize::from(le16(h, 32)),
        );
        let mut local = u64::from(le32(h, 42));
        let name_at = at + 46;
        let Some(name) = cd.get(name_at..name_at + nlen) else {
            return Err(bad("entry name runs past the central directory".into()));
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let Some(extra) = cd.get(name_at + nlen..name_at + nlen + xlen) else {
            return Err(bad(format!(
                "entry `{name}`: extra field runs past the directory"
            )));
        };
        zip64_fields(extra, &mut usize_, &mut csize, &mut local);
        at = name_at + nlen + xlen + clen;
        if method == 0 && csize != usize_ {
            return Err(bad(format!(
                "stored entry `{name}` has sizes {csize} and {usize_}"
            )));
        }
        // the local header repeats name and extra (PyTorch pads data to 64 bytes there)
        let mut lh = [0u8; 30];
        if local.checked_add(30).is_none_or(|e| e > file_len) {
            return Err(bad(format!(
                "entry `{name}`: local header at {local} lies outside the file"
            )));
        }
        r.read_exact_at(&mut lh, local).map_err(io)?;
        if !lh.starts_with(b"PK\x03\x04") {
            return Err(bad(format!("entry `{name}`: bad local header at {local}")));
        }
        let offset = local + 30 + u64::from(le16(&lh, 26)) + u64::from(le16(&lh, 28));
        if offset.checked_add(csize).is_none_or(|e| e > file_len) {
            return Err(bad(format!(
                "entry `{name}`: {csize} bytes at {offset} run past the end of the {file_len}-byte file"
            )));
        }
        out.push(ZipEntry {
            name,
            offset,
            len: csize,
            crc32,
            method,
        });
    }
    Ok(out)
}

/// Replaces 0xFFFFFFFF sizes and offset by their zip64 extra-field values.
fn zip64_fields(extra: &[u8], usize_: &mut u64, csize: &mut u64, local: &mut u64) {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let (id, n) = (le16(extra, at), usize::from(le16(extra, at + 2)));
        let body = extra.get(at + 4..at + 4 + n).unwrap_or(&[]);
        if id == 1 {
            let mut p = 0;
            for field in [usize_, csize, local] {
                if *field == 0xFFFF_FFFF && p + 8 <= body.len() {
                    *field = le64(body, p);
                    p += 8;
                }
            }
            return;
        }
        at += 4 + n;
    }
}

/// Writes a zip archive of stored entries, each entry's data aligned to 64 bytes (as
/// `torch.save` does, so PyTorch can memory-map it), zip64 records where sizes need
/// them.
pub(crate) struct ZipWriter<W: std::io::Write> {
    w: W,
    at: u64,
    central: Vec<u8>,
    count: u64,
}

impl<W: std::io::Write> ZipWriter<W> {
    /// A writer at the start of `w`.
    pub(crate) fn new(w: W) -> Self {
        ZipWriter {
            w,
            at: 0,
            central: Vec::new(),
            count: 0,
        }
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        self.at += b.len() as u64;
        Ok(())
    }

    /// Adds one entry made of the concatenation of `parts`.
    pub(crate) fn entry(&mut self, name: &str, parts: &[&[u8]]) -> std::io::Result<()> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let mut h = crc32fast::Hasher::new();
        for p in parts {
            h.update(p);
        }
        let crc = h.finalize();
        let local = self.at;
        let big = len >= 0xFFFF_FFFF || local >= 0xFFFF_FFFF;
        // local extra: zip64 sizes when needed, then padding to align the data
        let mut extra = Vec::new();
        if big {
            extra.extend_from_slice(&1u16.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&len.to_le_bytes());
            extra.extend_from_slice(&len.to_le_bytes());
        }
        let data_at = local + 30 + name.len() as u64 + extra.len() as u64 + 4;
        let pad = (64 - data_at % 64) % 64;
        extra.extend_from_slice(&0x4646u16.to_le_bytes()); // "FF", PyTorch's padding id
        extra.extend_from_slice(&(pad as u16).to_le_bytes());
        extra.resize(extra.len() + pad as usize, b'Z');
        let small = |v: u64| if big { 0xFFFF_FFFF } else { v as u32 };
        let mut lh = Vec::with_capacity(30);
        lh.extend_from_slice(b"PK\x03\x04");
        lh.extend_from_slice(&(if big { 45u16 } else { 20 }).to_le_bytes());
        lh.extend_from_slice(&0u16.to_le_bytes()); // flags
        lh.extend_from_slice(&0u16.to_le_bytes()); // stored
        lh.extend_from_slice(&0u16.to_le_bytes()); // time
        lh.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
        lh.extend_from_slice(&crc.to_le_bytes());
        lh.extend_from_slice(&small(len).to_le_bytes());
        lh.extend_from_slice(&small(len).to_le_bytes());
        lh.extend_from_slice(&(name.len() as u16).to_le_bytes());
        lh.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        self.put(&lh)?;
        self.put(name.as_bytes())?;
        self.put(&extra)?;
        for p in parts {
            self.put(p)?;
        }
        // central directory record
        let mut cx = Vec::new();
        if big {
            cx.extend_from_slice(&1u16.to_le_bytes());
            cx.extend_from_slice(&24u16.to_le_bytes());
            cx.extend_from_slice(&len.to_le_bytes());
            cx.extend_from_slice(&len.to_le_bytes());
            cx.extend_from_slice(&local.to_le_bytes());
        }
        let c = &mut self.central;
        c.extend_from_slice(b"PK\x01\x02");
        c.extend_from_slice(&(if big { 45u16 } else { 20 }).to_le_bytes()); // made by
        c.extend_from_slice(&(if big { 45u16 } else { 20 }).to_le_bytes()); // needed
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0x21u16.to_le_bytes());
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&small(len).to_le_bytes());
        c.extend_from_slice(&small(len).to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&(cx.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0u8; 6]); // comment len, disk, internal attrs
        c.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        c.extend_from_slice(&small(local).to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        c.extend_from_slice(&cx);
        self.count += 1;
        Ok(())
    }

    /// Writes the central directory and the end records; returns the inner writer.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        let cd_off = self.at;
        let cd = std::mem::take(&mut self.central);
        self.put(&cd)?;
        let cd_len = cd.len() as u64;
        let big = cd_off >= 0xFFFF_FFFF || self.count >= 0xFFFF;
        if big {
            let rec = self.at;
            let mut z = Vec::with_capacity(76);
            z.extend_from_slice(b"PK\x06\x06");
            z.extend_from_slice(&44u64.to_le_bytes());
            z.extend_from_slice(&45u16.to_le_bytes());
            z.extend_from_slice(&45u16.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&self.count.to_le_bytes());
            z.extend_from_slice(&self.count.to_le_bytes());
            z.extend_from_slice(&cd_len.to_le_bytes());
            z.extend_from_slice(&cd_off.to_le_bytes());
            z.extend_from_slice(b"PK\x06\x07");
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&rec.to_le_bytes());
            z.extend_from_slice(&1u32.to_le_bytes());
            self.put(&z)?;
        }
        let n16 = if big { 0xFFFF } else { self.count as u16 };
        let mut e = Vec::with_capacity(22);
        e.extend_from_slice(b"PK\x05\x06");
        e.extend_from_slice(&[0u8; 4]);
        e.extend_from_slice(&n16.to_le_bytes());
        e.extend_from_slice(&n16.to_le_bytes());
        e.extend_from_slice(&(if big { 0xFFFF_FFFF } else { cd_len as u32 }).to_le_bytes());
        e.extend_from_slice(&(if big { 0xFFFF_FFFF } else { cd_off as u32 }).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        self.put(&e)?;
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_archives_read_back_aligned_and_checked() -> Result<()> {
        let mut z = ZipWriter::new(Vec::new());
        z.entry("a/data.pkl", &[b"hello"]).map_err(Error::from)?;
        z.entry("a/data/0", &[&[1u8, 2, 3], &[4]])
            .map_err(Error::from)?;
        let bytes = z.finish().map_err(Error::from)?;
        let es = read_entries(bytes.as_slice(), bytes.len() as u64, "mem")?;
        assert_eq!(es.len(), 2);
        assert_eq!(es[1].name, "a/data/0");
        assert_eq!(es[1].offset % 64, 0);
        assert_eq!(&bytes[es[1].offset as usize..][..4], &[1, 2, 3, 4]);
        assert_eq!(es[1].crc32, crc32fast::hash(&[1, 2, 3, 4]));
        // every truncation is an error, never a panic
        for n in 0..bytes.len() {
            assert!(read_entries(&bytes[..n], n as u64, "mem").is_err(), "{n}");
        }
        Ok(())
    }
}
