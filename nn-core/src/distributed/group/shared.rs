//! The all-reduce of ranks that share one host, through a node-shared window
//! (`MPI_Win_allocate_shared`): each rank writes its values into its own segment; after a
//! barrier, rank `r` sums its `1/p` of the elements over every segment with plain loads
//! and stores and writes the sums back into its own segment (a reduce-scatter with no
//! messages); after a second barrier every rank reads each element where its owner wrote
//! it. Per rank that reads the data once and writes `1/p` of it; Open MPI's ring moves the
//! same bytes through its shared-memory transport fragment by fragment (copied into a
//! queue and out again at every step): W8's 7.5 MB of gradients took 4.0-4.6 ms alone
//! that way on two ranks of a 2-vCPU host, and 2.7 ms of each step; summed here, 0.1-0.3
//! ms of each step (benches/PEERS.md).

use super::*;
use mpi::ffi;
use std::os::raw::{c_int, c_void};

/// The elements of one rank's share start at multiples of this (64-byte lines).
const ALIGN: usize = 16;

/// A node-shared slab of `2 * len` f32 per rank ([`ProcessGroup::shared_slab`]): the
/// values of one all-reduce in one half of each segment, the next all-reduce in the
/// other half, so a rank writing step `s + 1`'s values never touches what a slower rank
/// may still be reading from step `s` (the two barriers of step `s + 1` lie between).
pub(crate) struct SharedSlab {
    group: ProcessGroup,
    node: ffi::MPI_Comm,
    win: ffi::MPI_Win,
    /// Each rank's segment, in rank order.
    bases: Vec<*mut f32>,
    len: usize,
    /// The half (0 or 1) this step's values go in.
    half: usize,
}

// SAFETY: the handles are plain values used only under the group's lock (`call`), which
// serializes MPI calls as the `Serialized` threading level requires; the segments are
// shared memory that lives until `Drop` frees the window, and the slab is used by one
// thread at a time (its owner keeps it behind a mutex).
unsafe impl Send for SharedSlab {}

impl ProcessGroup {
    /// A [`SharedSlab`] of `len` f32 per rank when every rank of the world runs on this
    /// host (collective; `None` for a world of one, an empty slab, or ranks on several
    /// hosts, where every rank gets the same answer).
    pub(crate) fn shared_slab(&self, len: usize) -> Result<Option<SharedSlab>> {
        if self.0.world_size < 2 || len == 0 {
            return Ok(None);
        }
        let bytes = 2 * len * std::mem::size_of::<f32>();
        let bytes = ffi::MPI_Aint::try_from(bytes)
            .map_err(|_| Error::custom(format!("shared_slab: {len} elements overflow")))?;
        let c = self.call("shared_slab");
        let world = {
            use mpi::raw::AsRaw;
            c.comm.world.as_raw()
        };
        let mut node = std::mem::MaybeUninit::<ffi::MPI_Comm>::uninit();
        let mut size: c_int = 0;
        // SAFETY: valid communicator and info handles; MPI writes the new communicator
        // and its size before returning (errors abort: MPI_ERRORS_ARE_FATAL).
        let mut node = unsafe {
            ffi::MPI_Comm_split_type(
                world,
                ffi::RSMPI_COMM_TYPE_SHARED,
                0,
                ffi::RSMPI_INFO_NULL,
                node.as_mut_ptr(),
            );
            let node = node.assume_init();
            ffi::MPI_Comm_size(node, &mut size);
            node
        };
        // ranks on several hosts: every node communicator is smaller than the world
        if usize::try_from(size).ok() != Some(self.0.world_size) {
            // SAFETY: `node` came from MPI_Comm_split_type and is freed once.
            unsafe { ffi::MPI_Comm_free(&mut node) };
            return Ok(None);
        }
        let mut win = std::mem::MaybeUninit::<ffi::MPI_Win>::uninit();
        let mut mine: *mut f32 = std::ptr::null_mut();
        let mut bases = Vec::with_capacity(self.0.world_size);
        // SAFETY: `node` is a valid communicator of ranks that share memory; MPI writes
        // this rank's base pointer and the window handle; the shared-lock epoch opened
        // here lasts until `Drop` (passive target, so plain loads and stores are allowed
        // between MPI_Win_sync calls); MPI_Win_shared_query writes each rank's base.
        let win = unsafe {
            ffi::MPI_Win_allocate_shared(
                bytes,
                std::mem::size_of::<f32>() as c_int,
                ffi::RSMPI_INFO_NULL,
                node,
                (&mut mine as *mut *mut f32).cast::<c_void>(),
                win.as_mut_ptr(),
            );
            let win = win.assume_init();
            ffi::MPI_Win_lock_all(ffi::MPI_MODE_NOCHECK as c_int, win);
            for r in 0..size {
                let mut got: ffi::MPI_Aint = 0;
                let mut unit: c_int = 0;
                let mut base: *mut f32 = std::ptr::null_mut();
                ffi::MPI_Win_shared_query(
                    win,
                    r,
                    &mut got,
                    &mut unit,
                    (&mut base as *mut *mut f32).cast::<c_void>(),
                );
                bases.push(base);
            }
            win
        };
        drop(c);
        Ok(Some(SharedSlab {
            group: self.clone(),
            node,
            win,
            bases,
            len,
            half: 0,
        }))
    }
}

