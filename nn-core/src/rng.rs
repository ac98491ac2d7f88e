//! Random generators: `manual_seed` makes every draw reproducible.
//!
//! Each thread owns a generator (no lock on the hot path, and tests running in
//! parallel cannot disturb each other's streams). `manual_seed` reseeds the calling
//! thread's generator and sets the seed that threads started afterwards begin from.

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

static DEFAULT_SEED: AtomicU64 = AtomicU64::new(0x5eed_0f20_26aa);

thread_local! {
    static RNG: RefCell<StdRng> = RefCell::new(StdRng::seed_from_u64(DEFAULT_SEED.load(Ordering::Relaxed)));
}

/// Reseeds the generator (PyTorch's `torch.manual_seed`). Every later random tensor,
/// initializer and dropout mask on this thread derives from it; threads started later
/// begin from the same seed.
pub fn manual_seed(seed: u64) {
    DEFAULT_SEED.store(seed, Ordering::Relaxed);
    RNG.with(|r| *r.borrow_mut() = StdRng::seed_from_u64(seed));
}

/// Runs `f` with this thread's generator.
pub fn with_rng<R>(f: impl FnOnce(&mut StdRng) -> R) -> R {
    RNG.with(|r| f(&mut r.borrow_mut()))
}

/// Draws a fresh 64-bit stream key (one per parameter), so a parameter's initial values
/// depend only on the seed and its creation order, not on when its shape becomes known.
pub fn next_key() -> u64 {
    with_rng(rand::Rng::random)
}

/// A generator for one stream key.
pub fn stream(key: u64) -> StdRng {
    StdRng::seed_from_u64(key)
}
