//! Samplers: the order in which a [`super::DataLoader`] visits a data set, epoch by
//! epoch (PyTorch's `torch.utils.data.Sampler` family). An epoch's order is a function of
//! the sampler's seed and the epoch number only.

use super::seed::{derive_seed, try_permutation, try_range, SplitMix64};
use crate::host::try_with_capacity;
use crate::{Error, Result};

/// An order of sample indices per epoch.
pub trait Sampler: Send + Sync {
    /// Indices per epoch.
    fn len(&self) -> usize;

    /// Whether an epoch visits no index.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The indices of `epoch` (0-based), in the order to visit them; `len()` of them.
    /// Like any allocation, it aborts the process when they do not fit in memory (a
    /// huge `num_samples`): [`Sampler::try_indices`] returns an error instead.
    fn indices(&self, epoch: u64) -> Vec<usize>;

    /// [`Sampler::indices`], or an [`Error::OutOfMemory`] naming the sampler and the
    /// size when they cannot be allocated (the [`super::DataLoader`] calls this one).
    /// The default calls [`Sampler::indices`]: a sampler of your own that may be asked
    /// for more indices than fit overrides it.
    fn try_indices(&self, epoch: u64) -> Result<Vec<usize>> {
        Ok(self.indices(epoch))
    }
}

impl<S: Sampler + ?Sized> Sampler for Box<S> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn indices(&self, epoch: u64) -> Vec<usize> {
        (**self).indices(epoch)
    }
    fn try_indices(&self, epoch: u64) -> Result<Vec<usize>> {
        (**self).try_indices(epoch)
    }
}

/// `indices`' answer when `try_indices` failed: the process aborts, as the failed
/// allocation of `n` indices would have aborted it.
pub(super) fn or_abort(r: Result<Vec<usize>>, n: usize) -> Vec<usize> {
    match r {
        Ok(v) => v,
        Err(_) => std::alloc::handle_alloc_error(
            std::alloc::Layout::array::<usize>(n).unwrap_or(std::alloc::Layout::new::<usize>()),
        ),
    }
}

/// `0..len` in order, every epoch (PyTorch's `SequentialSampler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequentialSampler {
    len: usize,
}

impl SequentialSampler {
    /// A sampler over `len` samples.
    pub fn new(len: usize) -> Self {
        SequentialSampler { len }
    }
}

impl Sampler for SequentialSampler {
    fn len(&self) -> usize {
        self.len
    }
    fn indices(&self, epoch: u64) -> Vec<usize> {
        or_abort(self.try_indices(epoch), self.len)
    }
    fn try_indices(&self, _epoch: u64) -> Result<Vec<usize>> {
        try_range(self.len, "SequentialSampler::indices")
    }
}

/// A random order (PyTorch's `RandomSampler`): without replacement, epoch `e` is the
/// permutation seeded by `derive_seed(seed, e)` (Fisher-Yates over splitmix64, stable
/// across versions; `num_samples` beyond the length concatenates further permutations,
/// as PyTorch does); with replacement, `num_samples` uniform draws.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::{RandomSampler, Sampler};
/// let s = RandomSampler::new(5, 7);
/// let mut e0 = s.indices(0);
/// assert_eq!(e0, s.indices(0));          // a function of (seed, epoch)
/// assert_ne!(e0, s.indices(1));
/// e0.sort();
/// assert_eq!(e0, vec![0, 1, 2, 3, 4]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomSampler {
    len: usize,
    seed: u64,
    replacement: bool,
    num_samples: Option<usize>,
}

impl RandomSampler {
    /// A sampler over `len` samples, seeded by `seed`, without replacement.
    pub fn new(len: usize, seed: u64) -> Self {
        RandomSampler {
            len,
            seed,
            replacement: false,
            num_samples: None,
        }
    }

    /// Draws with replacement (PyTorch's `replacement=True`).
    pub fn replacement(mut self, on: bool) -> Self {
        self.replacement = on;
        self
    }

    /// Indices per epoch (default: the data set's length).
    pub fn num_samples(mut self, n: usize) -> Self {
        self.num_samples = Some(n);
        self
    }
}

impl Sampler for RandomSampler {
    fn len(&self) -> usize {
        self.num_samples.unwrap_or(self.len)
    }

