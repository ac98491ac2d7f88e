//! A per-thread cache of freed f32 buffers, so a steady-state training step reuses the
//! memory of the step before instead of asking the allocator (and, for buffers above
//! glibc's mmap threshold, the kernel: fresh pages fault in and are zeroed on first touch).
//!
//! It belongs to host memory, below every backend: a CPU storage gives its f32 vector
//! back here when dropped; the host allocation helpers ([`crate::host`]) hand out a
//! cached vector of exactly the requested capacity, emptied. The
//! cache is bounded per thread (256 MiB in all, 4096 buffers of one size, 32 sizes, the
//! oldest size evicted first) and never shared between threads, so it takes no lock.
//! Buffers under 64 or over 16 Mi elements go to the allocator as before. Freed memory
//! thus stays with the thread that freed it until [`clear`] (or the thread's end).

use std::cell::RefCell;

/// Smallest buffer worth caching (the allocator's own thread cache serves smaller ones
/// as fast).
pub(crate) const MIN_LEN: usize = 64;
/// Largest buffer cached (64 MiB of f32): a model-sized tensor is freed, not kept.
pub(crate) const MAX_LEN: usize = 16 << 20;
/// Bytes one thread may keep cached.
pub(crate) const MAX_BYTES: usize = 256 << 20;
/// Cached buffers of one size (a deep net's activations are hundreds of one size).
const MAX_PER_SIZE: usize = 4096;
/// Distinct sizes cached.
const MAX_SIZES: usize = 32;

/// Cached buffers, by exact capacity.
#[derive(Default)]
struct Pool {
    /// (capacity, buffers), oldest size first.
    sizes: Vec<(usize, Vec<Vec<f32>>)>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An empty vector with capacity exactly `n` from this thread's cache, if it has one.
pub(crate) fn take(n: usize) -> Option<Vec<f32>> {
    if !(MIN_LEN..=MAX_LEN).contains(&n) {
        return None;
    }
    POOL.try_with(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let i = p.sizes.iter().position(|(cap, _)| *cap == n)?;
        let v = p.sizes[i].1.pop()?;
        p.bytes -= n * 4;
        Some(v)
    })
    .ok()
    .flatten()
}

/// Keeps `v` for reuse on this thread when it fits the bounds; frees it otherwise.
pub(crate) fn give(mut v: Vec<f32>) {
    let n = v.capacity();
    if !(MIN_LEN..=MAX_LEN).contains(&n) {
        return;
    }
    v.clear();
    // a thread being torn down (or a re-entrant call) frees instead
    let _ = POOL.try_with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        if p.bytes + n * 4 > MAX_BYTES {
            return;
        }
        let i = match p.sizes.iter().position(|(cap, _)| *cap == n) {
            Some(i) => i,
            None => {
                if p.sizes.len() == MAX_SIZES {
                    let (cap, old) = p.sizes.remove(0);
                    p.bytes -= cap * 4 * old.len();
                }
                p.sizes.push((n, Vec::new()));
                p.sizes.len() - 1
            }
        };
        if p.sizes[i].1.len() < MAX_PER_SIZE {
            p.sizes[i].1.push(v);
            p.bytes += n * 4;
        }
    });
}

/// Frees every buffer this thread has cached.
pub fn clear() {
    let _ = POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            *p = Pool::default();
        }
    });
}

/// Bytes this thread has cached.
pub fn cached_bytes() -> usize {
    POOL.try_with(|p| p.try_borrow().map(|p| p.bytes).unwrap_or(0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_buffer_is_handed_out_again_empty_and_bounds_hold() {
        clear();
        let mut v = Vec::with_capacity(100);
        v.extend(std::iter::repeat_n(1.5f32, 100));
        let ptr = v.as_ptr();
        give(v);
        assert_eq!(cached_bytes(), 400);
        assert!(take(99).is_none(), "only the exact capacity is reused");
        let w = take(100).expect("the cached buffer");
        assert_eq!((w.as_ptr(), w.len(), w.capacity()), (ptr, 0, 100));
        assert_eq!(cached_bytes(), 0);
        // too small and too large buffers are not kept
        give(Vec::with_capacity(MIN_LEN - 1));
        give(Vec::with_capacity(MAX_LEN + 1));
        assert_eq!(cached_bytes(), 0);
        // at most MAX_PER_SIZE of one size
        for _ in 0..MAX_PER_SIZE + 3 {
            give(Vec::with_capacity(MIN_LEN));
        }
        assert_eq!(cached_bytes(), MAX_PER_SIZE * MIN_LEN * 4);
        // at most MAX_SIZES sizes: the oldest goes first
        for n in 0..MAX_SIZES {
            give(Vec::with_capacity(1000 + n));
        }
        assert!(take(MIN_LEN).is_none() && take(1000 + MAX_SIZES - 1).is_some());
        clear();
        assert_eq!(cached_bytes(), 0);
    }
}
