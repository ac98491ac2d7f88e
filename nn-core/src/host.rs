//! `HostData`: a tensor's elements in host memory, the neutral currency between nn-core
//! and every backend (uploads, downloads, files, `to_vec`).

use crate::{DType, Error, Result};
use std::borrow::Cow;

/// Contiguous row-major elements of one dtype in host memory.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    /// f32 elements.
    F32(Vec<f32>),
    /// i64 elements.
    I64(Vec<i64>),
}

/// A vector of `n` copies of `v`, or [`Error::OutOfMemory`] naming `op` when the
/// allocation fails (sizes come from user input: an abort is not an answer).
pub(crate) fn try_filled<T: Clone>(n: usize, v: T, op: &'static str) -> Result<Vec<T>> {
    let mut out = try_with_capacity(n, op)?;
    out.resize(n, v);
    Ok(out)
}

/// An empty vector with room for `n` elements, or [`Error::OutOfMemory`] naming `op`.
pub(crate) fn try_with_capacity<T>(n: usize, op: &'static str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        bytes: (n as u128) * (std::mem::size_of::<T>() as u128),
        op,
    })?;
    Ok(out)
}

/// Collects an exact-size iterator into a vector allocated fallibly.
pub(crate) fn try_collect<T>(
    it: impl ExactSizeIterator<Item = T>,
    op: &'static str,
) -> Result<Vec<T>> {
    let mut out = try_with_capacity(it.len(), op)?;
    out.extend(it);
    Ok(out)
}

impl HostData {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::I64(_) => DType::I64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zeros of a dtype, or [`Error::OutOfMemory`] when `len` elements cannot be allocated.
    pub fn zeros(len: usize, dtype: DType) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => HostData::F32(try_filled(len, 0.0, "zeros")?),
            DType::I64 => HostData::I64(try_filled(len, 0, "zeros")?),
        })
    }

    /// The f32 data, or a dtype error naming `op`.
    pub fn f32s(&self, op: &'static str) -> Result<&[f32]> {
        match self {
            HostData::F32(v) => Ok(v),
            HostData::I64(_) => Err(Error::DType {
                op,
                dtype: DType::I64,
                expected: Some(DType::F32),
            }),
        }
    }

    /// The i64 data, or a dtype error naming `op`.
    pub fn i64s(&self, op: &'static str) -> Result<&[i64]> {
        match self {
            HostData::I64(v) => Ok(v),
            HostData::F32(_) => Err(Error::DType {
                op,
                dtype: DType::F32,
                expected: Some(DType::I64),
            }),
        }
    }

    /// The elements as little-endian bytes: borrowed on little-endian hosts (no copy).
    pub fn le_bytes(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            match self {
                HostData::F32(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
                HostData::I64(v) => Cow::Borrowed(bytemuck::cast_slice(v)),
            }
        } else {
            Cow::Owned(self.to_le_bytes())
        }
    }

    /// The elements' memory as bytes to overwrite in place (native byte order).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            HostData::F32(v) => bytemuck::cast_slice_mut(v),
            HostData::I64(v) => bytemuck::cast_slice_mut(v),
        }
    }

    /// The raw little-endian bytes of the elements (a copy).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            HostData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Rebuilds host data from little-endian bytes; the length must be a multiple of the
    /// element size. One allocation and one `memcpy` on little-endian hosts.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Result<Self> {
        let sz = dtype.size_in_bytes();
        if bytes.len() % sz != 0 {
            return Err(Error::bad_shape(
                "from_le_bytes",
                &[bytes.len()],
                format!("byte count is not a whole number of {dtype} elements"),
            ));
        }
        let n = bytes.len() / sz;
        let mut out = HostData::zeros(n, dtype)?;
        if cfg!(target_endian = "little") {
            out.bytes_mut().copy_from_slice(bytes);
            return Ok(out);
        }
        match &mut out {
            HostData::F32(v) => {
                for (x, c) in v.iter_mut().zip(bytes.chunks_exact(4)) {
                    *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            HostData::I64(v) => {
                for (x, c) in v.iter_mut().zip(bytes.chunks_exact(8)) {
                    *x = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                }
            }
        }
        Ok(out)
    }
}