    fn indices(&self, epoch: u64) -> Vec<usize> {
        or_abort(self.try_indices(epoch), self.len())
    }

    fn try_indices(&self, epoch: u64) -> Result<Vec<usize>> {
        const OP: &str = "RandomSampler::indices";
        let n = self.len();
        let seed = derive_seed(self.seed, epoch);
        if self.len == 0 {
            return Ok(Vec::new());
        }
        if self.replacement {
            let mut rng = SplitMix64::new(seed);
            let mut out = try_with_capacity(n, OP)?;
            out.extend((0..n).map(|_| rng.below(self.len)));
            return Ok(out);
        }
        if n == self.len {
            return try_permutation(self.len, seed, OP);
        }
        let mut out = try_with_capacity(n, OP)?;
        let mut round = 0u64;
        while out.len() < n {
            let p = try_permutation(self.len, derive_seed(seed, round), OP)?;
            let take = (n - out.len()).min(self.len);
            out.extend_from_slice(&p[..take]);
            round += 1;
        }
        Ok(out)
    }
}

/// Indices drawn with probabilities proportional to `weights` (PyTorch's
/// `WeightedRandomSampler`): with replacement by inverse-CDF draws, without replacement
/// by Efraimidis-Spirakis keys (the same distribution as sequential draws without
/// replacement, which `torch.multinomial` makes).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedRandomSampler {
    cumulative: Vec<f64>,
    weights: Vec<f64>,
    num_samples: usize,
    replacement: bool,
    seed: u64,
}

impl WeightedRandomSampler {
    /// `num_samples` indices per epoch from `weights` (finite, non-negative, not all
    /// zero; without replacement at least `num_samples` of them positive).
    pub fn new(
        weights: Vec<f64>,
        num_samples: usize,
        replacement: bool,
        seed: u64,
    ) -> Result<Self> {
        const OP: &str = "WeightedRandomSampler::new";
        if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(Error::invalid_config(
                OP,
                "weights",
                w,
                "must be finite and non-negative",
            ));
        }
        let positive = weights.iter().filter(|w| **w > 0.0).count();
        if positive == 0 && num_samples > 0 {
            return Err(Error::invalid_config(
                OP,
                "weights",
                format!("{} weights", weights.len()),
                "all are zero",
            ));
        }
        if !replacement && num_samples > positive {
            return Err(Error::invalid_config(
                OP,
                "num_samples",
                num_samples,
                format!("without replacement at most the {positive} positive weights"),
            ));
        }
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        Ok(WeightedRandomSampler {
            cumulative,
            weights,
            num_samples,
            replacement,
            seed,
        })
    }
}

impl Sampler for WeightedRandomSampler {
    fn len(&self) -> usize {
        self.num_samples
    }

    fn indices(&self, epoch: u64) -> Vec<usize> {
        or_abort(self.try_indices(epoch), self.num_samples)
    }

    fn try_indices(&self, epoch: u64) -> Result<Vec<usize>> {
        let mut rng = SplitMix64::new(derive_seed(self.seed, epoch));
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        if self.replacement {
            let last = self.weights.len().saturating_sub(1);
            let mut out = try_with_capacity(self.num_samples, "WeightedRandomSampler::indices")?;
            out.extend((0..self.num_samples).map(|_| {
                let u = rng.uniform() * total;
                // the first index whose cumulative weight exceeds u (zero weights are skipped)
                self.cumulative.partition_point(|&c| c <= u).min(last)
            }));
            return Ok(out);
        }
        let mut keys: Vec<(f64, usize)> = self
            .weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0.0)
            .map(|(i, w)| ((1.0 - rng.uniform()).ln() / w, i))
            .collect();
        keys.sort_by(|a, b| b.0.total_cmp(&a.0));
        // without replacement `num_samples` is at most the weights' count
        Ok(keys
            .into_iter()
            .take(self.num_samples)
            .map(|(_, i)| i)
            .collect())
    }
}

/// Groups a sampler's indices into mini-batches (PyTorch's `BatchSampler`): the last
/// batch is smaller unless `drop_last`.
pub struct BatchSampler {
    sampler: Box<dyn Sampler>,
    batch_size: usize,
    drop_last: bool,
}

