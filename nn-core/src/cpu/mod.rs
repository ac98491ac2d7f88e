//! The CPU backend: contiguous host vectors ([`HostData`]) or f32/i64 elements borrowed
//! from a file mapping (copied out when first written), with matrix products on the
//! `gemm` and `matrixmultiply` crates (every core for large products).
//!
//! Each trait method validates its arguments first (module `check`); the loops in
//! `elementwise`, `reduce`, `copy` and `matmul` then index only in bounds, and every
//! output whose size comes from user input is allocated fallibly (`OutOfMemory`).

mod attention;
mod batch_norm;
mod check;
mod conv;
mod copy;
mod denormal;
mod direct;
mod dispatch;
mod elementwise;
mod im2col;
mod loss;
mod matmul;
mod optim;
pub(crate) mod par;
pub mod pool;
mod reduce;
mod rowwise;
mod small_gemm;
#[cfg(test)]
mod test_util;
mod winograd;

#[cfg(test)]
mod tests;

pub use denormal::{flush_denormal, set_flush_denormal};

use crate::backend::{
    AdamStep, AttentionSpec, BackendStorage, BatchNormGrads, BatchNormOperands, BatchNormSpec,
    BinaryOp, Conv2dGrads, Conv2dSpec, Im2ColSpec, LayerNormGrads, MatmulSpec, OptimStep, ReduceOp,
    SgdStep, Storage, UnaryOp,
};
use crate::{DType, Device, Error, HostData, Result};
use std::any::Any;
use std::sync::Arc;

/// Host storage of one tensor: the CPU backend's [`BackendStorage`]. Its elements are
/// host vectors ([`HostData`]), or f32/i64 elements borrowed from a read-only memory
/// mapping of a file (a load with [`crate::io::LoadOptions::mmap`]), copied into a vector
/// the first time they are written (copy-on-write).
#[derive(Debug, Clone)]
pub struct CpuStorage {
    /// The elements, unless `mapped` holds them (then this is empty).
    host: HostData,
    mapped: Option<Mapped>,
}

/// Elements borrowed from a file mapping: `len` elements of `dtype` (f32 or i64) at byte
/// `start`, checked at creation to lie inside the mapping and be aligned for `dtype`.
#[derive(Debug, Clone)]
struct Mapped {
    map: Arc<memmap2::Mmap>,
    start: usize,
    len: usize,
    dtype: DType,
}

/// A CPU storage's elements, borrowed: the compute dtypes as slices, the storage-only
/// ones as the host data holding them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum View<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
    Other(&'a HostData),
}

