//! Iterable data sets for streams larger than memory (PyTorch's `IterableDataset`):
//! each worker reads its own shard, and [`IterableLoader`] batches what they read.

use super::collate::{Collate, DefaultCollate};
use super::loader::{guarded, Pool};
use crate::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A boxed stream of samples.
pub type SampleStream<T> = Box<dyn Iterator<Item = Result<T>> + Send>;

/// A stream of samples, split into shards: worker `w` of `n` reads
/// `shard(w, n)`, and the shards together hold the stream once (as a PyTorch
/// `IterableDataset` does with `get_worker_info()`).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::{IterableDataset, IterableLoader, SampleStream};
/// use nn::Result;
/// struct Numbers(i64);
/// impl IterableDataset for Numbers {
///     type Item = i64;
///     fn shard(&self, w: usize, n: usize) -> Result<SampleStream<i64>> {
///         Ok(Box::new((0..self.0).skip(w).step_by(n).map(Ok)))
///     }
/// }
/// let loader = IterableLoader::builder(Numbers(10)).batch_size(4).num_workers(2).build()?;
/// let mut seen: Vec<i64> = Vec::new();
/// for b in &loader {
///     seen.extend(b?.to_vec::<i64>()?);
/// }
/// seen.sort();
/// assert_eq!(seen, (0..10).collect::<Vec<_>>());
/// # Ok::<(), nn::Error>(())
/// ```
pub trait IterableDataset: Send + Sync + 'static {
    /// One sample.
    type Item: Send + 'static;
    /// Shard `worker` of `num_workers` (`0` of `1` without workers).
    fn shard(&self, worker: usize, num_workers: usize) -> Result<SampleStream<Self::Item>>;
}

/// Batches of an [`IterableDataset`]: each worker batches its own shard, and the
/// batches arrive round-robin over the workers still running (PyTorch's order).
pub struct IterableLoader<D, C = DefaultCollate> {
    dataset: Arc<D>,
    collate: Arc<C>,
    batch_size: usize,
    drop_last: bool,
    num_workers: usize,
    prefetch_factor: usize,
}

impl<D, C> std::fmt::Debug for IterableLoader<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IterableLoader")
            .field("batch_size", &self.batch_size)
            .field("num_workers", &self.num_workers)
            .finish()
    }
}

/// Settings of an [`IterableLoader`].
#[derive(Debug)]
pub struct IterableLoaderBuilder<D, C> {
    dataset: D,
    collate: C,
    batch_size: usize,
    drop_last: bool,
    num_workers: usize,
    prefetch_factor: usize,
}

impl<D: IterableDataset> IterableLoader<D, DefaultCollate> {
    /// Starts a loader over `dataset`: batch size 1, no workers, the default collate.
    pub fn builder(dataset: D) -> IterableLoaderBuilder<D, DefaultCollate> {
        IterableLoaderBuilder {
            dataset,
            collate: DefaultCollate,
            batch_size: 1,
            drop_last: false,
            num_workers: 0,
            prefetch_factor: 2,
        }
    }
}

impl<D: IterableDataset, C> IterableLoaderBuilder<D, C> {
    /// Samples per batch (default 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Drops each worker's last batch when it is short.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    /// Worker threads, each reading its own shard (0: the calling thread reads shard 0 of 1).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }
    /// Batches each worker may hold ready (default 2).
    pub fn prefetch_factor(mut self, n: usize) -> Self {
        self.prefetch_factor = n;
        self
    }
    /// Batches with `collate` instead of [`DefaultCollate`].
    pub fn collate<C2>(self, collate: C2) -> IterableLoaderBuilder<D, C2> {
        IterableLoaderBuilder {
            dataset: self.dataset,
            collate,
            batch_size: self.batch_size,
            drop_last: self.drop_last,
            num_workers: self.num_workers,
            prefetch_factor: self.prefetch_factor,
        }
    }
    /// The loader.
    pub fn build(self) -> Result<IterableLoader<D, C>>
    where
        C: Collate<D::Item> + 'static,
    {
        for (field, v) in [
            ("batch_size", self.batch_size),
            ("prefetch_factor", self.prefetch_factor),
        ] {
            if v == 0 {
                return Err(Error::invalid_config(
                    "IterableLoader",
                    field,
                    0,
                    "must be at least 1",
                ));
            }
        }
        Ok(IterableLoader {
            dataset: Arc::new(self.dataset),
            collate: Arc::new(self.collate),
            batch_size: self.batch_size,
            drop_last: self.drop_last,
            num_workers: self.num_workers,
            prefetch_factor: self.prefetch_factor,
        })
    }
}

