//! NCCL collectives for CUDA tensors: [`NcclEngine`], one rank's all-reduce, broadcast
//! and all-gather of tensors on its CUDA device, through the runtime's collectives
//! (cudarc's NCCL with feature `nccl`; an in-process host group in nn's own tests).
//!
//! With feature `nccl` it is an `nn_core::distributed::DeviceEngine`: one process per
//! GPU, started by `mpirun` as for the CPU backend; every rank calls
//! `NcclEngine::install` (or `NcclEngine::new` and `ProcessGroup::set_device_engine`)
//! with its own GPU. Rank 0 creates NCCL's unique id, MPI carries it to the others
//! (`ProcessGroup::broadcast_bytes`), and each rank joins the NCCL communicator on its
//! device. From then on the group's collectives on tensors of that device
//! (`ProcessGroup::all_reduce`, `broadcast`, `all_gather`, and so
//! `DistributedDataParallel`'s gradient buckets) go through NCCL, device to device, on
//! the device's stream; CPU tensors still go through MPI.
//!
//! (`NcclEngine::install` shows the setup.)
//!
//! `libnccl` is loaded at run time (`apt-get install libnccl2 libnccl-dev`, or
//! `pip install nvidia-nccl-cu13` plus a `libnccl.so` link next to its `libnccl.so.2`:
//! cudarc looks for `libnccl.so`, `libnccl.so.13`, ..., not `.so.2`). Without it, or
//! without a GPU, the constructor returns an error on every rank (the ranks agree
//! over MPI first, so none waits for a peer that gave up). NCCL wants one GPU per rank:
//! two ranks on one GPU are refused by NCCL itself.
//!
//! nn's own tests (feature `host-runtime`, never in a user's build) run the same engine
//! on the host-run CUDA backend: `NcclEngine::host_group(n)` gives n ranks of one
//! in-process communicator, one per thread, whose collectives combine the ranks'
//! buffers in rank order, check that every rank made the same call, and fail after a
//! timeout instead of hanging.

use crate::device::CudaDevice;
use crate::runtime::comm::{Collectives, CommElem, RedOp};
use crate::runtime::Comm;
use crate::runtime::{DevBuf, Driver};
use crate::storage::{Buf, CudaStorage};
use nn_core::{DType, Device, Error, Result, Tensor};
use std::sync::Arc;

/// NCCL's reductions for [`NcclEngine::all_reduce`] (PyTorch's `ReduceOp.SUM`, `AVG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The elementwise sum over ranks (`ncclSum`).
    Sum,
    /// The elementwise sum over ranks divided by the number of ranks (`ncclAvg`; f32 only).
    Avg,
}

/// Whether `libnccl` can be loaded (cudarc's file names; always `false` without the
/// `nccl` feature). Never panics; cached.
pub fn nccl_present() -> bool {
    #[cfg(feature = "nccl")]
    return crate::runtime::nccl::nccl_present();
    #[cfg(not(feature = "nccl"))]
    false
}

/// The loaded NCCL's version (`22_705` for 2.27.5); `None` when libnccl is missing.
pub fn nccl_version() -> Option<i32> {
    #[cfg(feature = "nccl")]
    return crate::runtime::nccl::nccl_version();
    #[cfg(not(feature = "nccl"))]
    None
}

/// An error of the engine itself (`Error::Distributed` where the `nccl` feature brings
/// nn-core's distributed module, a backend error of `device` otherwise).
#[cfg_attr(feature = "nccl", allow(unused_variables))]
fn engine_err(op: &'static str, device: &str, msg: impl Into<String>) -> Error {
    #[cfg(feature = "nccl")]
    return Error::Distributed {
        op,
        problem: nn_core::distributed::DistributedProblem::Engine {
            engine: "nccl",
            msg: msg.into(),
        },
    };
    #[cfg(not(feature = "nccl"))]
    crate::error::Error::Unsupported {
        op,
        msg: format!("nccl: {}", msg.into()),
    }
    .into_core(device)
}