impl<'a> View<'a> {
    #[inline]
    fn of(h: &'a HostData) -> View<'a> {
        match h {
            HostData::F32(v) => View::F32(v),
            HostData::I64(v) => View::I64(v),
            other => View::Other(other),
        }
    }
    fn dtype(self) -> DType {
        match self {
            View::F32(_) => DType::F32,
            View::I64(_) => DType::I64,
            View::Other(h) => h.dtype(),
        }
    }
    fn len(self) -> usize {
        match self {
            View::F32(v) => v.len(),
            View::I64(v) => v.len(),
            View::Other(h) => h.len(),
        }
    }
    fn f32s(self, op: &'static str) -> Result<&'a [f32]> {
        match self {
            View::F32(v) => Ok(v),
            other => Err(dtype_err(op, other.dtype(), DType::F32)),
        }
    }
    fn i64s(self, op: &'static str) -> Result<&'a [i64]> {
        match self {
            View::I64(v) => Ok(v),
            other => Err(dtype_err(op, other.dtype(), DType::I64)),
        }
    }
    /// An owned copy (allocated fallibly).
    fn to_owned(self) -> Result<HostData> {
        use crate::host::try_collect;
        Ok(match self {
            View::F32(v) => HostData::F32(try_collect(v.iter().copied(), "copy")?),
            View::I64(v) => HostData::I64(try_collect(v.iter().copied(), "copy")?),
            View::Other(h) => h.to_dtype(h.dtype())?,
        })
    }
}

impl Mapped {
    /// The borrowed bytes (`mapped` checked that they lie inside the mapping).
    fn bytes(&self) -> &[u8] {
        let end = self.start + self.len * self.dtype.size_in_bytes();
        self.map.get(self.start..end).unwrap_or_default()
    }

    #[inline(never)]
    fn view(&self) -> View<'_> {
        let bytes = self.bytes();
        // `mapped` checked range and alignment, so the casts succeed; were they to fail,
        // the empty slice is refused by every op's length check
        match self.dtype {
            DType::I64 => View::I64(bytemuck::try_cast_slice(bytes).unwrap_or_default()),
            _ => View::F32(bytemuck::try_cast_slice(bytes).unwrap_or_default()),
        }
    }
}

/// A storage whose `len` elements of `dtype` are the bytes of `map` at `start`, borrowed
/// (no copy), or `None` where borrowing cannot work and the caller copies: a dtype other
/// than f32 or i64 (bools must be normalized, the storage-only dtypes are converted
/// anyway), a range outside the mapping, bytes not aligned for the dtype, or a big-endian
/// host (files are little-endian).
pub(crate) fn mapped(
    map: &Arc<memmap2::Mmap>,
    start: usize,
    len: usize,
    dtype: DType,
) -> Option<Storage> {
    if cfg!(target_endian = "big") || !matches!(dtype, DType::F32 | DType::I64) {
        return None;
    }
    let end = len.checked_mul(dtype.size_in_bytes())?.checked_add(start)?;
    let bytes = map.get(start..end)?;
    if bytes.as_ptr().align_offset(dtype.size_in_bytes()) != 0 {
        return None;
    }
    Some(Arc::new(CpuStorage {
        host: HostData::F32(Vec::new()),
        mapped: Some(Mapped {
            map: Arc::clone(map),
            start,
            len,
            dtype,
        }),
    }))
}

impl PartialEq for CpuStorage {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl CpuStorage {
    /// Wraps host data.
    pub fn new(data: HostData) -> Self {
        CpuStorage {
            host: data,
            mapped: None,
        }
    }

    /// The host data, or `None` while the elements are borrowed from a file mapping
    /// ([`BackendStorage::to_host`] copies them out).
    pub fn data(&self) -> Option<&HostData> {
        self.mapped.is_none().then_some(&self.host)
    }

    /// The f32 elements, wherever they live; `None` for other dtypes.
    pub fn f32s(&self) -> Option<&[f32]> {
        match self.view() {
            View::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the elements are borrowed from a file mapping (not yet written).
    pub fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }

    /// Takes the host data out (a mapped storage's elements are copied).
    pub fn into_data(mut self) -> Result<HostData> {
        match self.mapped.take() {
            None => Ok(std::mem::replace(&mut self.host, HostData::F32(Vec::new()))),
            Some(m) => m.view().to_owned(),
        }
    }

    // inlined into every op: host data is one branch and a match; the mapped case is
    // out of line
    #[inline]
    fn view(&self) -> View<'_> {
        match &self.mapped {
            None => View::of(&self.host),
            Some(m) => m.view(),
        }
    }

    /// The host data for writing: a mapped storage's elements are copied first.
    fn host_mut(&mut self) -> Result<&mut HostData> {
        if let Some(m) = &self.mapped {
            self.host = m.view().to_owned()?;
            self.mapped = None;
        }
        Ok(&mut self.host)
    }
}

impl Drop for CpuStorage {
    /// An f32 buffer goes back to this thread's cache of host buffers ([`pool`]) for
    /// the next tensor of its size.
    fn drop(&mut self) {
        if let HostData::F32(v) = &mut self.host {
            crate::host::pool::give(std::mem::take(v));
        }
    }
}

/// Host data as a CPU storage handle (how [`Device::upload`] reaches the CPU backend).
pub(crate) fn storage(data: HostData) -> Storage {
    Arc::new(CpuStorage::new(data))
}

fn out(data: HostData) -> Result<Storage> {
    Ok(storage(data))
}

/// Downcasts a storage handle of another operand to the CPU, or reports a device mismatch.
fn cpu<'a>(op: &'static str, s: &'a dyn BackendStorage) -> Result<View<'a>> {
    match s.as_any().downcast_ref::<CpuStorage>() {
        Some(c) => Ok(c.view()),
        None => Err(mismatch(op, s)),
    }
}

/// Like [`cpu`], for an operand updated in place (copied first when it is mapped).
fn cpu_mut<'a>(op: &'static str, s: &'a mut dyn BackendStorage) -> Result<&'a mut HostData> {
    let dev = s.device().to_string();
    match s.as_any_mut().downcast_mut::<CpuStorage>() {
        Some(c) => c.host_mut(),
        None => Err(Error::DeviceMismatch {
            op,
            lhs: "cpu".into(),
            rhs: dev,
        }),
    }
}

fn mismatch(op: &'static str, s: &dyn BackendStorage) -> Error {
    Error::DeviceMismatch {
        op,
        lhs: "cpu".into(),
        rhs: s.device().to_string(),
    }
}

fn dtype_err(op: &'static str, got: DType, want: DType) -> Error {
    if !got.is_compute() {
        return Error::StorageOnly { op, dtype: got };
    }
    Error::DType {
        op,
        dtype: got,
        expected: Some(want),
    }
}

fn f32s_mut<'a>(op: &'static str, h: &'a mut HostData) -> Result<&'a mut [f32]> {
    match h {
        HostData::F32(v) => Ok(v),
        HostData::I64(_) => Err(dtype_err(op, DType::I64, DType::F32)),
        other => Err(storage_only(op, View::of(other))),
    }
}

fn storage_only(op: &'static str, v: View<'_>) -> Error {
    Error::StorageOnly {
        op,
        dtype: v.dtype(),
    }
}

/// Whether `t`'s elements are borrowed from a file mapping (a CPU tensor not yet
/// written); `false` for every other storage. For io's mapping tests, so that
/// `CpuStorage` stays inside the CPU backend.
#[cfg(test)]
pub(crate) fn is_mapped(t: &crate::Tensor) -> bool {
    t.storage()
        .as_any()
        .downcast_ref::<CpuStorage>()
        .is_some_and(CpuStorage::is_mapped)
}
