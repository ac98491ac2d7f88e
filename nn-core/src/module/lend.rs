//! Re-entrancy bookkeeping of [`crate::Param`]: which parameters this thread is
//! lending to a `with_data_mut` closure (so calls on them from inside answer or fail
//! instead of deadlocking on the lock the closure's caller holds).

use crate::Device;

thread_local! {
    /// Parameters whose data this thread is lending to a `with_data_mut` closure, with
    /// their shape and device: the write lock is held meanwhile, so a call on the same
    /// parameter from inside the closure must not touch the lock (it would deadlock).
    /// Metadata is answered from here; everything that needs the data is an
    /// [`Error::Reentrant`].
    pub(super) static LENT: std::cell::RefCell<Vec<(u64, Vec<usize>, Device)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks a parameter as lent by this thread for as long as it lives.
pub(super) struct Lend(u64);

impl Lend {
    pub(super) fn new(id: u64, shape: Vec<usize>, device: Device) -> Lend {
        LENT.with(|l| l.borrow_mut().push((id, shape, device)));
        Lend(id)
    }
}

impl Drop for Lend {
    fn drop(&mut self) {
        LENT.with(|l| l.borrow_mut().retain(|(id, ..)| *id != self.0));
    }
}
