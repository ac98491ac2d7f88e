//! The data pipeline's generator: splitmix64, stable forever, so a split, an epoch's
//! order and a sample's augmentation depend only on the seeds, never on a dependency's
//! version or on which thread draws.

/// A splitmix64 generator (Steele, Lea and Flood): tiny, fast, and the same on every
/// platform and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in `0..n` (`n > 0`; multiply-shift). `0` when `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform draw in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform draw in `[lo, hi)`.
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
}

/// A uniformly shuffled `0..n` (Fisher-Yates), fully determined by `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    shuffle(&mut p, seed);
    p
}

/// [`permutation`], or [`crate::Error::OutOfMemory`] naming `op` when `n` indices
/// cannot be allocated.
pub(crate) fn try_permutation(n: usize, seed: u64, op: &'static str) -> crate::Result<Vec<usize>> {
    let mut p = try_range(n, op)?;
    shuffle(&mut p, seed);
    Ok(p)
}

/// `0..n`, or [`crate::Error::OutOfMemory`] naming `op` when it cannot be allocated.
pub(crate) fn try_range(n: usize, op: &'static str) -> crate::Result<Vec<usize>> {
    let mut p = crate::host::try_with_capacity(n, op)?;
    p.extend(0..n);
    Ok(p)
}

/// Fisher-Yates over splitmix64 seeded by `seed`.
fn shuffle(p: &mut [usize], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in (1..p.len()).rev() {
        p.swap(i, rng.below(i + 1));
    }
}

/// Mixes a seed with a stream number (an epoch, a purpose), so derived streams differ.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    SplitMix64::new(seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03)).next_u64()
}

/// The seed of sample `index` in `epoch`: what a random transform of that sample
/// draws from, whichever worker thread loads it.
pub fn sample_seed(seed: u64, epoch: u64, index: usize) -> u64 {
    derive_seed(
        derive_seed(seed, epoch),
        index as u64 ^ 0x5a4d_504c_4500_0000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_seeded_shuffle() {
        let a = permutation(100, 1);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, permutation(100, 1));
        assert_ne!(a, permutation(100, 2));
        assert_ne!(a, s, "a shuffle of 100 elements should move something");
        assert!(permutation(0, 3).is_empty());
        assert_eq!(permutation(1, 3), vec![0]);
    }

    #[test]
    fn uniform_is_in_range_and_streams_differ() {
        let mut r = SplitMix64::new(3);
        let mean = (0..10_000).map(|_| r.uniform()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_ne!(sample_seed(0, 0, 1), sample_seed(0, 1, 1));
        assert_ne!(sample_seed(0, 0, 1), sample_seed(0, 0, 2));
        assert_ne!(derive_seed(0, 1), derive_seed(1, 1));
        assert_ne!(derive_seed(0, 0), derive_seed(0, 1));
        assert_eq!(derive_seed(5, 7), derive_seed(5, 7));
    }
}
