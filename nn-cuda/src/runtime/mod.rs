//! The runtime seam: everything nn-cuda asks of a CUDA driver (memory, copies, kernel
//! launches, GEMM, synchronization), behind one small trait with two implementations;
//! the NCCL collectives likewise behind [`comm::Collectives`].
//!
//! - [`cuda::CudaRt`] drives a GPU through cudarc. It is the only runtime a user's
//!   `nn_cuda::device(..)` gets.
//! - `host::HostRt` (feature `host-runtime`, for nn's own tests only) executes the same
//!   kernel sources compiled as C++ for the CPU, one fiber per CUDA thread, with
//!   bounds-checked buffers, and answers GEMMs with a reference column-major SGEMM. It
//!   lets CI run every launch nn-cuda makes without a GPU.
//!
//! Layering (no import circle): `runtime` -> `kernels` -> `storage` -> `device`.

#[cfg(any(feature = "nccl", feature = "host-runtime"))]
pub(crate) mod comm;
pub(crate) mod cuda;
#[cfg(feature = "host-runtime")]
pub(crate) mod host;
#[cfg(feature = "nccl")]
pub(crate) mod nccl;

use crate::compile::KernelModule;
#[cfg(feature = "host-runtime")]
use crate::error::Error;
use crate::error::Result;
use crate::layout::{Im2ColLayout, Layout3, RedLayout};
#[cfg(any(feature = "nccl", feature = "host-runtime"))]
use comm::{Collectives, CommElem, RedOp};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};

/// Element types stored on the device.
pub(crate) trait Elem: DeviceRepr + ValidAsZeroBits + Copy + Send + Sync + 'static {
    #[cfg(feature = "host-runtime")]
    /// A value no kernel computes by accident: fresh host-runtime buffers are filled with
    /// it, so an output element a kernel forgot to write shows in the results.
    const POISON: Self;
    /// `b` from element `off` on, as a read-only kernel argument.
    fn arg(b: &DevBuf<Self>, off: usize) -> Arg<'_>;
    /// `b` from element `off` on, as a kernel argument the kernel writes.
    fn arg_mut(b: &mut DevBuf<Self>, off: usize) -> Arg<'_>;
}
impl Elem for f32 {
    #[cfg(feature = "host-runtime")]
    const POISON: f32 = f32::from_bits(0x7fc0_dead);
    fn arg(b: &DevBuf<f32>, off: usize) -> Arg<'_> {
        Arg::F32s(b, off)
    }
    fn arg_mut(b: &mut DevBuf<f32>, off: usize) -> Arg<'_> {
        Arg::F32sMut(b, off)
    }
}
impl Elem for i64 {
    #[cfg(feature = "host-runtime")]
    const POISON: i64 = 0x5a5a_5a5a_5a5a_5a5a;
    fn arg(b: &DevBuf<i64>, off: usize) -> Arg<'_> {
        Arg::I64s(b, off)
    }
    fn arg_mut(b: &mut DevBuf<i64>, off: usize) -> Arg<'_> {
        Arg::I64sMut(b, off)
    }
}

/// A device buffer of one runtime (allocated with at least one element, as on CUDA,
/// where zero-byte allocations fail on some drivers).
pub(crate) enum DevBuf<T: Elem> {
    /// Memory on a GPU.
    Cuda(CudaSlice<T>),
    /// Host memory standing in for device memory (the test runtime).
    #[cfg(feature = "host-runtime")]
    Host(host::HostBuf<T>),
}

impl<T: Elem> DevBuf<T> {
    /// Number of elements allocated.
    pub(crate) fn len(&self) -> usize {
        match self {
            DevBuf::Cuda(s) => s.len(),
            #[cfg(feature = "host-runtime")]
            DevBuf::Host(h) => h.len(),
        }
    }
}

/// Grid, block and dynamic shared memory of one launch (CUDA's `<<<grid, block, smem>>>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Launch {
    /// Blocks per grid (x, y, z).
    pub grid: (u32, u32, u32),
    /// Threads per block (x, y, z).
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_mem_bytes: u32,
}

