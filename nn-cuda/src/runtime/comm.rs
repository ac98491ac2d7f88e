//! The collective half of the runtime seam: what nn-cuda asks of NCCL (all-reduce,
//! broadcast, all-gather of device buffers across the ranks of a communicator), with
//! two implementations behind the enum `runtime::Comm`:
//!
//! - `nccl::NcclComm` (feature `nccl`): cudarc's NCCL on a GPU's stream, the only
//!   communicator a user gets;
//! - `host::comm::HostComm` (feature `host-runtime`, nn's tests only): N ranks are N
//!   threads of one process, each reducing host-runtime buffers through a shared group
//!   that meets them at a rendezvous and combines their buffers in rank order.
//!
//! NCCL's semantics on both: `count` elements per rank, `Sum` and `Avg` (sum / ranks),
//! in-place variants where the receive buffer is the send buffer, `all_gather` writing
//! rank r's elements at `r * count`.

use super::{DevBuf, Elem};
use crate::error::{Error, Result};

/// NCCL's reductions nn-cuda uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedOp {
    /// `ncclSum`: the elementwise sum over ranks.
    Sum,
    /// `ncclAvg`: the elementwise sum over ranks divided by the number of ranks.
    Avg,
}

/// The bound NCCL's element types carry on the real path (none without NCCL).
#[cfg(feature = "nccl")]
pub(crate) trait NcclBound: cudarc::nccl::safe::NcclType {}
#[cfg(feature = "nccl")]
impl<T: cudarc::nccl::safe::NcclType> NcclBound for T {}
/// The bound NCCL's element types carry on the real path (none without NCCL).
#[cfg(not(feature = "nccl"))]
pub(crate) trait NcclBound {}
#[cfg(not(feature = "nccl"))]
impl<T> NcclBound for T {}

/// Element types the collectives move: f32 and i64, NCCL's `ncclFloat32`/`ncclInt64`.
/// (The arithmetic is the host group's; NCCL does its own on the GPU.)
#[cfg_attr(not(feature = "host-runtime"), allow(dead_code))]
pub(crate) trait CommElem: Elem + NcclBound {
    /// NCCL's name of the type (for messages).
    const NAME: &'static str;
    /// `a + b` as NCCL's sum computes it (wrapping for integers).
    fn add(a: Self, b: Self) -> Self;
    /// `self / n`: `ncclAvg`'s final step.
    fn div_ranks(self, n: usize) -> Self;
}

impl CommElem for f32 {
    const NAME: &'static str = "float32";
    fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    fn div_ranks(self, n: usize) -> f32 {
        self / n as f32
    }
}

impl CommElem for i64 {
    const NAME: &'static str = "int64";
    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
    fn div_ranks(self, n: usize) -> i64 {
        self / n as i64
    }
}

/// One rank's collectives. Every rank of the communicator must make the same calls in
/// the same order with the same `count`, `op` and `root`.
pub(crate) trait Collectives {
    /// This rank.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world_size(&self) -> usize;
    /// `dst[..count]` = the reduction over ranks of `src[..count]`.
    fn all_reduce<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()>;
    /// `buf[..count]` = the reduction over ranks of `buf[..count]` (send = receive buffer).
    #[cfg_attr(not(all(test, feature = "host-runtime")), allow(dead_code))] // tensors move out of place
    fn all_reduce_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()>;
    /// `dst[..count]` = rank `root`'s `src[..count]` (`src` is read on `root` only).
    fn broadcast<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()>;
    /// `buf[..count]` = rank `root`'s `buf[..count]`.
    #[cfg_attr(not(all(test, feature = "host-runtime")), allow(dead_code))] // tensors move out of place
    fn broadcast_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()>;
    /// `dst[r * count..(r + 1) * count]` = rank r's `src[..count]`, for every rank r.
    fn all_gather<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
    ) -> Result<()>;
}

/// A failed collective, named by its NCCL call.
pub(crate) fn comm_err(call: &'static str, msg: String) -> Error {
    Error::Kernel { kernel: call, msg }
}

/// A buffer too short for `count` elements: NCCL would read or write past its end.
pub(super) fn check_len(call: &'static str, which: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(comm_err(
            call,
            format!("the {which} buffer holds {have} elements, the call moves {need}"),
        ));
    }
    Ok(())
}

pub(super) fn check_root(call: &'static str, root: usize, world_size: usize) -> Result<()> {
    if root >= world_size {
        return Err(comm_err(
            call,
            format!("root rank {root} does not exist in a world of {world_size}"),
        ));
    }
    Ok(())
}