/// Batches of one shard's stream.
struct ShardBatches<T, C> {
    stream: Option<SampleStream<T>>,
    collate: Arc<C>,
    batch_size: usize,
    drop_last: bool,
    read: usize,
}

impl<T: Send + 'static, C: Collate<T>> Iterator for ShardBatches<T, C> {
    type Item = Result<C::Batch>;
    fn next(&mut self) -> Option<Result<C::Batch>> {
        let stream = self.stream.as_mut()?;
        let mut samples = Vec::with_capacity(self.batch_size);
        while samples.len() < self.batch_size {
            let at = self.read;
            match guarded(
                || format!("the stream's sample {at}"),
                || stream.next().transpose(),
            ) {
                Ok(Some(s)) => samples.push(s),
                Ok(None) => {
                    self.stream = None;
                    break;
                }
                Err(e) => {
                    self.read += 1;
                    return Some(Err(Error::Sample {
                        index: at,
                        source: Box::new(e),
                    }));
                }
            }
            self.read += 1;
        }
        if samples.is_empty() || (self.drop_last && samples.len() < self.batch_size) {
            return None;
        }
        let collate = &self.collate;
        Some(guarded(|| "collate".into(), || collate.collate(samples)))
    }
}

impl<D: IterableDataset, C: Collate<D::Item> + 'static> IterableLoader<D, C> {
    /// One pass over the stream.
    pub fn iter(&self) -> IterableIter<C::Batch> {
        let shard =
            |w: usize, n: usize, ds: &D, collate: Arc<C>| -> Result<ShardBatches<D::Item, C>> {
                Ok(ShardBatches {
                    stream: Some(guarded(|| format!("shard({w}, {n})"), || ds.shard(w, n))?),
                    collate,
                    batch_size: self.batch_size,
                    drop_last: self.drop_last,
                    read: 0,
                })
            };
        if self.num_workers == 0 {
            let it: Box<dyn Iterator<Item = Result<C::Batch>>> =
                match shard(0, 1, &self.dataset, self.collate.clone()) {
                    Ok(b) => Box::new(b),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
            return IterableIter {
                inline: Some(it),
                pool: None,
                live: Vec::new(),
                turn: 0,
            };
        }
        let n = self.num_workers;
        let pool = Pool::spawn(n, self.prefetch_factor, |w, n, tx, stop| {
            let (ds, collate) = (self.dataset.clone(), self.collate.clone());
            let batches = shard(w, n, &ds, collate);
            move || {
                let batches = match batches {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                for b in batches {
                    if stop.load(Ordering::Relaxed) || tx.send(b).is_err() {
                        return;
                    }
                }
            }
        });
        IterableIter {
            inline: None,
            live: (0..pool.len()).collect(),
            pool: Some(pool),
            turn: 0,
        }
    }
}

impl<D: IterableDataset, C: Collate<D::Item> + 'static> IntoIterator for &IterableLoader<D, C> {
    type Item = Result<C::Batch>;
    type IntoIter = IterableIter<C::Batch>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One pass of an [`IterableLoader`].
pub struct IterableIter<B> {
    inline: Option<Box<dyn Iterator<Item = Result<B>>>>,
    pool: Option<Pool<B>>,
    live: Vec<usize>,
    turn: usize,
}

impl<B> std::fmt::Debug for IterableIter<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IterableIter")
            .field("live_workers", &self.live)
            .finish()
    }
}

impl<B: Send + 'static> Iterator for IterableIter<B> {
    type Item = Result<B>;
    fn next(&mut self) -> Option<Result<B>> {
        if let Some(it) = &mut self.inline {
            return it.next();
        }
        let pool = self.pool.as_ref()?;
        while !self.live.is_empty() {
            let at = self.turn % self.live.len();
            match pool.try_next(self.live[at]) {
                Some(b) => {
                    self.turn = at + 1;
                    return Some(b);
                }
                None => {
                    self.live.remove(at);
                    self.turn = at;
                }
            }
        }
        None
    }
}
