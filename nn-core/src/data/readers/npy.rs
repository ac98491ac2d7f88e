//! numpy's `.npy` files: [`read_npy`] reads one (f32, f64, i64, i32, u8, bool, f16; C or
//! Fortran order; either byte order), [`write_npy`] writes one, and [`NpyFile`] maps one
//! into memory and serves its rows as a data set, for arrays larger than memory.

use super::bad;
use crate::data::dataset::check_index;
use crate::data::Dataset;
use crate::io::files::FileBytes;
use crate::{DType, HostData, Result, Tensor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest header accepted (numpy's own are under 4 KiB; format 2.0 allows 4 GiB).
const MAX_HEADER: usize = 1 << 20;

/// What an `.npy` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The element type.
    pub dtype: DType,
    /// Whether elements are stored big-endian (`>` in the descr).
    pub big_endian: bool,
    /// Column-major storage (`fortran_order: True`).
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Where the data starts in the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Bytes of data the header claims (`None` on overflow).
    fn data_len(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size_in_bytes(), |a, &d| a.checked_mul(d))
    }
}

/// The value text after `'key':` in a header dict.
fn field<'a>(h: &'a str, key: &str) -> Option<&'a str> {
    let at = h.find(&format!("'{key}'"))? + key.len() + 2;
    Some(h[at..].trim_start().strip_prefix(':')?.trim_start())
}

/// Parses the header at the start of `b` (the whole file or its first bytes).
pub fn parse_header(b: &[u8], path: &Path) -> Result<NpyHeader> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err(bad(path, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let (len, start) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(path, format!("unsupported .npy format version {v}"))),
    };
    if len > MAX_HEADER {
        return Err(bad(
            path,
            format!("header of {len} bytes (at most {MAX_HEADER} accepted)"),
        ));
    }
    let Some(text) = b.get(start..start + len) else {
        return Err(bad(
            path,
            format!("truncated: the {len}-byte header runs past the end of the file"),
        ));
    };
    let h = std::str::from_utf8(text).map_err(|_| bad(path, "the header is not text"))?;
    let descr = field(h, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or_else(|| bad(path, format!("no 'descr' in header {h:?}")))?;
    // (the first char, not byte: a multi-byte one there panicked in `split_at`)
    let (order, code) = descr.split_at(descr.chars().next().map_or(0, char::len_utf8));
    let dtype = match code {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i8" => DType::I64,
        "i4" => DType::I32,
        "u1" => DType::U8,
        "b1" => DType::Bool,
        "f2" => DType::F16,
        _ => {
            return Err(bad(
                path,
                format!("unsupported dtype '{descr}' (f4, f8, i8, i4, u1, b1, f2 are read)"),
            ))
        }
    };
    let big_endian = match order {
        ">" => true,
        "<" | "|" | "=" => false,
        _ => return Err(bad(path, format!("bad dtype '{descr}'"))),
    };
    let fortran_order = match field(h, "fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err(bad(path, format!("no 'fortran_order' in header {h:?}"))),
    };
    let shape_text = field(h, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| bad(path, format!("no 'shape' in header {h:?}")))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(path, format!("bad shape ({shape_text})")))?;
    Ok(NpyHeader {
        dtype,
        big_endian,
        fortran_order,
        shape,
        data_offset: start + len,
    })
}

/// Checks that the file holds exactly the data its header claims; the data bytes.
fn data<'a>(b: &'a [u8], h: &NpyHeader, path: &Path) -> Result<&'a [u8]> {
    let have = b.len().saturating_sub(h.data_offset);
    match h.data_len() {
        Some(n) if n == have => Ok(&b[h.data_offset..]),
        n => Err(bad(
            path,
            format!(
                "the header claims shape {:?} of {} ({} bytes); the file holds {have} data bytes",
                h.shape,
                h.dtype,
                n.map_or("too many".into(), |n| n.to_string())
            ),
        )),
    }
}

/// Host data from the file's element bytes (swapped from big-endian when needed).
fn host(bytes: &[u8], h: &NpyHeader) -> Result<HostData> {
    if !h.big_endian {
        return HostData::from_le_bytes(h.dtype, bytes);
    }
    let sz = h.dtype.size_in_bytes();
    let mut le = bytes.to_vec();
    le.chunks_exact_mut(sz).for_each(<[u8]>::reverse);
    HostData::from_le_bytes(h.dtype, &le)
}

