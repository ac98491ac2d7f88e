//! The process group: MPI set-up, the device engine seam, and the collectives on
//! tensors (each one watched by the [`Watchdog`](super::watchdog)).

use super::watchdog::Watchdog;
use super::{problem, storage_only, DistributedProblem};
use crate::{DType, Device, Error, HostData, Result, Tensor};
use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod nonblocking;
mod shared;
pub(crate) use nonblocking::InFlight;
pub(crate) use shared::SharedSlab;

/// Elements per MPI call (MPI counts are `int`).
const MAX_CHUNK: usize = 1 << 27;

/// What carries a group's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Open MPI (CPU tensors; CUDA tensors staged through host memory).
    Mpi,
    /// NCCL (CUDA tensors, through a registered [`DeviceEngine`]).
    Nccl,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Mpi => "mpi",
            Backend::Nccl => "nccl",
        })
    }
}

/// The reduction of [`ProcessGroup::all_reduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The elementwise sum over ranks.
    Sum,
    /// The elementwise mean over ranks (sum, then divided by the world size).
    Mean,
}

/// A collective engine for tensors on an accelerator (nn-cuda's NCCL engine). All
/// tensors handed to it are contiguous, on a device it [`handles`](Self::handles), of
/// the same shape on every rank.
pub trait DeviceEngine: Send + Sync {
    /// Its backend.
    fn backend(&self) -> Backend;
    /// Whether it moves tensors living on `device`.
    fn handles(&self, device: &Device) -> bool;
    /// The elementwise sum over ranks of an f32 tensor.
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
    /// Rank `root`'s values, on every rank.
    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor>;
    /// Every rank's tensor, stacked along a new first axis of length world size.
    fn all_gather(&self, t: &Tensor) -> Result<Tensor>;
}

/// Counters of the messages a group sent (for benchmarks and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommStats {
    /// Collective calls (all-reduce, broadcast, all-gather, barrier), headers included.
    pub calls: u64,
    /// All-reduce calls on data (no headers).
    pub all_reduces: u64,
    /// Bytes this rank contributed to data collectives.
    pub bytes: u64,
    /// Time spent inside collectives, in nanoseconds.
    pub nanos: u64,
}

struct Comm {
    world: SimpleCommunicator,
    // Finalizes MPI when the last group handle goes (declared after `world`, dropped after).
    _universe: mpi::environment::Universe,
}

// SAFETY: MPI was initialized with `Threading::Serialized` (checked in `init`), which
// allows MPI calls from any thread as long as they do not overlap; every call goes through
// `Inner::comm`'s mutex, and the communicator handle itself is a plain value.
unsafe impl Send for Comm {}

struct Inner {
    comm: Mutex<Comm>,
    rank: usize,
    world_size: usize,
    engine: Mutex<Option<Arc<dyn DeviceEngine>>>,
    watchdog: Arc<Watchdog>,
    calls: AtomicU64,
    all_reduces: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

/// The processes of one job: this process's rank, the world size, and collectives on
/// tensors. Cheap to clone (a shared handle); MPI is finalized when the last handle is
/// dropped, so keep one until the end of `main`.
#[derive(Clone)]
pub struct ProcessGroup(Arc<Inner>);

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.0.rank)
            .field("world_size", &self.0.world_size)
            .field("backend", &self.backend())
            .finish()
    }
}

/// Open MPI's all-reduce algorithm, unless the user chose one (`mpirun --mca
/// coll_tuned_allreduce_algorithm N` or `OMPI_MCA_coll_tuned_allreduce_algorithm=N`): the
/// ring (reduce-scatter, then all-gather), which moves `2 (p - 1) / p` of the message per
/// rank, as NCCL and Gloo do for gradient buckets. Open MPI 4.1's fixed rules picked
/// another algorithm for DDP's 7.5 MB bucket on two ranks of one host, and that
/// all-reduce took 30-70 ms where the ring takes 4.7 ms (W8, benches/PEERS.md). MCA
/// parameters are read from the environment by `MPI_Init`, so this runs just before it;
/// `NN_DIST_MPI_DEFAULTS=0` leaves Open MPI's own choice.
fn prefer_ring_all_reduce() {
    const ALGORITHM: &str = "OMPI_MCA_coll_tuned_allreduce_algorithm";
    const DYNAMIC: &str = "OMPI_MCA_coll_tuned_use_dynamic_rules";
    if std::env::var_os("NN_DIST_MPI_DEFAULTS").is_some_and(|v| v == "0")
        || std::env::var_os(ALGORITHM).is_some()
        || std::env::var_os(DYNAMIC).is_some()
    {
        return;
    }
    // Setting the environment races with threads reading it; nothing of ours reads it
    // concurrently, and this runs once, before MPI starts its own threads.
    std::env::set_var(DYNAMIC, "1");
    std::env::set_var(ALGORITHM, "4");
}

