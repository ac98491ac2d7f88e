//! The real collectives: cudarc's NCCL communicator on a GPU's stream (feature `nccl`).
//! Each call binds the device's context, queues the collective on the stream and waits
//! for it, so errors and hangs surface inside the call.

use super::comm::{comm_err, Collectives, CommElem, RedOp};
use super::cuda::CudaRt;
#[cfg(feature = "host-runtime")]
use super::foreign;
use super::DevBuf;
use crate::error::{Error, Result};
use cudarc::driver::{CudaSlice, CudaStream};
use cudarc::nccl::result::NcclError;
use cudarc::nccl::safe::{Comm, Id, ReduceOp};
use std::sync::{Arc, Mutex, OnceLock};

/// Whether `libnccl` can be loaded (cudarc's file names). Never panics; cached.
pub(crate) fn nccl_present() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` only dlopens/dlcloses the candidate library names; it
    // has no preconditions and reports absence as `false` instead of panicking.
    *P.get_or_init(|| unsafe { cudarc::nccl::sys::is_culib_present() })
}

/// The loaded NCCL's version (`22_705` for 2.27.5); `None` when libnccl is missing.
pub(crate) fn nccl_version() -> Option<i32> {
    if !nccl_present() {
        return None;
    }
    cudarc::nccl::result::get_nccl_version().ok()
}

/// NCCL's error code with its own description, as an error of `call`.
fn nccl_err(call: &'static str, e: NcclError) -> Error {
    // SAFETY: ncclGetErrorString takes any result code and returns a pointer to a
    // static NUL-terminated string (or null); libnccl is loaded (an NCCL call returned).
    let text = unsafe {
        let p = cudarc::nccl::sys::ncclGetErrorString(e.0);
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    comm_err(call, format!("{:?}: {text}", e.0))
}

/// A new NCCL unique id (rank 0 makes it; the others receive its 128 bytes).
pub(crate) fn unique_id() -> Result<[u8; 128]> {
    let id = Id::new().map_err(|e| nccl_err("ncclGetUniqueId", e))?;
    let mut out = [0u8; 128];
    for (d, s) in out.iter_mut().zip(id.internal()) {
        *d = *s as u8;
    }
    Ok(out)
}

/// The communicator: NCCL's handle is a raw pointer, used only under the mutex.
struct Shared(Comm);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it do not
// overlap; every use goes through `NcclComm::run`'s mutex.
unsafe impl Send for Shared {}

/// One rank of an NCCL communicator, on one GPU's stream.
pub(crate) struct NcclComm {
    comm: Mutex<Shared>,
    ctx: Arc<cudarc::driver::CudaContext>,
    stream: Arc<CudaStream>,
    rank: usize,
    world_size: usize,
}

impl NcclComm {
    /// Joins the communicator `id` as `rank` of `world_size` on `rt`'s GPU
    /// (`ncclCommInitRank`: blocks until every rank has joined).
    pub(crate) fn join(rt: &CudaRt, rank: usize, world_size: usize, id: [u8; 128]) -> Result<Self> {
        let mut internal = [0 as std::ffi::c_char; 128];
        for (d, s) in internal.iter_mut().zip(&id) {
            *d = *s as std::ffi::c_char;
        }
        rt.bind()?;
        let comm = Comm::from_rank(rt.stream().clone(), rank, world_size, Id::uninit(internal))
            .map_err(|e| nccl_err("ncclCommInitRank", e))?;
        Ok(NcclComm {
            comm: Mutex::new(Shared(comm)),
            ctx: rt.context().clone(),
            stream: rt.stream().clone(),
            rank,
            world_size,
        })
    }

    /// Runs `f` with the communicator, then waits for the stream.
    fn run(
        &self,
        call: &'static str,
        f: impl FnOnce(&Comm) -> std::result::Result<cudarc::nccl::result::NcclStatus, NcclError>,
    ) -> Result<()> {
        let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        self.ctx.bind_to_thread()?;
        f(&comm.0).map_err(|e| nccl_err(call, e))?;
        self.stream.synchronize()?;
        Ok(())
    }
}

fn op_of(op: RedOp) -> ReduceOp {
    match op {
        RedOp::Sum => ReduceOp::Sum,
        RedOp::Avg => ReduceOp::Avg,
    }
}

#[cfg_attr(not(feature = "host-runtime"), allow(unused_variables))]
fn gpu<'a, T: CommElem>(call: &'static str, b: &'a DevBuf<T>) -> Result<&'a CudaSlice<T>> {
    match b {
        DevBuf::Cuda(s) => Ok(s),
        #[cfg(feature = "host-runtime")]
        DevBuf::Host(_) => Err(foreign(call)),
    }
}

#[cfg_attr(not(feature = "host-runtime"), allow(unused_variables))]
fn gpu_mut<'a, T: CommElem>(
    call: &'static str,
    b: &'a mut DevBuf<T>,
) -> Result<&'a mut CudaSlice<T>> {
    match b {
        DevBuf::Cuda(s) => Ok(s),
        #[cfg(feature = "host-runtime")]
        DevBuf::Host(_) => Err(foreign(call)),
    }
}

fn root_i32(call: &'static str, root: usize) -> Result<i32> {
    i32::try_from(root).map_err(|_| comm_err(call, format!("root rank {root} out of range")))
}

// Counts of 0 queue nothing (as before the seam): NCCL would return at once anyway.
impl Collectives for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world_size
    }
    fn all_reduce<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()> {
        const CALL: &str = "ncclAllReduce";
        let (s, d) = (gpu(CALL, src)?, gpu_mut(CALL, dst)?);
        if count == 0 {
            return Ok(());
        }
        let s = s.slice(0..count);
        let mut d = d.slice_mut(0..count);
        self.run(CALL, |c| c.all_reduce(&s, &mut d, &op_of(op)))
    }
    fn all_reduce_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()> {
        const CALL: &str = "ncclAllReduce";
        let b = gpu_mut(CALL, buf)?;
        if count == 0 {
            return Ok(());
        }
        let mut b = b.slice_mut(0..count);
        self.run(CALL, |c| c.all_reduce_in_place(&mut b, &op_of(op)))
    }
    fn broadcast<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()> {
        const CALL: &str = "ncclBroadcast";
        let (s, d) = (gpu(CALL, src)?, gpu_mut(CALL, dst)?);
        let root = root_i32(CALL, root)?;
        if count == 0 {
            return Ok(());
        }
        let s = s.slice(0..count);
        let mut d = d.slice_mut(0..count);
        self.run(CALL, |c| c.broadcast(Some(&s), &mut d, root))
    }
    fn broadcast_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()> {
        const CALL: &str = "ncclBroadcast";
        let b = gpu_mut(CALL, buf)?;
        let root = root_i32(CALL, root)?;
        if count == 0 {
            return Ok(());
        }
        let mut b = b.slice_mut(0..count);
        self.run(CALL, |c| c.broadcast_in_place(&mut b, root))
    }
    fn all_gather<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
    ) -> Result<()> {
        const CALL: &str = "ncclAllGather";
        let (s, d) = (gpu(CALL, src)?, gpu_mut(CALL, dst)?);
        if count == 0 {
            return Ok(());
        }
        let s = s.slice(0..count);
        let mut d = d.slice_mut(0..count * self.world_size);
        self.run(CALL, |c| c.all_gather(&s, &mut d))
    }
}
