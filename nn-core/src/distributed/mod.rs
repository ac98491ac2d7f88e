//! Data-parallel training across processes (and hosts): a [`ProcessGroup`] on Open MPI,
//! collectives on tensors, [`DistributedDataParallel`] and [`DistributedSampler`].
//!
//! Behind the `mpi` cargo feature (it needs Open MPI's headers and libclang at build
//! time: `apt-get install libopenmpi-dev openmpi-bin libclang-dev`). Start the processes
//! with `mpirun`; each one calls [`ProcessGroup::init`] once and keeps the group alive
//! until it is done (dropping the last handle finalizes MPI):
//!
//! ```no_run
//! # extern crate nn_core as nn;
//! use nn::distributed::{DistributedDataParallel, DistributedSampler, ProcessGroup};
//! use nn::optim::{Adam, Optimizer};
//! use nn::{Forward, Linear, ModuleExt, Tensor};
//! let group = ProcessGroup::init()?;            // rank and world size from mpirun
//! nn::manual_seed(0);
//! let ddp = DistributedDataParallel::new(Linear::new(4, 1), &group)?; // rank 0's weights everywhere
//! let mut opt = Adam::with_lr(ddp.parameters(), 1e-2)?;
//! let sampler = DistributedSampler::new(1000, group.world_size(), group.rank(), Some(7))?;
//! for epoch in 0..2 {
//!     let mine = sampler.indices(epoch);     // this rank's shard of the epoch's permutation
//!     # let _ = mine;
//!     let loss = ddp.forward(&Tensor::ones(&[8, 4]))?.square()?.mean()?;
//!     opt.zero_grad();
//!     ddp.backward(&loss)?;                  // backward, then gradients averaged over ranks
//!     opt.step()?;
//! }
//! # Ok::<(), nn::Error>(())
//! ```
//!
//! # Engines
//!
//! The tensor's device decides the engine: CPU tensors go through MPI; CUDA tensors
//! through the [`DeviceEngine`] registered with [`ProcessGroup::set_device_engine`]
//! (nn-cuda's NCCL engine, feature `nccl`), or, without one, through MPI staged via host
//! memory.
//!
//! # Failures
//!
//! Every collective is watched: one that has not completed after the group's timeout
//! ([`ProcessGroup::set_timeout`], `NN_DIST_TIMEOUT_S`, default 300 s) means a peer died
//! or hangs, and the process exits with status [`TIMEOUT_EXIT_CODE`] after printing
//! which collective on which rank timed out, so `mpirun` tears the job down instead of
//! waiting forever. A rank that dies outright is noticed by `mpirun` itself, which
//! stops the others.

mod checkpoint;
mod ddp;
mod group;
mod watchdog;

/// Re-exported from [`crate::data`], where it lives (usable without the `mpi` feature).
pub use crate::data::DistributedSampler;
pub use crate::error::DistributedProblem;
pub use checkpoint::{
    check_world_size, checkpoint_world_size, resume_checkpoint, save_checkpoint, WORLD_SIZE_KEY,
};
pub use ddp::{DdpOptions, DistributedDataParallel, NoSync, Overlap};
pub use group::{Backend, CommStats, DeviceEngine, ProcessGroup, ReduceOp};

use crate::{DType, Error};

/// The exit status of a process whose collective timed out (as `timeout(1)` uses).
pub const TIMEOUT_EXIT_CODE: i32 = 124;

fn problem(op: &'static str, problem: DistributedProblem) -> Error {
    Error::Distributed { op, problem }
}

/// The error for a collective on a storage-only dtype (f16, bf16, ...): convert first.
fn storage_only(op: &'static str, dtype: DType) -> Error {
    Error::StorageOnly { op, dtype }
}
