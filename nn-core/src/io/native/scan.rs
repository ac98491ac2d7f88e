//! What both native versions share: the sequential scanner of a postcard payload (a
//! version-1 payload, a version-2 skeleton) that finds a state dict's tensors without
//! decoding them (and the other values nn writes, to say what a file holds), and the
//! error helpers both versions use.

use crate::io::bytes::{byte_len, dtype_from_str};
use crate::io::tensor_file::Entry;
use crate::Error;

/// A format error about the file `what`, from its message.
pub(super) fn format_error(what: &str) -> impl Fn(String) -> Error + Copy + '_ {
    move |msg| Error::Format {
        path: what.to_string(),
        msg,
    }
}

/// A type name without module paths: `Vec<Tensor>`, `StateDict`, `(Tensor, Tensor)`.
pub(super) fn pretty_type(full: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word.rsplit("::").next().unwrap_or(word));
        word.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Reads a payload sequentially, hashing every byte and never going past its end.
pub(super) struct Scan<R> {
    inner: R,
    pub(super) crc: crc32fast::Hasher,
    pos: u64,
    pub(super) remaining: u64,
    /// A version-2 skeleton: a tensor's data is `(offset, length)`, not the bytes.
    refs: bool,
}

/// The layout of one tensor: dtype, shape, and where its data lies.
pub(super) struct TensorMeta {
    pub(super) dtype: crate::DType,
    pub(super) shape: Vec<usize>,
    pub(super) offset: u64,
    pub(super) len: usize,
}

impl<'a> Scan<&'a [u8]> {
    /// A scanner of a whole payload held in memory (`refs`: a version-2 skeleton).
    pub(super) fn over(body: &'a [u8], refs: bool) -> Self {
        let mut s = Scan::new(body, 0, body.len() as u64);
        s.refs = refs;
        s
    }
}

impl<R: std::io::BufRead> Scan<R> {
    pub(super) fn new(inner: R, pos: u64, remaining: u64) -> Self {
        Scan {
            inner,
            crc: crc32fast::Hasher::new(),
            pos,
            remaining,
            refs: false,
        }
    }

    /// A scanner of a version-2 skeleton.
    pub(super) fn refs(inner: R, remaining: u64) -> Self {
        let mut s = Self::new(inner, 0, remaining);
        s.refs = true;
        s
    }

    fn eof() -> String {
        "unexpected end of payload (truncated or damaged file)".into()
    }

    fn byte(&mut self) -> std::result::Result<u8, String> {
        let mut b = 0;
        self.skip(1, |c| b = c.first().copied().unwrap_or(0))?;
        Ok(b)
    }

    /// A LEB128 varint (postcard's encoding of lengths and usizes).
    pub(super) fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err("varint overflows 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn length(&mut self) -> std::result::Result<usize, String> {
        let n = self.varint()?;
        if n > self.remaining {
            return Err(format!(
                "a length of {n} exceeds the {} bytes left in the file",
                self.remaining
            ));
        }
        usize::try_from(n).map_err(|_| format!("length {n} too large"))
    }

    pub(super) fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.length()?;
        let mut v = Vec::with_capacity(n);
        self.skip(n, |b| v.extend_from_slice(b))?;
        String::from_utf8(v).map_err(|_| "a name is not valid UTF-8".to_string())
    }

    /// Passes `n` bytes through `sink` (and the hash) chunk by chunk.
    fn skip(
        &mut self,
        mut n: usize,
        mut sink: impl FnMut(&[u8]),
    ) -> std::result::Result<(), String> {
        while n > 0 {
            if self.remaining == 0 {
                return Err(Self::eof());
            }
            let buf = self.inner.fill_buf().map_err(|e| e.to_string())?;
            let k = buf.len().min(n);
            let Some(chunk) = buf.get(..k).filter(|c| !c.is_empty()) else {
                return Err(Self::eof());
            };
            sink(chunk);
            self.crc.update(chunk);
            self.inner.consume(k);
            self.pos += k as u64;
            self.remaining -= k as u64;
            n -= k;
        }
        Ok(())
    }

    /// Hashes whatever the parser left unread, so the checksum covers the whole payload
    /// even when parsing stopped early.
    pub(super) fn drain(&mut self) -> std::result::Result<(), String> {
        while self.remaining > 0 {
            let k = usize::try_from(self.remaining.min(1 << 30)).unwrap_or(1 << 30);
            self.skip(k, |_| {})?;
        }
        Ok(())
    }

    /// One tensor as the serde impl writes it: dtype name, shape, data bytes (skipped).
    pub(super) fn tensor(&mut self, name: &str) -> std::result::Result<TensorMeta, String> {
        let dt = self.string()?;
        let dtype = dtype_from_str(&dt).ok_or_else(|| format!("`{name}`: unknown dtype `{dt}`"))?;
        let rank = self.length()?;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = self.varint()?;
            shape.push(usize::try_from(d).map_err(|_| format!("`{name}`: dim {d} too large"))?);
        }
        if self.refs {
            let (offset, len) = (self.varint()?, self.varint()?);
            let need = byte_len(dtype, &shape);
            if need.map(|n| n as u64) != Some(len) {
                return Err(format!(
                    "`{name}`: {len} data bytes for a {dtype} tensor of shape {shape:?}"
                ));
            }
            let len = usize::try_from(len).map_err(|_| format!("`{name}`: too large"))?;
            return Ok(TensorMeta {
                dtype,
                shape,
                offset,
                len,
            });
        }
        let len = self.length()?;
        let need = byte_len(dtype, &shape);
        if need != Some(len) {
            return Err(format!(
                "`{name}`: {len} data bytes for a {dtype} tensor of shape {shape:?}"
            ));
        }
        let offset = self.pos;
        self.skip(len, |_| {})?;
        Ok(TensorMeta {
            dtype,
            shape,
            offset,
            len,
        })
    }

    /// A state dict: a count, then (name, tensor) pairs with distinct names, and
    /// nothing after it.
    pub(super) fn state_dict(&mut self) -> std::result::Result<Vec<Entry>, String> {
        let entries = self.entries()?;
        self.end()?;
        Ok(entries)
    }

    /// A state dict's count and (name, tensor) pairs, more may follow.
    pub(super) fn entries(&mut self) -> std::result::Result<Vec<Entry>, String> {
        let count = self.varint()?;
        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::new();
        for _ in 0..count {
            let name = self.string()?;
            let t = self.tensor(&name)?;
            if !seen.insert(name.clone()) {
                return Err(format!("duplicate key `{name}`"));
            }
            entries.push(Entry {
                name,
                dtype: t.dtype,
                shape: t.shape,
                offset: t.offset,
                len: t.len,
                strides: None,
            });
        }
        Ok(entries)
    }

    pub(super) fn end(&self) -> std::result::Result<(), String> {
        if self.remaining != 0 {
            return Err(format!(
                "{} unexpected bytes after the payload",
                self.remaining
            ));
        }
        Ok(())
    }
}
