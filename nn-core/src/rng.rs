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

/// `n` draws of a dropout mask from this thread's generator: `scale` where the uniform
/// draw `u ~ U[0, 1)` is below `keep`, 0 elsewhere; the values, and the generator's
/// state afterwards, of `(0..n).map(|_| if rng.random::<f32>() < keep { scale } else
/// { 0.0 })`, which the mask was before.
///
/// The generator's words are taken in one bulk fill (the same stream: a block generator
/// hands out its 32-bit words in order, little-endian, to `fill_bytes` as to
/// `next_u32`), then turned into the mask in place, split over the pool when large.
pub(crate) fn keep_mask(n: usize, keep: f32, scale: f32) -> crate::Result<Vec<f32>> {
    use rand::Rng;
    use rayon::prelude::*;
    // zeroed by the pool when large (the fill below overwrites it, on this thread)
    let mut out = crate::cpu::par::filled(n, 0.0, "dropout")?;
    with_rng(|r| r.fill_bytes(bytemuck::cast_slice_mut(&mut out)));
    // rand's f32 draw: the top 24 bits of a word times 2^-24, exact in f32
    let unit = 1.0 / (1u32 << 24) as f32;
    let to_mask = |c: &mut [f32]| {
        for v in c {
            let word = u32::from_le(v.to_bits());
            *v = if ((word >> 8) as f32) * unit < keep {
                scale
            } else {
                0.0
            };
        }
    };
    if n >= 1 << 16 && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(1 << 14).for_each(to_mask);
    } else {
        to_mask(&mut out);
    }
    Ok(out)
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
/// # extern crate nn_core as nn;
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
