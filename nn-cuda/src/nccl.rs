//! NCCL collectives for CUDA tensors: an [`nn_core::distributed::DeviceEngine`] on
//! cudarc's NCCL bindings (feature `nccl`).
//!
//! One process per GPU, started by `mpirun` as for the CPU backend: every rank calls
//! [`NcclEngine::install`] (or [`NcclEngine::new`] and
//! [`ProcessGroup::set_device_engine`]) with its own GPU. Rank 0 creates NCCL's unique
//! id, MPI carries it to the others ([`ProcessGroup::broadcast_bytes`]), and each rank
//! joins the NCCL communicator on its device. From then on the group's collectives on
//! tensors of that device ([`ProcessGroup::all_reduce`], `broadcast`, `all_gather`, and
//! so [`nn_core::distributed::DistributedDataParallel`]'s gradient buckets) go through
//! NCCL, device to device, on the device's stream; CPU tensors still go through MPI.
//!
//! ```no_run
//! use nn_core::distributed::{Backend, ProcessGroup};
//! let group = ProcessGroup::init()?;
//! // one GPU per rank (ranks on one host: the local rank picks the GPU)
//! let gpu = nn_cuda::device(group.rank() % nn_cuda::device_count().max(1))?;
//! nn_cuda::nccl::NcclEngine::install(&group, &gpu)?;
//! assert_eq!(group.backend_for(&gpu), Backend::Nccl);
//! # Ok::<(), nn_core::Error>(())
//! ```
//!
//! `libnccl` is loaded at run time (`apt-get install libnccl2 libnccl-dev`, or
//! `pip install nvidia-nccl-cu13` plus a `libnccl.so` link next to its `libnccl.so.2`:
//! cudarc looks for `libnccl.so`, `libnccl.so.13`, ..., not `.so.2`). Without it, or
//! without a GPU, the constructor returns an error on every rank (the ranks agree
//! over MPI first, so none waits for a peer that gave up). NCCL wants one GPU per rank:
//! two ranks on one GPU are refused by NCCL itself.

use crate::device::CudaDevice;
use crate::runtime::cuda::CudaRt;
use crate::runtime::{DevBuf, Driver, Elem};
use crate::storage::{Buf, CudaStorage};
use cudarc::driver::CudaSlice;
use cudarc::nccl::result::NcclError;
use cudarc::nccl::safe::{Comm, Id, NcclType, ReduceOp};
use nn_core::distributed::{Backend, DeviceEngine, DistributedProblem, ProcessGroup};
use nn_core::{DType, Device, Error, Result, Tensor};
use std::sync::{Arc, Mutex, OnceLock};

/// The cudarc runtime of `dev`: NCCL needs a real GPU.
fn gpu(dev: &CudaDevice) -> Result<&CudaRt> {
    dev.cuda()
        .ok_or_else(|| engine_err("nccl", "NCCL needs a GPU, not the host runtime"))
}

/// The GPU memory of `b`: NCCL needs a real GPU.
#[cfg_attr(not(feature = "host-runtime"), allow(unused_variables))]
fn gpu_slice<'a, T: Elem>(op: &'static str, b: &'a DevBuf<T>) -> Result<&'a CudaSlice<T>> {
    match b {
        DevBuf::Cuda(s) => Ok(s),
        #[cfg(feature = "host-runtime")]
        DevBuf::Host(_) => Err(engine_err(op, "NCCL needs a GPU, not the host runtime")),
    }
}

