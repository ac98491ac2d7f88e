//! `HostData`: a tensor's elements in host memory, the neutral currency between nn-core
//! and every backend (uploads, downloads, files, `to_vec`).

use crate::{DType, Error, Result};
use std::borrow::Cow;

pub(crate) mod pool;

/// Contiguous row-major elements of one dtype in host memory.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    /// f32 elements.
    F32(Vec<f32>),
    /// i64 elements.
    I64(Vec<i64>),
    /// f16 elements (storage only).
    F16(Vec<half::f16>),
    /// bf16 elements (storage only).
    BF16(Vec<half::bf16>),
    /// f64 elements (storage only).
    F64(Vec<f64>),
    /// i32 elements (storage only).
    I32(Vec<i32>),
    /// u8 elements (storage only).
    U8(Vec<u8>),
    /// bool elements, one byte each: 0 is false, 1 is true (storage only). Readers
    /// turn any nonzero byte into 1.
    Bool(Vec<u8>),
}

/// Applies `$body` to the vector inside any [`HostData`] variant.
macro_rules! each {
    ($h:expr, $v:ident => $body:expr) => {
        match $h {
            HostData::F32($v) => $body,
            HostData::I64($v) => $body,
            HostData::F16($v) => $body,
            HostData::BF16($v) => $body,
            HostData::F64($v) => $body,
            HostData::I32($v) => $body,
            HostData::U8($v) => $body,
            HostData::Bool($v) => $body,
        }
    };
}

/// A vector of `n` copies of `v`, or [`Error::OutOfMemory`] naming `op` when the
/// allocation fails (sizes come from user input: an abort is not an answer).
pub(crate) fn try_filled<T: Clone + 'static>(n: usize, v: T, op: &'static str) -> Result<Vec<T>> {
    let mut out = try_with_capacity(n, op)?;
    out.resize(n, v);
    Ok(out)
}

/// An empty vector with room for `n` elements, or [`Error::OutOfMemory`] naming `op`.
/// An f32 vector comes from this thread's cache of freed buffers when it holds one of
/// that size ([`pool`]).
pub(crate) fn try_with_capacity<T: 'static>(n: usize, op: &'static str) -> Result<Vec<T>> {
    // the cache holds f32 buffers only: for `T = f32` the slot is filled from it
    let mut slot: Option<Vec<T>> = None;
    if let Some(f32_slot) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Vec<f32>>>()
    {
        *f32_slot = pool::take(n);
    }
    if let Some(v) = slot {
        return Ok(v);
    }
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        bytes: (n as u128) * (std::mem::size_of::<T>() as u128),
        op,
    })?;
    Ok(out)
}

/// Collects an exact-size iterator into a vector allocated fallibly.
pub(crate) fn try_collect<T: 'static>(
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
            HostData::F16(_) => DType::F16,
            HostData::BF16(_) => DType::BF16,
            HostData::F64(_) => DType::F64,
            HostData::I32(_) => DType::I32,
            HostData::U8(_) => DType::U8,
            HostData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each!(self, v => v.len())
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
            DType::F16 => HostData::F16(try_filled(len, half::f16::ZERO, "zeros")?),
            DType::BF16 => HostData::BF16(try_filled(len, half::bf16::ZERO, "zeros")?),
            DType::F64 => HostData::F64(try_filled(len, 0.0, "zeros")?),
            DType::I32 => HostData::I32(try_filled(len, 0, "zeros")?),
            DType::U8 => HostData::U8(try_filled(len, 0, "zeros")?),
            DType::Bool => HostData::Bool(try_filled(len, 0, "zeros")?),
        })
    }

    /// The f32 data, or a dtype error naming `op`.
    pub fn f32s(&self, op: &'static str) -> Result<&[f32]> {
        match self {
            HostData::F32(v) => Ok(v),
            other => Err(Error::DType {
                op,
                dtype: other.dtype(),
                expected: Some(DType::F32),
            }),
        }
    }

    /// The i64 data, or a dtype error naming `op`.
    pub fn i64s(&self, op: &'static str) -> Result<&[i64]> {
        match self {
            HostData::I64(v) => Ok(v),
            other => Err(Error::DType {
                op,
                dtype: other.dtype(),
                expected: Some(DType::I64),
            }),
        }
    }

    /// The elements as little-endian bytes: borrowed on little-endian hosts (no copy).
    pub fn le_bytes(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            each!(self, v => Cow::Borrowed(bytemuck::cast_slice(v)))
        } else {
            Cow::Owned(self.to_le_bytes())
        }
    }

    /// The elements' memory as bytes to overwrite in place (native byte order).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        each!(self, v => bytemuck::cast_slice_mut(v))
    }

    /// The raw little-endian bytes of the elements (a copy).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        each!(self, v => v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// Rebuilds host data from little-endian bytes; the length must be a multiple of the
    /// element size. One allocation and one `memcpy` on little-endian hosts.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Result<Self> {
        let sz = dtype.size_in_bytes();
        if !bytes.len().is_multiple_of(sz) {
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
            out.normalize_bools();
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
            other => {
                // every remaining element type reads one little-endian chunk the same way
                other.bytes_mut().copy_from_slice(bytes);
                other.swap_to_native();
                other.normalize_bools();
            }
        }
        Ok(out)
    }
}

