//! Flushing subnormal floats to zero on the CPU (PyTorch's `torch.set_flush_denormal`).
//!
//! An x86 core computes on subnormal operands (|x| < 1.2e-38 in f32) through a microcode
//! assist costing ~100 cycles per instruction: a deep net whose gradients shrink layer by
//! layer (100 x Linear(64, 64) + ReLU at the default init reaches them in the first
//! layers) runs 2-3x slower than it would with those values as zeros. Setting the MXCSR's
//! FTZ (results) and DAZ (inputs) bits trades them for zeros, as PyTorch's switch does.
//! The setting is per thread: it applies to the calling thread and to every thread of the
//! global rayon pool; threads started later keep the default.

/// MXCSR bits: flush-to-zero (15) and denormals-are-zero (6).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

/// Turns flushing of subnormal f32/f64 values to zero on (`true`) or off on this thread
/// and the rayon pool's threads. Returns whether the CPU supports it (x86-64 with SSE;
/// elsewhere it does nothing and returns false), as `torch.set_flush_denormal` does.
///
/// ```
/// # extern crate nn_core as nn;
/// let supported = nn::cpu::set_flush_denormal(true);
/// let tiny = std::hint::black_box(1e-39f32);
/// assert_eq!(tiny * 1.0 == 0.0, supported);
/// nn::cpu::set_flush_denormal(false);
/// ```
pub fn set_flush_denormal(on: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        rayon::broadcast(|_| set_here(on));
        set_here(on);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = on;
        false
    }
}

/// Whether this thread flushes subnormals to zero.
pub fn flush_denormal() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: reading the MXCSR has no preconditions on x86-64 (SSE is baseline).
        #[allow(deprecated)]
        let csr = unsafe { std::arch::x86_64::_mm_getcsr() };
        csr & FTZ_DAZ == FTZ_DAZ
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn set_here(on: bool) {
    // SAFETY: SSE is baseline on x86-64; only the FTZ and DAZ bits change (both
    // supported by every x86-64 CPU), leaving rounding and exception masks as they were.
    #[allow(deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        let csr = _mm_getcsr();
        _mm_setcsr(if on { csr | FTZ_DAZ } else { csr & !FTZ_DAZ });
    }
}

#[cfg(test)]
mod tests {
    // this thread only: the rayon pool is shared with the tests running beside this one
    // (the doctest of set_flush_denormal, a process of its own, covers the pool)
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn subnormals_become_zero_only_while_on() {
        let tiny = || std::hint::black_box(1e-39f32) * std::hint::black_box(1.0f32);
        assert!(tiny() != 0.0, "a subnormal survives by default");
        super::set_here(true);
        assert!(super::flush_denormal());
        assert_eq!(tiny(), 0.0);
        super::set_here(false);
        assert!(!super::flush_denormal());
        assert!(tiny() != 0.0);
    }
}