/// NCCL collectives of one rank on one CUDA device. With feature `nccl`, register it
/// with `ProcessGroup::set_device_engine` (same ranks, same world size).
pub struct NcclEngine {
    comm: Comm,
    dev: Arc<CudaDevice>,
    device: Device,
}

impl std::fmt::Debug for NcclEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NcclEngine(rank {} of {} on {})",
            self.rank(),
            self.world_size(),
            self.device
        )
    }
}

impl NcclEngine {
    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    /// The device it moves tensors on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `t`'s storage as CUDA storage on this engine's device.
    fn storage<'a>(&self, op: &'static str, t: &'a Tensor) -> Result<&'a CudaStorage> {
        if t.device() != self.device {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.device.to_string(),
                rhs: t.device().to_string(),
            });
        }
        t.storage()
            .as_any()
            .downcast_ref::<CudaStorage>()
            .ok_or_else(|| {
                engine_err(
                    op,
                    self.dev.device_name(),
                    format!("{} is not CUDA storage", t.device()),
                )
            })
    }

    /// A collective's failure, as the engine reports it.
    fn failed(&self, op: &'static str, e: crate::error::Error) -> Error {
        match e {
            crate::error::Error::Core(e) => e,
            other => engine_err(op, self.dev.device_name(), other.to_string()),
        }
    }

    /// A new buffer of `out_len` elements filled by `f(comm, src, out)`.
    fn run<T: CommElem>(
        &self,
        op: &'static str,
        src: &DevBuf<T>,
        out_len: usize,
        f: impl FnOnce(&Comm, &DevBuf<T>, &mut DevBuf<T>) -> crate::error::Result<()>,
    ) -> Result<DevBuf<T>> {
        let mut out = self
            .dev
            .runtime()
            .alloc::<T>(out_len, false)
            .map_err(|e| e.into_core(self.dev.device_name()))?;
        f(&self.comm, src, &mut out).map_err(|e| self.failed(op, e))?;
        Ok(out)
    }

    fn wrap(&self, buf: Buf, len: usize, shape: &[usize]) -> Result<Tensor> {
        let storage = self
            .dev
            .storage(buf, len)
            .map_err(|e| e.into_core(self.dev.device_name()))?;
        Tensor::from_storage(storage, shape)
    }

    /// The elementwise sum ([`ReduceOp::Sum`], f32 or i64) or mean ([`ReduceOp::Avg`],
    /// f32) over ranks of `t`, on every rank (NCCL's `ncclAllReduce`). Every rank must
    /// pass the same shape and dtype. The result is a new tensor on this device.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<Tensor> {
        const OP: &str = "all_reduce";
        let st = self.storage(OP, t)?;
        let n = t.numel();
        let red = match op {
            ReduceOp::Sum => RedOp::Sum,
            ReduceOp::Avg => RedOp::Avg,
        };
        match t.dtype() {
            DType::F32 => {
                let src = st.f32s(OP).map_err(|e| self.failed(OP, e))?;
                let out = self.run(OP, src, n, |c, s, d| c.all_reduce(s, d, n, red))?;
                self.wrap(Buf::F32(out), n, t.shape())
            }
            DType::I64 if op == ReduceOp::Sum => {
                let src = st.i64s(OP).map_err(|e| self.failed(OP, e))?;
                let out = self.run(OP, src, n, |c, s, d| c.all_reduce(s, d, n, red))?;
                self.wrap(Buf::I64(out), n, t.shape())
            }
            DType::I64 => Err(Error::DType {
                op: "all_reduce(avg)",
                dtype: DType::I64,
                expected: Some(DType::F32),
            }),
            other => Err(Error::StorageOnly {
                op: OP,
                dtype: other,
            }),
        }
    }

    /// [`all_reduce`](Self::all_reduce) with [`ReduceOp::Sum`]: what
    /// `DistributedDataParallel` sends each gradient bucket through.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        self.all_reduce(t, ReduceOp::Sum)
    }

    /// Rank `root`'s `t` on every rank (NCCL's `ncclBroadcast`).
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        const OP: &str = "broadcast";
        let st = self.storage(OP, t)?;
        let n = t.numel();
        match t.dtype() {
            DType::F32 => {
                let src = st.f32s(OP).map_err(|e| self.failed(OP, e))?;
                let out = self.run(OP, src, n, |c, s, d| c.broadcast(s, d, n, root))?;
                self.wrap(Buf::F32(out), n, t.shape())
            }
            DType::I64 => {
                let src = st.i64s(OP).map_err(|e| self.failed(OP, e))?;
                let out = self.run(OP, src, n, |c, s, d| c.broadcast(s, d, n, root))?;
                self.wrap(Buf::I64(out), n, t.shape())
            }
            other => Err(Error::StorageOnly {
                op: OP,
                dtype: other,
            }),
        }
    }

    /// Every rank's `t`, stacked along a new first axis in rank order (NCCL's
    /// `ncclAllGather`): shape `[world_size, ..t.shape]`.
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_gather";
        let st = self.storage(OP, t)?;
        let n = t.numel();
        let mut shape = vec![self.world_size()];
        shape.extend_from_slice(t.shape());
        let total = nn_core::shape::checked_numel(OP, &shape)?;
        match t.dtype() {
            DType::F32 => {
                let src = st.f32s(OP).map_err(|e| self.failed(OP, e))?;
                let out = self.run(OP, src, total, |c, s, d| c.all_gather(s, d, n))?;
                self.wrap(Buf::F32(out), total, &shape)
            }
            DType::I64 => {
                let src = st.i64s(OP).map_err(|e| self.failed(OP, e))?;
                let out = self.run(OP, src, total, |c, s, d| c.all_gather(s, d, n))?;
                self.wrap(Buf::I64(out), total, &shape)
            }
            other => Err(Error::StorageOnly {
                op: OP,
                dtype: other,
            }),
        }
    }
}