/// Whether `libnccl` can be loaded (cudarc's file names). Never panics; cached.
pub fn nccl_present() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` only dlopens/dlcloses the candidate library names; it
    // has no preconditions and reports absence as `false` instead of panicking.
    *P.get_or_init(|| unsafe { cudarc::nccl::sys::is_culib_present() })
}

/// The loaded NCCL's version (`22_705` for 2.27.5); `None` when libnccl is missing.
pub fn nccl_version() -> Option<i32> {
    if !nccl_present() {
        return None;
    }
    cudarc::nccl::result::get_nccl_version().ok()
}

fn engine_err(op: &'static str, msg: impl Into<String>) -> Error {
    Error::Distributed {
        op,
        problem: DistributedProblem::Engine {
            engine: "nccl",
            msg: msg.into(),
        },
    }
}

fn nccl_err(op: &'static str, e: NcclError) -> Error {
    // SAFETY: ncclGetErrorString takes any result code and returns a pointer to a
    // static NUL-terminated string (or null); libnccl is loaded (a Comm exists).
    let text = unsafe {
        let p = cudarc::nccl::sys::ncclGetErrorString(e.0);
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    engine_err(op, format!("{:?}: {text}", e.0))
}

/// The communicator: NCCL's handle is a raw pointer, used only under the mutex.
struct Shared(Comm);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it do not
// overlap; every use goes through `NcclEngine::comm`'s mutex (and the process group
// serializes its collectives as well).
unsafe impl Send for Shared {}

/// NCCL collectives on one CUDA device, for one [`ProcessGroup`] (same ranks, same
/// world size). Register it with [`ProcessGroup::set_device_engine`].
pub struct NcclEngine {
    comm: Mutex<Shared>,
    dev: Arc<CudaDevice>,
    device: Device,
    rank: usize,
    world_size: usize,
}

impl std::fmt::Debug for NcclEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NcclEngine(rank {} of {} on {})",
            self.rank, self.world_size, self.device
        )
    }
}

impl NcclEngine {
    /// Joins the NCCL communicator of `group`'s ranks on this rank's `device` (a CUDA
    /// device). Collective: every rank of `group` must call it. Every rank returns an
    /// error when one of them cannot (no libnccl, not a CUDA device, ...).
    pub fn new(group: &ProcessGroup, device: &Device) -> Result<Arc<NcclEngine>> {
        const OP: &str = "NcclEngine::new";
        let local = Self::local_check(device);
        // agree before anyone waits on NCCL: a rank that cannot join fails them all
        let failed = group
            .all_reduce(
                &Tensor::from_vec(vec![i64::from(local.is_err())], &[1])?,
                nn_core::distributed::ReduceOp::Sum,
            )?
            .to_vec::<i64>()?
            .first()
            .copied()
            .unwrap_or(1);
        let dev = local?;
        if failed > 0 {
            return Err(engine_err(
                OP,
                format!("{failed} other rank(s) could not open NCCL; see their errors"),
            ));
        }
        // rank 0 makes the id; MPI carries its 128 bytes to the others
        let mut bytes = Vec::new();
        let mut made = Ok(());
        if group.is_root() {
            match Id::new() {
                Ok(id) => bytes = id.internal().iter().map(|&c| c as u8).collect(),
                Err(e) => made = Err(nccl_err(OP, e)),
            }
        }
        group.broadcast_bytes(&mut bytes, 0)?;
        made?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if bytes.len() != internal.len() {
            return Err(engine_err(
                OP,
                format!(
                    "rank 0 could not create an NCCL id (got {} bytes)",
                    bytes.len()
                ),
            ));
        }
        for (d, s) in internal.iter_mut().zip(&bytes) {
            *d = *s as std::ffi::c_char;
        }
        let rt = gpu(&dev)?;
        rt.bind().map_err(|e| engine_err(OP, e.to_string()))?;
        let (rank, world_size) = (group.rank(), group.world_size());
        // a peer that never joins leaves the others waiting here: the group's watchdog
        // ends the process after its collective timeout instead
        let comm = group
            .watch("nccl init", || {
                Comm::from_rank(rt.stream().clone(), rank, world_size, Id::uninit(internal))
            })
            .map_err(|e| nccl_err(OP, e))?;
        Ok(Arc::new(NcclEngine {
            comm: Mutex::new(Shared(comm)),
            device: Device::Backend(dev.clone()),
            dev,
            rank,
            world_size,
        }))
    }

    /// [`new`](Self::new), then registers the engine with `group`.
    pub fn install(group: &ProcessGroup, device: &Device) -> Result<Arc<NcclEngine>> {
        let engine = Self::new(group, device)?;
        group.set_device_engine(engine.clone());
        Ok(engine)
    }

    fn local_check(device: &Device) -> Result<Arc<CudaDevice>> {
        const OP: &str = "NcclEngine::new";
        if !device.is_cuda() {
            return Err(engine_err(
                OP,
                format!("NCCL moves CUDA tensors; {device} is not a CUDA device"),
            ));
        }
        let dev = CudaDevice::open(device.ordinal()).map_err(|e| e.into_core("nccl"))?;
        if !nccl_present() {
            return Err(engine_err(
                OP,
                "libnccl could not be loaded: install it (apt-get install libnccl2 libnccl-dev, \
                 or pip install nvidia-nccl-cu13 and link libnccl.so -> libnccl.so.2) and put \
                 its directory on LD_LIBRARY_PATH",
            ));
        }
        Ok(dev)
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
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
            .ok_or_else(|| engine_err(op, format!("{} is not CUDA storage", t.device())))
    }

    /// Runs `f` with the communicator, then waits for the stream, so errors and hangs
    /// surface inside the collective (where the group's watchdog sees them).
    fn run<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Comm) -> std::result::Result<T, NcclError>,
    ) -> Result<T> {
        let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        let rt = gpu(&self.dev)?;
        rt.bind().map_err(|e| e.into_core(self.dev.device_name()))?;
        let out = f(&comm.0).map_err(|e| nccl_err(op, e))?;
        rt.stream()
            .synchronize()
            .map_err(|e| engine_err(op, e.to_string()))?;
        Ok(out)
    }

    fn wrap(&self, buf: Buf, len: usize, shape: &[usize]) -> Result<Tensor> {
        let storage = self
            .dev
            .storage(buf, len)
            .map_err(|e| e.into_core(self.dev.device_name()))?;
        Tensor::from_storage(storage, shape)
    }

    fn alloc<T: Elem>(&self, n: usize) -> Result<CudaSlice<T>> {
        let b = self
            .dev
            .runtime()
            .alloc::<T>(n, false)
            .map_err(|e| e.into_core(self.dev.device_name()))?;
        match b {
            DevBuf::Cuda(s) => Ok(s),
            #[cfg(feature = "host-runtime")]
            DevBuf::Host(_) => Err(engine_err("nccl", "NCCL needs a GPU, not the host runtime")),
        }
    }

    /// `out[..len]` = the collective `f` of `src[..len]`, on this engine's stream.
    fn collective<T: Elem + NcclType>(
        &self,
        op: &'static str,
        src: &DevBuf<T>,
        len: usize,
        out_len: usize,
        f: impl FnOnce(
            &Comm,
            &cudarc::driver::CudaView<'_, T>,
            &mut cudarc::driver::CudaViewMut<'_, T>,
        ) -> std::result::Result<cudarc::nccl::result::NcclStatus, NcclError>,
    ) -> Result<CudaSlice<T>> {
        let src = gpu_slice(op, src)?;
        let mut out = self.alloc::<T>(out_len)?;
        if len > 0 {
            let s = src.slice(0..len);
            let mut d = out.slice_mut(0..out_len);
            self.run(op, |c| f(c, &s, &mut d))?;
        }
        Ok(out)
    }
}

impl DeviceEngine for NcclEngine {
    fn backend(&self) -> Backend {
        Backend::Nccl
    }

    fn handles(&self, device: &Device) -> bool {
        *device == self.device
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_reduce";
        let st = self.storage(OP, t)?;
        let n = t.numel();
        match t.dtype() {
            DType::F32 => {
                let src = st.f32s(OP).map_err(|e| e.into_core("nccl"))?;
                let out =
                    self.collective(OP, src, n, n, |c, s, d| c.all_reduce(s, d, &ReduceOp::Sum))?;
                self.wrap(Buf::F32(DevBuf::Cuda(out)), n, t.shape())
            }
            DType::I64 => {
                let src = st.i64s(OP).map_err(|e| e.into_core("nccl"))?;
                let out =
                    self.collective(OP, src, n, n, |c, s, d| c.all_reduce(s, d, &ReduceOp::Sum))?;
                self.wrap(Buf::I64(DevBuf::Cuda(out)), n, t.shape())
            }
            other => Err(Error::StorageOnly {
                op: OP,
                dtype: other,
            }),
        }
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        const OP: &str = "broadcast";
        let st = self.storage(OP, t)?;
        let n = t.numel();
        let root = i32::try_from(root).map_err(|_| engine_err(OP, "root rank out of range"))?;
        match t.dtype() {
            DType::F32 => {
                let src = st.f32s(OP).map_err(|e| e.into_core("nccl"))?;
                let out =
                    self.collective(OP, src, n, n, |c, s, d| c.broadcast(Some(s), d, root))?;
                self.wrap(Buf::F32(DevBuf::Cuda(out)), n, t.shape())
            }
            DType::I64 => {
                let src = st.i64s(OP).map_err(|e| e.into_core("nccl"))?;
                let out =
                    self.collective(OP, src, n, n, |c, s, d| c.broadcast(Some(s), d, root))?;
                self.wrap(Buf::I64(DevBuf::Cuda(out)), n, t.shape())
            }
            other => Err(Error::StorageOnly {
                op: OP,
                dtype: other,
            }),
        }
    }

    fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_gather";
        let st = self.storage(OP, t)?;
        let n = t.numel();
        let total = n * self.world_size;
        let mut shape = vec![self.world_size];
        shape.extend_from_slice(t.shape());
        match t.dtype() {
            DType::F32 => {
                let src = st.f32s(OP).map_err(|e| e.into_core("nccl"))?;
                let out = self.collective(OP, src, n, total, |c, s, d| c.all_gather(s, d))?;
                self.wrap(Buf::F32(DevBuf::Cuda(out)), total, &shape)
            }
            DType::I64 => {
                let src = st.i64s(OP).map_err(|e| e.into_core("nccl"))?;
                let out = self.collective(OP, src, n, total, |c, s, d| c.all_gather(s, d))?;
                self.wrap(Buf::I64(DevBuf::Cuda(out)), total, &shape)
            }
            other => Err(Error::StorageOnly {
                op: OP,
                dtype: other,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_or_gpu_is_a_clear_error() {
        // whatever this machine has, asking for NCCL on the CPU is refused without a panic
        let msg = NcclEngine::local_check(&Device::Cpu)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("cpu is not a CUDA device"), "{msg}");
        if !nccl_present() {
            assert_eq!(nccl_version(), None);
        }
    }
}
