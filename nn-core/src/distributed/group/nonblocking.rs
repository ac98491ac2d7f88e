//! Non-blocking all-reduces (`MPI_Iallreduce` / `MPI_Testall` / `MPI_Waitall`): DDP's
//! buckets reduced while backward goes on.

use super::*;

/// A non-blocking all-reduce in flight ([`ProcessGroup::start_all_reduce_sum`]); empty
/// once complete.
pub(crate) struct InFlight {
    requests: Vec<mpi::ffi::MPI_Request>,
}

// SAFETY: MPI request handles are plain values that any thread may complete under the
// `Serialized` threading level, and every MPI call on them goes through the group's lock.
unsafe impl Send for InFlight {}

impl ProcessGroup {
    /// Starts the sum over ranks of `send` into `recv` (`MPI_Iallreduce`, in pieces of
    /// at most [`MAX_CHUNK`] elements; same lengths on every rank, trusted), counted as
    /// one all-reduce. It moves on while this rank calls [`Self::test_all_reduce`] and
    /// ends in [`Self::wait_all_reduce`]. Every rank must start the same all-reduces in
    /// the same order.
    ///
    /// # Safety
    ///
    /// 1. `send` and `recv` stay allocated and in place, and nothing reads or writes
    ///    them, until [`Self::test_all_reduce`] returned true or
    ///    [`Self::wait_all_reduce`] returned for the returned [`InFlight`].
    /// 2. The returned [`InFlight`] is waited for before the group's last handle is
    ///    dropped (MPI is finalized then).
    pub(crate) unsafe fn start_all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) -> InFlight {
        use mpi::datatype::Equivalence;
        use mpi::raw::AsRaw;
        self.count_data(std::mem::size_of_val(send), true);
        let c = self.call("all_reduce(start)");
        let mut requests = Vec::with_capacity(send.len().div_ceil(MAX_CHUNK));
        for (src, dst) in send.chunks(MAX_CHUNK).zip(recv.chunks_mut(MAX_CHUNK)) {
            let mut request = std::mem::MaybeUninit::<mpi::ffi::MPI_Request>::uninit();
            // SAFETY: the pointers and count (at most MAX_CHUNK, an MPI int) describe live
            // f32 slices whose lifetime and exclusivity until completion the caller
            // guarantees (1.); the datatype, op and communicator handles are valid while
            // the group lives; MPI writes the request handle before returning.
            let request = unsafe {
                mpi::ffi::MPI_Iallreduce(
                    src.as_ptr().cast(),
                    dst.as_mut_ptr().cast(),
                    src.len() as std::os::raw::c_int,
                    f32::equivalent_datatype().as_raw(),
                    SystemOperation::sum().as_raw(),
                    c.comm.world.as_raw(),
                    request.as_mut_ptr(),
                );
                request.assume_init()
            };
            requests.push(request);
        }
        InFlight { requests }
    }

    /// Lets `flight` progress; true once it is complete (then its buffers are free).
    pub(crate) fn test_all_reduce(&self, flight: &mut InFlight) -> bool {
        if flight.requests.is_empty() {
            return true;
        }
        let mut flag: std::os::raw::c_int = 0;
        let c = self.call("all_reduce(test)");
        // SAFETY: the requests came from MPI_Iallreduce and are not yet complete (a
        // complete set is cleared below); MPI sets finished ones to MPI_REQUEST_NULL.
        unsafe {
            mpi::ffi::MPI_Testall(
                flight.requests.len() as std::os::raw::c_int,
                flight.requests.as_mut_ptr(),
                &mut flag,
                mpi::ffi::RSMPI_STATUSES_IGNORE,
            );
        }
        drop(c);
        if flag != 0 {
            flight.requests.clear();
        }
        flag != 0
    }

    /// Waits until `flight` is complete (under the collective timeout).
    pub(crate) fn wait_all_reduce(&self, flight: &mut InFlight) {
        if flight.requests.is_empty() {
            return;
        }
        let c = self.call("all_reduce(wait)");
        // SAFETY: as in `test_all_reduce`; MPI_Waitall returns with every request done.
        unsafe {
            mpi::ffi::MPI_Waitall(
                flight.requests.len() as std::os::raw::c_int,
                flight.requests.as_mut_ptr(),
                mpi::ffi::RSMPI_STATUSES_IGNORE,
            );
        }
        drop(c);
        flight.requests.clear();
    }
}