/// Column-major element bytes reordered row-major.
fn fortran_to_c(src: &[u8], shape: &[usize], sz: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    let n = src.len() / sz.max(1);
    let mut stride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        stride[k] = stride[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    let mut off = 0usize;
    for c in 0..n {
        out[c * sz..(c + 1) * sz].copy_from_slice(&src[off * sz..(off + 1) * sz]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            off += stride[k];
            if idx[k] < shape[k] {
                break;
            }
            off -= stride[k] * shape[k];
            idx[k] = 0;
        }
    }
    out
}

/// The array in the bytes of an `.npy` file; `path` names it in errors.
pub fn npy_from_bytes(b: &[u8], path: &Path) -> Result<Tensor> {
    let h = parse_header(b, path)?;
    let d = data(b, &h, path)?;
    let data = if h.fortran_order && h.shape.len() > 1 {
        host(&fortran_to_c(d, &h.shape, h.dtype.size_in_bytes()), &h)?
    } else {
        host(d, &h)?
    };
    Tensor::from_host(data, &h.shape)
}

/// Reads a `.npy` file into a tensor of its dtype and shape (row-major, whatever the
/// file's order).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::readers::{read_npy, write_npy};
/// use nn::Tensor;
/// let path = std::env::temp_dir().join(format!("doc-{}.npy", std::process::id()));
/// write_npy(&path, &Tensor::arange(0, 6).reshape(&[2, 3])?)?;
/// assert_eq!(read_npy(&path)?.to_vec2::<i64>()?, vec![vec![0, 1, 2], vec![3, 4, 5]]);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    npy_from_bytes(FileBytes::open(path)?.bytes(), path)
}

/// The header of an `.npy` file (format 1.0, little-endian, C order) for an array of
/// `dtype` and `shape`: the array's bytes follow it (to stream a large file out).
pub fn npy_header(dtype: DType, shape: &[usize]) -> Result<Vec<u8>> {
    let descr = match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
        DType::F16 => "<f2",
        d => {
            return Err(crate::Error::DType {
                op: "write_npy",
                dtype: d,
                expected: None,
            })
        }
    };
    let shape = match shape {
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // numpy pads the header with spaces and a newline to a multiple of 64 bytes
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

/// The bytes of an `.npy` file (format 1.0, little-endian, C order) holding `t`.
pub fn npy_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let mut out = npy_header(t.dtype(), t.shape())?;
    out.extend_from_slice(&t.to_host()?.le_bytes());
    Ok(out)
}

/// Writes `t` as an `.npy` file numpy reads with `np.load`.
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, npy_bytes(t)?).map_err(|e| crate::Error::io(path, e))
}

/// A memory-mapped C-order `.npy` file whose rows (first-axis slices) are the samples
/// of a data set: only the rows read are copied, and mapped pages are handed back to
/// the OS every [`NpyFile::RELEASE_EVERY`] bytes read, so iterating a file larger than
/// memory keeps a small resident set.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::{readers::{write_npy, NpyFile}, Dataset};
/// use nn::Tensor;
/// let path = std::env::temp_dir().join(format!("doc-map-{}.npy", std::process::id()));
/// write_npy(&path, &Tensor::arange(0, 6).reshape(&[3, 2])?)?;
/// let rows = NpyFile::open(&path)?;
/// assert_eq!((rows.len(), rows.get(2)?.to_vec::<i64>()?), (3, vec![4, 5]));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NpyFile {
    file: FileBytes,
    header: NpyHeader,
    path: PathBuf,
    row_bytes: usize,
    read_since_release: AtomicUsize,
}

impl std::fmt::Debug for NpyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish()
    }
}

impl NpyFile {
    /// Bytes read between two hand-backs of the mapped pages.
    pub const RELEASE_EVERY: usize = 64 << 20;

    /// Maps `path` and checks its header against its size; Fortran-order arrays of
    /// rank > 1 are refused (their rows are not contiguous: read them with [`read_npy`]).
    pub fn open(path: impl AsRef<Path>) -> Result<NpyFile> {
        let path = path.as_ref();
        let file = FileBytes::open(path)?;
        let header = parse_header(file.bytes(), path)?;
        data(file.bytes(), &header, path)?;
        if header.shape.is_empty() {
            return Err(bad(path, "a 0-d array has no rows"));
        }
        if header.fortran_order && header.shape.len() > 1 {
            return Err(bad(
                path,
                "a Fortran-order array has no contiguous rows; read it whole with read_npy",
            ));
        }
        // checked: with a zero first dim the file holds nothing, whatever the other dims
        let row_bytes = header.shape[1..]
            .iter()
            .try_fold(header.dtype.size_in_bytes(), |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                bad(
                    path,
                    format!("a row of shape {:?} overflows", &header.shape[1..]),
                )
            })?;
        Ok(NpyFile {
            file,
            header,
            path: path.to_path_buf(),
            row_bytes,
            read_since_release: AtomicUsize::new(0),
        })
    }

    /// The header (dtype, shape).
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }
}

impl Dataset for NpyFile {
    type Item = Tensor;
    fn len(&self) -> usize {
        self.header.shape[0]
    }
    fn get(&self, index: usize) -> Result<Tensor> {
        check_index("NpyFile::get", index, self.len())?;
        let all = self.file.bytes();
        let at = self.header.data_offset + index * self.row_bytes;
        let t = Tensor::from_host(
            host(&all[at..at + self.row_bytes], &self.header)?,
            &self.header.shape[1..],
        )?;
        let read = self
            .read_since_release
            .fetch_add(self.row_bytes, Ordering::Relaxed);
        if read >= Self::RELEASE_EVERY {
            self.read_since_release.store(0, Ordering::Relaxed);
            self.file.release(all);
        }
        Ok(t)
    }
}
