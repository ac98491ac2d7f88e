//! A counting global allocator for the tests that prove a step allocates nothing. A test
//! crate includes this file and installs the allocator itself:
//!
//! ```ignore
//! #[path = "common/counting_alloc.rs"]
//! mod counting_alloc;
//! #[global_allocator]
//! static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;
//! ```

use nn::Result;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator: forwards to the system allocator and counts this thread's
/// allocations while [`count`] runs.
pub struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Allocations at least this large are buffers (the graph's records are smaller).
pub const BUFFER_BYTES: usize = 256;

fn note(size: usize) {
    // try_with: allocations during thread teardown are not counted
    let _ = ON.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| {
                let (all, big) = c.get();
                c.set((all + 1, big + usize::from(size >= BUFFER_BYTES)));
            });
        }
    });
}

// SAFETY: every call forwards to the system allocator unchanged; the bookkeeping touches
// only const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        // SAFETY: forwarded with the caller's pointer and layouts.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(p, l) }
    }
}

/// (allocations, allocations of at least [`BUFFER_BYTES`]) made by `f` on this thread.
pub fn count(f: impl FnOnce() -> Result<()>) -> Result<(usize, usize)> {
    COUNT.with(|c| c.set((0, 0)));
    ON.with(|on| on.set(true));
    let r = f();
    ON.with(|on| on.set(false));
    r?;
    Ok(COUNT.with(|c| c.get()))
}
