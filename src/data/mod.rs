//! Data sets and mini-batching for the examples: the UCI digits ([`Digits`]) and a
//! seeded permutation that neither depends on the `rand` version nor on global state.

mod digits;

pub use digits::{Batches, Digits};

/// A splitmix64 generator: tiny, fast, and stable forever (the data split and batch
/// order must not change when a dependency is upgraded).
#[derive(Debug, Clone)]
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

    /// A draw in `0..n` (`n > 0`; Lemire's multiply-shift, bias below 2^-40 for n < 2^24).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// A uniformly shuffled `0..n` (Fisher-Yates), fully determined by `seed`.
///
/// ```
/// let p = nn::data::permutation(10, 42);
/// let mut sorted = p.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..10).collect::<Vec<_>>());
/// assert_eq!(p, nn::data::permutation(10, 42));
/// ```
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.below(i + 1));
    }
    p
}

/// Mixes a seed with a stream number (an epoch, a purpose), so derived streams differ.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    SplitMix64::new(seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03)).next_u64()
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
    fn derived_seeds_differ_per_stream() {
        assert_ne!(derive_seed(0, 0), derive_seed(0, 1));
        assert_ne!(derive_seed(0, 1), derive_seed(1, 1));
        assert_eq!(derive_seed(5, 7), derive_seed(5, 7));
    }
}