impl SharedSlab {
    /// Rank `r`'s share of the elements: `[lo, hi)`.
    fn share(&self, r: usize) -> (usize, usize) {
        let p = self.bases.len();
        let step = self.len.div_ceil(p).next_multiple_of(ALIGN);
        ((r * step).min(self.len), ((r + 1) * step).min(self.len))
    }

    /// Rank `r`'s half for this step.
    fn segment(&self, r: usize) -> *mut f32 {
        // SAFETY: each segment holds 2 * len elements, so the offset (0 or len) stays
        // inside rank r's allocation.
        unsafe { self.bases[r].add(self.half * self.len) }
    }

    /// This rank's values for the next [`Self::all_reduce`] go here.
    pub(crate) fn mine(&mut self) -> &mut [f32] {
        let me = self.group.rank();
        // SAFETY: this rank's half for this step: `len` elements that only this rank
        // writes, and that no rank reads before the first barrier of `all_reduce` (the
        // other ranks are reading, if anything, the other half); `&mut self` keeps this
        // process from aliasing it.
        unsafe { std::slice::from_raw_parts_mut(self.segment(me), self.len) }
    }

    /// Every rank's values summed and times `scale` (collective: every rank calls it
    /// once per step, after writing [`Self::mine`]); [`Self::read`] then reads the result.
    /// `ok`: whether this rank's values are complete. If any rank's are not, nothing is
    /// summed and every rank gets the lowest such rank (the barrier exchanges the flags).
    pub(crate) fn all_reduce(&mut self, scale: f32, ok: bool) -> std::result::Result<(), usize> {
        let me = self.group.rank();
        // the lowest failed rank, or world size when none failed
        let failed = {
            let c = self.group.call("all_reduce(shared, written)");
            let local = if ok {
                self.bases.len() as u32
            } else {
                me as u32
            };
            let mut lowest = 0u32;
            // SAFETY: the window is valid until Drop.
            unsafe { ffi::MPI_Win_sync(self.win) };
            c.comm
                .world
                .all_reduce_into(&local, &mut lowest, SystemOperation::min());
            // SAFETY: as above.
            unsafe { ffi::MPI_Win_sync(self.win) };
            lowest as usize
        };
        if failed < self.bases.len() {
            return Err(failed);
        }
        let (lo, hi) = self.share(me);
        if lo < hi {
            let n = hi - lo;
            let others: Vec<&[f32]> = (0..self.bases.len())
                .filter(|&r| r != me)
                // SAFETY: rank r's half for this step, elements [lo, hi): written before
                // the barrier just passed, and nobody writes them until the next one.
                .map(|r| unsafe { std::slice::from_raw_parts(self.segment(r).add(lo), n) })
                .collect();
            // SAFETY: this rank's own share: only this rank writes it, and the other
            // ranks read it only after the next barrier.
            let out = unsafe { std::slice::from_raw_parts_mut(self.segment(me).add(lo), n) };
            sum_into(out, &others, scale);
        }
        self.fence("all_reduce(shared, summed)");
        self.group
            .count_data(self.len * std::mem::size_of::<f32>(), true);
        Ok(())
    }

    /// Copies the reduced elements `[at, at + dst.len())` into `dst`, from the segments
    /// of the ranks that summed them.
    pub(crate) fn read(&self, at: usize, dst: &mut [f32]) {
        let end = (at + dst.len()).min(self.len);
        let mut i = at;
        for r in 0..self.bases.len() {
            let (lo, hi) = self.share(r);
            let (from, to) = (i.max(lo), end.min(hi));
            if from >= to {
                continue;
            }
            // SAFETY: rank r's share of this step's half, summed before the last barrier
            // and not written again before the next step's barriers.
            let src = unsafe { std::slice::from_raw_parts(self.segment(r).add(from), to - from) };
            dst[from - at..to - at].copy_from_slice(src);
            i = to;
        }
    }

    /// The next all-reduce uses the other half of each segment.
    pub(crate) fn flip(&mut self) {
        self.half ^= 1;
    }

    /// Every rank's stores so far are visible to every rank (`MPI_Win_sync`, barrier,
    /// `MPI_Win_sync`: the shared-memory model's synchronization).
    fn fence(&self, op: &'static str) {
        let c = self.group.call(op);
        // SAFETY: the window and communicator are valid until Drop.
        unsafe {
            ffi::MPI_Win_sync(self.win);
            ffi::MPI_Barrier(self.node);
            ffi::MPI_Win_sync(self.win);
        }
        drop(c);
    }
}

impl Drop for SharedSlab {
    fn drop(&mut self) {
        // collective, as the allocation was: every rank drops its slab
        let c = self.group.call("shared_slab(free)");
        // SAFETY: the epoch opened in `shared_slab` is closed, then the window and the
        // node communicator are freed, once; nothing reads the segments afterwards.
        unsafe {
            ffi::MPI_Win_unlock_all(self.win);
            ffi::MPI_Win_free(&mut self.win);
            ffi::MPI_Comm_free(&mut self.node);
        }
        drop(c);
    }
}

/// `out[i] = (out[i] + Σ others[k][i]) * scale`, in blocks that stay in L1.
fn sum_into(out: &mut [f32], others: &[&[f32]], scale: f32) {
    const BLOCK: usize = 1024;
    for (b, o) in out.chunks_mut(BLOCK).enumerate() {
        let (at, n) = (b * BLOCK, o.len());
        for src in others {
            for (x, y) in o.iter_mut().zip(&src[at..at + n]) {
                *x += *y;
            }
        }
        if scale != 1.0 {
            for x in o.iter_mut() {
                *x *= scale;
            }
        }
    }
}