/// One element on its way between dtypes: integers stay exact, floats go through f64.
#[derive(Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
    fn i64(self) -> i64 {
        match self {
            Num::I(i) => i,
            Num::F(f) => f as i64,
        }
    }
    fn truth(self) -> u8 {
        match self {
            Num::I(i) => u8::from(i != 0),
            Num::F(f) => u8::from(f != 0.0),
        }
    }
}

impl HostData {
    /// Turns any nonzero byte of bool data into 1 (files may hold other truthy bytes).
    pub(crate) fn normalize_bools(&mut self) {
        if let HostData::Bool(v) = self {
            for b in v.iter_mut() {
                *b = u8::from(*b != 0);
            }
        }
    }

    /// Reverses each element's bytes on big-endian hosts (data copied from LE bytes).
    fn swap_to_native(&mut self) {
        if cfg!(target_endian = "little") {
            return;
        }
        let sz = self.dtype().size_in_bytes();
        for c in self.bytes_mut().chunks_exact_mut(sz) {
            c.reverse();
        }
    }

    fn nums(&self) -> Box<dyn ExactSizeIterator<Item = Num> + '_> {
        match self {
            HostData::F32(v) => Box::new(v.iter().map(|&x| Num::F(f64::from(x)))),
            HostData::I64(v) => Box::new(v.iter().map(|&x| Num::I(x))),
            HostData::F16(v) => Box::new(v.iter().map(|&x| Num::F(x.to_f64()))),
            HostData::BF16(v) => Box::new(v.iter().map(|&x| Num::F(x.to_f64()))),
            HostData::F64(v) => Box::new(v.iter().map(|&x| Num::F(x))),
            HostData::I32(v) => Box::new(v.iter().map(|&x| Num::I(i64::from(x)))),
            HostData::U8(v) | HostData::Bool(v) => {
                Box::new(v.iter().map(|&x| Num::I(i64::from(x))))
            }
        }
    }

    /// The same elements converted to `dtype`, a new vector: floats round to nearest
    /// (f32 to f16/bf16 as PyTorch's `.half()` / `.bfloat16()`), float to integer
    /// truncates toward zero and saturates (Rust's `as`; to u8 through i64, so -3.0
    /// wraps to 253 as in PyTorch), integers wrap when narrowed (as PyTorch's
    /// `.to(torch.uint8)`), anything nonzero is `true`.
    pub fn to_dtype(&self, dtype: DType) -> Result<HostData> {
        const OP: &str = "to_dtype";
        use half::{bf16, f16};
        // the common conversions without the per-element dispatch of the general path
        match (self, dtype) {
            (HostData::F16(v), DType::F32) => {
                return Ok(HostData::F32(try_collect(
                    v.iter().map(|x| x.to_f32()),
                    OP,
                )?))
            }
            (HostData::BF16(v), DType::F32) => {
                return Ok(HostData::F32(try_collect(
                    v.iter().map(|x| x.to_f32()),
                    OP,
                )?))
            }
            (HostData::F32(v), DType::F16) => {
                return Ok(HostData::F16(try_collect(
                    v.iter().map(|&x| f16::from_f32(x)),
                    OP,
                )?))
            }
            (HostData::F32(v), DType::BF16) => {
                return Ok(HostData::BF16(try_collect(
                    v.iter().map(|&x| bf16::from_f32(x)),
                    OP,
                )?))
            }
            (HostData::F32(v), DType::F32) => {
                return Ok(HostData::F32(try_collect(v.iter().copied(), OP)?))
            }
            (HostData::F32(v), DType::I64) => {
                return Ok(HostData::I64(try_collect(v.iter().map(|&x| x as i64), OP)?))
            }
            (HostData::I64(v), DType::F32) => {
                return Ok(HostData::F32(try_collect(v.iter().map(|&x| x as f32), OP)?))
            }
            _ => {}
        }
        let it = self.nums();
        Ok(match dtype {
            DType::F32 => HostData::F32(try_collect(it.map(|n| n.f64() as f32), OP)?),
            DType::F64 => HostData::F64(try_collect(it.map(Num::f64), OP)?),
            DType::F16 => HostData::F16(try_collect(it.map(|n| f16::from_f64(n.f64())), OP)?),
            DType::BF16 => HostData::BF16(try_collect(it.map(|n| bf16::from_f64(n.f64())), OP)?),
            DType::I64 => HostData::I64(try_collect(it.map(Num::i64), OP)?),
            DType::I32 => HostData::I32(try_collect(
                it.map(|n| match n {
                    Num::I(i) => i as i32,
                    Num::F(f) => f as i32,
                }),
                OP,
            )?),
            DType::U8 => HostData::U8(try_collect(
                it.map(|n| match n {
                    Num::I(i) => i as u8,
                    // through i64, as torch on x86 (-3.0 becomes 253)
                    Num::F(f) => f as i64 as u8,
                }),
                OP,
            )?),
            DType::Bool => HostData::Bool(try_collect(it.map(Num::truth), OP)?),
        })
    }
}
