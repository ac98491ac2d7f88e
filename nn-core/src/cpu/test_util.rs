//! Helpers shared by the host kernels' tests (Winograd, direct convolution): fixed
//! inputs, a pool of a given size, and a tolerance relative to the reference's scale.

use crate::{Error, Result};

/// Values in [-1, 1) with a few exact zeros, from a fixed integer hash.
pub(super) fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + salt * 104_729) % 1013) as f32 / 506.5 - 1.0)
        .collect()
}

/// A rayon pool of `threads` threads.
pub(super) fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::custom(e.to_string()))
}

/// Asserts that `got` is `want` within `rel` of the largest `|want|` (at least 1).
pub(super) fn close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale,
            "{what}: element {i}: {g} vs {w} (scale {scale})"
        );
    }
}