/// One kernel argument, in the kernel's parameter order. Buffers carry an element
/// offset (the kernel sees the buffer from that element on).
pub(crate) enum Arg<'a> {
    /// `u64`.
    U64(u64),
    /// `int`.
    I32(i32),
    /// `i64` (`long long`).
    I64(i64),
    /// `float`.
    F32(f32),
    /// `Layout3` by value.
    Layout3(&'a Layout3),
    /// `RedLayout` by value.
    Red(&'a RedLayout),
    /// `Im2ColLayout` by value.
    Im2Col(&'a Im2ColLayout),
    /// `const float*` (read only).
    F32s(&'a DevBuf<f32>, usize),
    /// `const i64*` (read only).
    I64s(&'a DevBuf<i64>, usize),
    /// `float*` written by the kernel.
    F32sMut(&'a mut DevBuf<f32>, usize),
    /// `i64*` written by the kernel.
    I64sMut(&'a mut DevBuf<i64>, usize),
}

/// One column-major SGEMM (or a strided batch of them), `C = op(A) op(B) + beta C` with
/// alpha 1 and beta 0 or 1: exactly the arguments of `cublasSgemmStridedBatched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gemm {
    /// `op(A)` is `Aᵀ`.
    pub transa: bool,
    /// `op(B)` is `Bᵀ`.
    pub transb: bool,
    /// Rows of `op(A)` and `C`.
    pub m: i32,
    /// Columns of `op(B)` and `C`.
    pub n: i32,
    /// Columns of `op(A)`, rows of `op(B)`.
    pub k: i32,
    /// Leading dimension of A.
    pub lda: i32,
    /// Leading dimension of B.
    pub ldb: i32,
    /// Leading dimension of C.
    pub ldc: i32,
    /// Number of products (1: a plain `cublasSgemm`).
    pub batch: i32,
    /// Elements between consecutive A matrices.
    pub stride_a: i64,
    /// Elements between consecutive B matrices.
    pub stride_b: i64,
    /// Elements between consecutive C matrices.
    pub stride_c: i64,
    /// Beta 1 (add to what C holds) instead of 0 (overwrite C).
    pub accumulate: bool,
}

/// What the crate asks of a CUDA driver. Buffers of another runtime are an error.
pub(crate) trait Driver {
    /// `n` elements (at least one allocated), zero-filled when `zeroed`, otherwise with
    /// unspecified contents the caller overwrites before reading.
    fn alloc<T: Elem>(&self, n: usize, zeroed: bool) -> Result<DevBuf<T>>;
    /// A new buffer holding `src` (at least one element allocated).
    fn htod<T: Elem>(&self, src: &[T]) -> Result<DevBuf<T>>;
    /// `dst[offset..offset + src.len()] = src`.
    fn write<T: Elem>(&self, dst: &mut DevBuf<T>, offset: usize, src: &[T]) -> Result<()>;
    /// The first `len` elements, copied to the host.
    fn dtoh<T: Elem>(&self, src: &DevBuf<T>, len: usize) -> Result<Vec<T>>;
    /// A device-to-device copy of the whole buffer.
    fn dtod<T: Elem>(&self, src: &DevBuf<T>) -> Result<DevBuf<T>>;
    /// Launches `kernel` of `module` with `args` in parameter order.
    ///
    /// # Safety
    /// 1. `args` must match the kernel's parameters in number, order and type.
    /// 2. Every offset the kernel computes from its arguments must lie inside the
    ///    buffer it indexes (the host runtime checks this; a GPU does not).
    unsafe fn launch(
        &self,
        module: &'static KernelModule,
        kernel: &'static str,
        dims: Launch,
        args: &mut [Arg<'_>],
    ) -> Result<()>;
    /// `C = op(A) op(B)` per `g`, A, B and C read from their element offsets on.
    ///
    /// # Safety
    /// 1. Every matrix `g` addresses must lie inside its buffer.
    unsafe fn gemm(
        &self,
        g: Gemm,
        a: (&DevBuf<f32>, usize),
        b: (&DevBuf<f32>, usize),
        c: (&mut DevBuf<f32>, usize),
    ) -> Result<()>;
    /// Waits for all queued work and reports errors recorded since the last call.
    fn synchronize(&self) -> Result<()>;
}

/// The runtime of one device: a GPU, or (in nn's tests) the host.
pub(crate) enum Runtime {
    /// cudarc on a GPU.
    Cuda(cuda::CudaRt),
    /// The host executing the kernels (tests only).
    #[cfg(feature = "host-runtime")]
    Host(host::HostRt),
}

macro_rules! dispatch {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            Runtime::Cuda($r) => $e,
            #[cfg(feature = "host-runtime")]
            Runtime::Host($r) => $e,
        }
    };
}

impl Driver for Runtime {
    fn alloc<T: Elem>(&self, n: usize, zeroed: bool) -> Result<DevBuf<T>> {
        dispatch!(self, r => r.alloc(n, zeroed))
    }
    fn htod<T: Elem>(&self, src: &[T]) -> Result<DevBuf<T>> {
        dispatch!(self, r => r.htod(src))
    }
    fn write<T: Elem>(&self, dst: &mut DevBuf<T>, offset: usize, src: &[T]) -> Result<()> {
        dispatch!(self, r => r.write(dst, offset, src))
    }
    fn dtoh<T: Elem>(&self, src: &DevBuf<T>, len: usize) -> Result<Vec<T>> {
        dispatch!(self, r => r.dtoh(src, len))
    }
    fn dtod<T: Elem>(&self, src: &DevBuf<T>) -> Result<DevBuf<T>> {
        dispatch!(self, r => r.dtod(src))
    }
    unsafe fn launch(
        &self,
        module: &'static KernelModule,
        kernel: &'static str,
        dims: Launch,
        args: &mut [Arg<'_>],
    ) -> Result<()> {
        // SAFETY: the caller's contract is passed on unchanged.
        dispatch!(self, r => unsafe { r.launch(module, kernel, dims, args) })
    }
    unsafe fn gemm(
        &self,
        g: Gemm,
        a: (&DevBuf<f32>, usize),
        b: (&DevBuf<f32>, usize),
        c: (&mut DevBuf<f32>, usize),
    ) -> Result<()> {
        // SAFETY: the caller's contract is passed on unchanged.
        dispatch!(self, r => unsafe { r.gemm(g, a, b, c) })
    }
    fn synchronize(&self) -> Result<()> {
        dispatch!(self, r => r.synchronize())
    }
}

/// The communicator of one rank: NCCL on a GPU, or (in nn's tests) the host group.
#[cfg(any(feature = "nccl", feature = "host-runtime"))]
pub(crate) enum Comm {
    /// cudarc's NCCL communicator.
    #[cfg(feature = "nccl")]
    Nccl(nccl::NcclComm),
    /// A rank of an in-process host group (tests only).
    #[cfg(feature = "host-runtime")]
    Host(host::comm::HostComm),
}

#[cfg(any(feature = "nccl", feature = "host-runtime"))]
macro_rules! dispatch_comm {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            #[cfg(feature = "nccl")]
            Comm::Nccl($c) => $e,
            #[cfg(feature = "host-runtime")]
            Comm::Host($c) => $e,
        }
    };
}

#[cfg(any(feature = "nccl", feature = "host-runtime"))]
impl Collectives for Comm {
    fn rank(&self) -> usize {
        dispatch_comm!(self, c => c.rank())
    }
    fn world_size(&self) -> usize {
        dispatch_comm!(self, c => c.world_size())
    }
    fn all_reduce<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()> {
        comm::check_len("ncclAllReduce", "send", src.len(), count)?;
        comm::check_len("ncclAllReduce", "receive", dst.len(), count)?;
        dispatch_comm!(self, c => c.all_reduce(src, dst, count, op))
    }
    fn all_reduce_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()> {
        comm::check_len("ncclAllReduce", "in-place", buf.len(), count)?;
        dispatch_comm!(self, c => c.all_reduce_in_place(buf, count, op))
    }
    fn broadcast<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()> {
        comm::check_root("ncclBroadcast", root, self.world_size())?;
        comm::check_len("ncclBroadcast", "send", src.len(), count)?;
        comm::check_len("ncclBroadcast", "receive", dst.len(), count)?;
        dispatch_comm!(self, c => c.broadcast(src, dst, count, root))
    }
    fn broadcast_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()> {
        comm::check_root("ncclBroadcast", root, self.world_size())?;
        comm::check_len("ncclBroadcast", "in-place", buf.len(), count)?;
        dispatch_comm!(self, c => c.broadcast_in_place(buf, count, root))
    }
    fn all_gather<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
    ) -> Result<()> {
        let total = count.checked_mul(self.world_size()).ok_or_else(|| {
            comm::comm_err(
                "ncclAllGather",
                format!("{count} elements per rank overflow"),
            )
        })?;
        comm::check_len("ncclAllGather", "send", src.len(), count)?;
        comm::check_len("ncclAllGather", "receive", dst.len(), total)?;
        dispatch_comm!(self, c => c.all_gather(src, dst, count))
    }
}

#[cfg(feature = "host-runtime")]
/// The error for a buffer handed to a runtime that did not allocate it.
pub(crate) fn foreign(op: &'static str) -> Error {
    Error::Unsupported {
        op,
        msg: "buffer belongs to another runtime".into(),
    }
}