/// A locked communicator with the watchdog armed for one collective.
struct Call<'a> {
    comm: MutexGuard<'a, Comm>,
    group: &'a Inner,
    start: Instant,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.group.watchdog.disarm();
        self.group.calls.fetch_add(1, Ordering::Relaxed);
        self.group
            .nanos
            .fetch_add(self.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

impl ProcessGroup {
    /// Initializes MPI (once per process) and returns the world: rank and size come from
    /// `mpirun`; a process not started by `mpirun` is a world of one. The collective
    /// timeout is `NN_DIST_TIMEOUT_S` seconds (default 300).
    pub fn init() -> Result<ProcessGroup> {
        prefer_ring_all_reduce();
        let (universe, provided) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| problem("ProcessGroup::init", DistributedProblem::AlreadyInitialized))?;
        if provided < mpi::Threading::Serialized {
            return Err(problem(
                "ProcessGroup::init",
                DistributedProblem::ThreadLevel {
                    provided: format!("{provided:?}"),
                },
            ));
        }
        let world = universe.world();
        let rank = world.rank() as usize;
        let world_size = world.size() as usize;
        let watchdog = Watchdog::spawn(rank, world_size);
        Ok(ProcessGroup(Arc::new(Inner {
            comm: Mutex::new(Comm {
                world,
                _universe: universe,
            }),
            rank,
            world_size,
            engine: Mutex::new(None),
            watchdog,
            calls: AtomicU64::new(0),
            all_reduces: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        })))
    }

    /// This process's rank, `0..world_size`.
    pub fn rank(&self) -> usize {
        self.0.rank
    }

    /// The number of processes.
    pub fn world_size(&self) -> usize {
        self.0.world_size
    }

    /// Whether this is rank 0 (the one that prints and writes checkpoints).
    pub fn is_root(&self) -> bool {
        self.0.rank == 0
    }

    /// The group's backend: [`Backend::Nccl`] once an NCCL engine is registered, else
    /// [`Backend::Mpi`].
    pub fn backend(&self) -> Backend {
        self.engine().map(|e| e.backend()).unwrap_or(Backend::Mpi)
    }

    /// The engine that moves tensors living on `device`.
    pub fn backend_for(&self, device: &Device) -> Backend {
        match self.engine_for(device) {
            Some(e) => e.backend(),
            None => Backend::Mpi,
        }
    }

    /// Registers the engine for accelerator tensors (every rank must do the same).
    pub fn set_device_engine(&self, engine: Arc<dyn DeviceEngine>) {
        *self.0.engine.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine);
    }

    /// How long a collective may take before the process gives up (see the module docs).
    pub fn set_timeout(&self, timeout: Duration) {
        self.0.watchdog.set_timeout(timeout);
    }

    /// The collective timeout.
    pub fn timeout(&self) -> Duration {
        self.0.watchdog.timeout()
    }

    /// Messages sent so far by this rank.
    pub fn stats(&self) -> CommStats {
        CommStats {
            calls: self.0.calls.load(Ordering::Relaxed),
            all_reduces: self.0.all_reduces.load(Ordering::Relaxed),
            bytes: self.0.bytes.load(Ordering::Relaxed),
            nanos: self.0.nanos.load(Ordering::Relaxed),
        }
    }

    fn engine(&self) -> Option<Arc<dyn DeviceEngine>> {
        self.0
            .engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn engine_for(&self, device: &Device) -> Option<Arc<dyn DeviceEngine>> {
        if device.is_cpu() {
            return None;
        }
        self.engine().filter(|e| e.handles(device))
    }

    fn call(&self, op: &'static str) -> Call<'_> {
        let comm = self.0.comm.lock().unwrap_or_else(|e| e.into_inner());
        self.0.watchdog.arm(op);
        Call {
            comm,
            group: &self.0,
            start: Instant::now(),
        }
    }

    fn count_data(&self, bytes: usize, all_reduce: bool) {
        self.0.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if all_reduce {
            self.0.all_reduces.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `f` (an engine's own collective, such as NCCL's communicator setup) under the
    /// group's watchdog: if it has not returned after the collective timeout, a peer is
    /// taken to be gone and the process exits as for a timed-out MPI collective. `f` must
    /// not call the group's collectives (they would wait for this one).
    pub fn watch<R>(&self, op: &'static str, f: impl FnOnce() -> R) -> R {
        let _c = self.call(op);
        f()
    }

    /// Blocks until every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        let c = self.call("barrier");
        c.comm.world.barrier();
        Ok(())
    }

    /// Every rank's `local` words, concatenated in rank order (one small message).
    pub(super) fn gather_words(&self, op: &'static str, local: &[u64]) -> Vec<u64> {
        let mut all = vec![0u64; local.len() * self.0.world_size];
        let c = self.call(op);
        c.comm.world.all_gather_into(local, &mut all[..]);
        all
    }

    /// Checks that every rank passed the same shape and dtype (one small all-gather);
    /// every rank gets the same answer, so either all go on or all return the error.
    fn check_agree(&self, op: &'static str, t: &Tensor) -> Result<()> {
        const SLOTS: usize = 10;
        let mut local = [0u64; SLOTS];
        // a fieldless enum: its discriminant names the dtype
        local[0] = t.dtype() as u64 + 1;
        local[1] = t.rank() as u64;
        for (i, &d) in t.shape().iter().enumerate() {
            let slot = (2 + i).min(SLOTS - 1);
            // shapes of more than 8 dims: the tail folds into the last slot
            local[slot] = local[slot].wrapping_mul(1_000_003).wrapping_add(d as u64);
        }
        let all = self.gather_words(op, &local);
        let describe = |w: &[u64], t: Option<&Tensor>| match t {
            Some(t) => format!("{:?} {}", t.shape(), t.dtype()),
            None => format!(
                "a {}-d {} tensor",
                w[1],
                if w[0] == 1 { "f32" } else { "i64" }
            ),
        };
        for (r, w) in all.chunks(SLOTS).enumerate() {
            if w != local {
                return Err(problem(
                    op,
                    DistributedProblem::RanksDisagree {
                        rank: self.0.rank,
                        what: describe(&local, Some(t)),
                        other_rank: r,
                        other: describe(w, None),
                    },
                ));
            }
        }
        Ok(())
    }

    fn check_root(&self, op: &'static str, root: usize) -> Result<()> {
        if root >= self.0.world_size {
            return Err(problem(
                op,
                DistributedProblem::BadRoot {
                    root,
                    world_size: self.0.world_size,
                },
            ));
        }
        Ok(())
    }

    /// The elementwise sum or mean over ranks of `t` (f32; an i64 tensor can be summed),
    /// on `t`'s device. Every rank must pass the same shape and dtype (checked: all
    /// ranks get the same error otherwise). The result is detached.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<Tensor> {
        if op == ReduceOp::Mean && t.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "all_reduce(mean)",
                dtype: t.dtype(),
                expected: Some(DType::F32),
            });
        }
        self.check_agree("all_reduce", t)?;
        let sum = self.all_reduce_sum_unchecked(t)?;
        match op {
            ReduceOp::Sum => Ok(sum),
            ReduceOp::Mean => crate::no_grad(|| sum.mul_scalar(1.0 / self.0.world_size as f32)),
        }
    }

    /// The sum over ranks, shapes trusted (DDP's buckets are built identically everywhere).
    pub(crate) fn all_reduce_sum_unchecked(&self, t: &Tensor) -> Result<Tensor> {
        let device = t.device();
        if let Some(engine) = self.engine_for(&device) {
            self.count_data(t.numel() * 4, true);
            let _c = self.call("all_reduce");
            return engine.all_reduce_sum(t);
        }
        let out = match t.to_host()? {
            HostData::F32(v) => {
                self.count_data(v.len() * 4, true);
                HostData::F32(self.reduce_slices(&v, "all_reduce"))
            }
            HostData::I64(v) => {
                self.count_data(v.len() * 8, true);
                HostData::I64(self.reduce_slices(&v, "all_reduce"))
            }
            other => return Err(storage_only("all_reduce", other.dtype())),
        };
        self.upload(out, t.shape(), &device)
    }

    fn reduce_slices<T: Equivalence + Copy + Default>(&self, v: &[T], op: &'static str) -> Vec<T> {
        let mut out = vec![T::default(); v.len()];
        self.reduce_into(v, &mut out, op);
        out
    }

    fn reduce_into<T: Equivalence>(&self, v: &[T], out: &mut [T], op: &'static str) {
        for (src, dst) in v.chunks(MAX_CHUNK).zip(out.chunks_mut(MAX_CHUNK)) {
            let c = self.call(op);
            c.comm
                .world
                .all_reduce_into(src, dst, SystemOperation::sum());
        }
    }

    /// `out` = the sum over ranks of `v` (same lengths on every rank, trusted), counted
    /// as one all-reduce (DDP's host buckets, into a reused buffer).
    pub(crate) fn all_reduce_sum_into(&self, v: &[f32], out: &mut [f32], op: &'static str) {
        self.count_data(std::mem::size_of_val(v), true);
        self.reduce_into(v, out, op);
    }

    fn upload(&self, data: HostData, shape: &[usize], device: &Device) -> Result<Tensor> {
        let t = Tensor::from_host(data, shape)?;
        if device.is_cpu() {
            Ok(t)
        } else {
            t.to_device(device)
        }
    }

    /// Rank `root`'s `t`, on every rank (on each rank's own device). Every rank must
    /// pass the same shape and dtype (checked).
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        self.check_root("broadcast", root)?;
        self.check_agree("broadcast", t)?;
        self.broadcast_unchecked(t, root)
    }

    pub(crate) fn broadcast_unchecked(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        let device = t.device();
        if let Some(engine) = self.engine_for(&device) {
            self.count_data(t.numel() * t.dtype().size_in_bytes(), false);
            let _c = self.call("broadcast");
            return engine.broadcast(t, root);
        }
        let out = match t.to_host()? {
            HostData::F32(mut v) => {
                self.broadcast_slices(&mut v, root);
                HostData::F32(v)
            }
            HostData::I64(mut v) => {
                self.broadcast_slices(&mut v, root);
                HostData::I64(v)
            }
            other => return Err(storage_only("broadcast", other.dtype())),
        };
        self.upload(out, t.shape(), &device)
    }

    fn broadcast_slices<T: Equivalence>(&self, v: &mut [T], root: usize) {
        self.count_data(std::mem::size_of_val(v), false);
        for chunk in v.chunks_mut(MAX_CHUNK) {
            let c = self.call("broadcast");
            c.comm
                .world
                .process_at_rank(root as i32)
                .broadcast_into(chunk);
        }
    }

    /// Every rank's `t`, stacked along a new first axis (`[world_size, ..t.shape]`, in
    /// rank order), on `t`'s device. Every rank must pass the same shape and dtype.
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        self.check_agree("all_gather", t)?;
        let device = t.device();
        if let Some(engine) = self.engine_for(&device) {
            self.count_data(t.numel() * t.dtype().size_in_bytes(), false);
            let _c = self.call("all_gather");
            return engine.all_gather(t);
        }
        let mut shape = vec![self.0.world_size];
        shape.extend_from_slice(t.shape());
        let out = match t.to_host()? {
            HostData::F32(v) => HostData::F32(self.gather_slices(&v)?),
            HostData::I64(v) => HostData::I64(self.gather_slices(&v)?),
            other => return Err(storage_only("all_gather", other.dtype())),
        };
        self.upload(out, &shape, &device)
    }

    fn gather_slices<T: Equivalence + Copy + Default + 'static>(&self, v: &[T]) -> Result<Vec<T>> {
        let w = self.0.world_size;
        self.count_data(std::mem::size_of_val(v), false);
        if v.len() <= MAX_CHUNK {
            let mut out = crate::host::try_filled(v.len() * w, T::default(), "all_gather")?;
            let c = self.call("all_gather");
            c.comm.world.all_gather_into(v, &mut out[..]);
            return Ok(out);
        }
        // big tensors: chunk by chunk, then put each rank's pieces in place
        let mut out = crate::host::try_filled(v.len() * w, T::default(), "all_gather")?;
        let mut at = 0;
        for chunk in v.chunks(MAX_CHUNK) {
            let mut part = vec![T::default(); chunk.len() * w];
            {
                let c = self.call("all_gather");
                c.comm.world.all_gather_into(chunk, &mut part[..]);
            }
            for (r, piece) in part.chunks(chunk.len()).enumerate() {
                let dst = r * v.len() + at;
                out[dst..dst + chunk.len()].copy_from_slice(piece);
            }
            at += chunk.len();
        }
        Ok(out)
    }

    /// Rank `root`'s bytes on every rank (the length travels first). For engines that
    /// bootstrap over MPI (an NCCL unique id) and for small metadata.
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        self.check_root("broadcast_bytes", root)?;
        let mut len = [bytes.len() as u64];
        {
            let c = self.call("broadcast_bytes");
            c.comm
                .world
                .process_at_rank(root as i32)
                .broadcast_into(&mut len[..]);
        }
        bytes.resize(len[0] as usize, 0);
        self.broadcast_slices(&mut bytes[..], root);
        Ok(())
    }
}