#[cfg(feature = "host-runtime")]
impl NcclEngine {
    /// `n` ranks of one in-process communicator on the host-run CUDA backend
    /// ([`crate::host_device`]), rank r at index r: nn's own tests only (feature
    /// `host-runtime`), with each rank used from its own thread. A rank waits at most
    /// 30 s for the others in a collective, then every waiting rank gets an error.
    ///
    /// ```
    /// use nn_core::Tensor;
    /// use nn_cuda::nccl::{NcclEngine, ReduceOp};
    /// let ranks = NcclEngine::host_group(2)?;
    /// let sums = std::thread::scope(|s| {
    ///     let hs: Vec<_> = ranks
    ///         .iter()
    ///         .map(|e| {
    ///             s.spawn(move || -> nn_core::Result<Vec<f32>> {
    ///                 let x = Tensor::full(&[3], e.rank() as f32 + 1.0).to_device(e.device())?;
    ///                 e.all_reduce(&x, ReduceOp::Avg)?.to_vec::<f32>()
    ///             })
    ///         })
    ///         .collect();
    ///     hs.into_iter()
    ///         .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    ///         .collect::<Vec<_>>()
    /// });
    /// for s in sums {
    ///     assert_eq!(s?, vec![1.5; 3]);
    /// }
    /// # Ok::<(), nn_core::Error>(())
    /// ```
    pub fn host_group(n: usize) -> Result<Vec<Arc<NcclEngine>>> {
        Self::host_group_with_timeout(n, crate::runtime::host::comm::DEFAULT_TIMEOUT)
    }

    /// [`host_group`](Self::host_group) with the time a rank waits for the others.
    pub fn host_group_with_timeout(
        n: usize,
        timeout: std::time::Duration,
    ) -> Result<Vec<Arc<NcclEngine>>> {
        let dev = CudaDevice::host(false);
        if n == 0 {
            return Err(engine_err(
                "NcclEngine::host_group",
                dev.device_name(),
                "a group needs at least one rank",
            ));
        }
        Ok(crate::runtime::host::comm::group(n, timeout)
            .into_iter()
            .map(|c| {
                Arc::new(NcclEngine {
                    comm: Comm::Host(c),
                    device: Device::Backend(dev.clone()),
                    dev: dev.clone(),
                })
            })
            .collect())
    }
}

#[cfg(feature = "nccl")]
mod mpi;