impl std::fmt::Debug for BatchSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSampler")
            .field("len", &self.sampler.len())
            .field("batch_size", &self.batch_size)
            .field("drop_last", &self.drop_last)
            .finish()
    }
}

impl BatchSampler {
    /// Batches of `batch_size` (at least 1) indices of `sampler`.
    pub fn new(
        sampler: impl Sampler + 'static,
        batch_size: usize,
        drop_last: bool,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::invalid_config(
                "BatchSampler::new",
                "batch_size",
                0,
                "must be at least 1",
            ));
        }
        Ok(BatchSampler {
            sampler: Box::new(sampler),
            batch_size,
            drop_last,
        })
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.sampler.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// Whether an epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The batches of `epoch` (aborting like any allocation where they do not fit in
    /// memory: [`Self::try_batches`] returns an error instead).
    pub fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let idx = self.sampler.indices(epoch);
        let mut out: Vec<Vec<usize>> = idx.chunks(self.batch_size).map(<[usize]>::to_vec).collect();
        if self.drop_last && out.last().is_some_and(|b| b.len() < self.batch_size) {
            out.pop();
        }
        out
    }

    /// The batches of `epoch`, or an [`Error::OutOfMemory`] naming the sampler (or
    /// `BatchSampler`) and the size where they cannot be allocated.
    pub fn try_batches(&self, epoch: u64) -> Result<Vec<Vec<usize>>> {
        let idx = self.sampler.try_indices(epoch)?;
        let mut out =
            try_with_capacity(idx.len().div_ceil(self.batch_size), "BatchSampler::batches")?;
        out.extend(idx.chunks(self.batch_size).map(<[usize]>::to_vec));
        if self.drop_last
            && out
                .last()
                .is_some_and(|b: &Vec<usize>| b.len() < self.batch_size)
        {
            out.pop();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_and_batches_match_pytorch() -> Result<()> {
        // list(BatchSampler(SequentialSampler(range(10)), batch_size=3, drop_last=False))
        let b = BatchSampler::new(SequentialSampler::new(10), 3, false)?;
        assert_eq!(
            b.batches(0),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]
        );
        assert_eq!(b.len(), 4);
        let b = BatchSampler::new(SequentialSampler::new(10), 3, true)?;
        assert_eq!((b.len(), b.batches(0).len()), (3, 3));
        assert!(BatchSampler::new(SequentialSampler::new(1), 0, false).is_err());
        Ok(())
    }

    #[test]
    fn random_sampler_modes() {
        let s = RandomSampler::new(10, 3).num_samples(25);
        let e = s.indices(0);
        assert_eq!(e.len(), 25);
        let mut first: Vec<usize> = e[..10].to_vec();
        first.sort_unstable();
        assert_eq!(
            first,
            (0..10).collect::<Vec<_>>(),
            "whole permutations first"
        );
        let r = RandomSampler::new(4, 3)
            .replacement(true)
            .num_samples(1000)
            .indices(2);
        assert!(r.iter().all(|&i| i < 4));
        for k in 0..4 {
            let c = r.iter().filter(|&&i| i == k).count();
            assert!((200..300).contains(&c), "{k}: {c}");
        }
        assert!(RandomSampler::new(0, 1).indices(0).is_empty());
    }

    #[test]
    fn weighted_sampler_follows_weights() -> Result<()> {
        let s = WeightedRandomSampler::new(vec![0.0, 1.0, 3.0], 4000, true, 5)?;
        let d = s.indices(0);
        assert_eq!(d.iter().filter(|&&i| i == 0).count(), 0);
        let twos = d.iter().filter(|&&i| i == 2).count();
        assert!((2800..3200).contains(&twos), "{twos}");
        let s = WeightedRandomSampler::new(vec![1.0, 0.0, 5.0, 2.0], 3, false, 5)?;
        let mut d = s.indices(1);
        d.sort_unstable();
        assert_eq!(d, vec![0, 2, 3]);
        assert!(WeightedRandomSampler::new(vec![1.0, 0.0], 2, false, 0).is_err());
        assert!(WeightedRandomSampler::new(vec![-1.0], 1, true, 0).is_err());
        assert!(WeightedRandomSampler::new(vec![0.0], 1, true, 0).is_err());
        Ok(())
    }
}
