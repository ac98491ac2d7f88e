//! The global random generator: `manual_seed` makes every draw reproducible.

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::{Mutex, OnceLock};

fn global() -> &'static Mutex<StdRng> {
    static RNG: OnceLock<Mutex<StdRng>> = OnceLock::new();
    RNG.get_or_init(|| Mutex::new(StdRng::seed_from_u64(0x5eed_0f_2026)))
}

/// Reseeds the global generator (PyTorch's `torch.manual_seed`). Every later random
/// tensor, initializer and dropout mask derives from it.
pub fn manual_seed(seed: u64) {
    let mut g = global().lock().unwrap_or_else(|e| e.into_inner());
    *g = StdRng::seed_from_u64(seed);
}

/// Runs `f` with the global generator.
pub fn with_rng<R>(f: impl FnOnce(&mut StdRng) -> R) -> R {
    let mut g = global().lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g)
}

/// Draws a fresh 64-bit stream key from the global generator (one per parameter), so a
/// parameter's initial values depend only on the seed and its creation order, not on
/// when its shape becomes known.
pub fn next_key() -> u64 {
    with_rng(|r| rand::Rng::random(r))
}

/// A generator for one stream key.
pub fn stream(key: u64) -> StdRng {
    StdRng::seed_from_u64(key)
}
