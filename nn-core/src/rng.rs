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
    with_rng(rand::RngExt::random)
}

/// A generator for one stream key.
pub fn stream(key: u64) -> StdRng {
    StdRng::seed_from_u64(key)
}

/// Where the generators stand, as a training checkpoint stores it
/// ([`crate::io::TrainingCheckpoint`]): [`RngState::restore`] makes every later draw on
/// this thread (initializers, random tensors, dropout masks) what it was after
/// [`RngState::capture`] in the run it came from.
///
/// `rand` does not expose its generator's internal state, so capturing *re-keys* the
/// generator: it draws a fresh key from the current stream, reseeds the thread's
/// generator from that key and returns it. A run that captures (say, at the end of every
/// epoch) and a run restored from one of its captures therefore continue with identical
/// draws; capturing is not free of effect on the stream, so capture at the same points
/// in every run you want to compare.
///
/// ```
/// use nn::{rng::RngState, Tensor};
/// nn::manual_seed(7);
/// let state = RngState::capture();
/// let a = Tensor::rand(&[3]).to_vec::<f32>()?;
/// state.restore();
/// assert_eq!(Tensor::rand(&[3]).to_vec::<f32>()?, a);
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RngState {
    /// The key this thread's generator was reseeded from at the capture.
    pub key: u64,
    /// The seed threads started afterwards begin from (what [`manual_seed`] set).
    pub default_seed: u64,
}

impl RngState {
    /// Re-keys this thread's generator and returns the state to restore later.
    pub fn capture() -> RngState {
        let key = next_key();
        RNG.with(|r| *r.borrow_mut() = StdRng::seed_from_u64(key));
        RngState {
            key,
            default_seed: DEFAULT_SEED.load(Ordering::Relaxed),
        }
    }

    /// Puts this thread's generator (and the seed of threads started later) back where
    /// [`RngState::capture`] left them.
    pub fn restore(&self) {
        DEFAULT_SEED.store(self.default_seed, Ordering::Relaxed);
        RNG.with(|r| *r.borrow_mut() = StdRng::seed_from_u64(self.key));
    }
}
