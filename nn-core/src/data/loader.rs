//! `DataLoader`: batches of a [`Dataset`] in a sampler's order, loaded by worker threads
//! with bounded prefetch (PyTorch's `torch.utils.data.DataLoader` over a map-style set).
//!
//! Determinism: batch `k` of an epoch always holds the samples of the `k`-th batch of
//! the batch sampler and arrives `k`-th, whatever the number of workers: worker `w`
//! loads batches `w, w + n, w + 2n, ...` (PyTorch's round-robin) into its own bounded
//! queue, and the iterator takes from the queues in turn.

use super::collate::{Collate, DefaultCollate};
use super::sampler::{BatchSampler, RandomSampler, Sampler, SequentialSampler};
use super::Dataset;
use crate::{Error, Result};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Batches of a data set, in the order of a sampler, collated (see the [module
/// docs](super)). Build one with [`DataLoader::builder`]; iterate with `for batch in
/// &loader` (items are `Result<Batch>`); call [`DataLoader::set_epoch`] before each
/// epoch to get that epoch's order.
pub struct DataLoader<D: Dataset, C = DefaultCollate> {
    dataset: Arc<D>,
    collate: Arc<C>,
    batches: BatchSampler,
    num_workers: usize,
    prefetch_factor: usize,
    epoch: u64,
}

impl<D: Dataset, C> std::fmt::Debug for DataLoader<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("len", &self.dataset.len())
            .field("batches", &self.batches)
            .field("num_workers", &self.num_workers)
            .field("prefetch_factor", &self.prefetch_factor)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// Settings of a [`DataLoader`] (PyTorch's keyword arguments, same defaults).
pub struct DataLoaderBuilder<D, C> {
    dataset: D,
    collate: C,
    batch_size: Option<usize>,
    shuffle: bool,
    seed: Option<u64>,
    drop_last: bool,
    sampler: Option<Box<dyn Sampler>>,
    batch_sampler: Option<BatchSampler>,
    num_workers: usize,
    prefetch_factor: usize,
}

impl<D: Dataset + 'static> DataLoader<D, DefaultCollate> {
    /// Starts a loader over `dataset`: batch size 1, in order, no workers, the default
    /// collate.
    pub fn builder(dataset: D) -> DataLoaderBuilder<D, DefaultCollate> {
        DataLoaderBuilder {
            dataset,
            collate: DefaultCollate,
            batch_size: None,
            shuffle: false,
            seed: None,
            drop_last: false,
            sampler: None,
            batch_sampler: None,
            num_workers: 0,
            prefetch_factor: 2,
        }
    }
}

impl<D: Dataset + 'static, C> DataLoaderBuilder<D, C> {
    /// Samples per batch (default 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n);
        self
    }

    /// A new random order every epoch ([`RandomSampler`] seeded by [`Self::seed`]).
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// The seed of the shuffle (default: drawn from [`crate::rng`] when the loader is
    /// built, so [`crate::manual_seed`] decides it).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Drops the last batch when it is smaller than the batch size.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// Visits the data set in `sampler`'s order (excludes `shuffle`).
    pub fn sampler(mut self, sampler: impl Sampler + 'static) -> Self {
        self.sampler = Some(Box::new(sampler));
        self
    }

    /// Takes whole batches from `batch_sampler` (excludes `batch_size`, `shuffle`,
    /// `sampler` and `drop_last`).
    pub fn batch_sampler(mut self, batch_sampler: BatchSampler) -> Self {
        self.batch_sampler = Some(batch_sampler);
        self
    }

    /// Worker threads loading batches ahead (0: batches load on the calling thread).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }

    /// Batches each worker may hold ready (default 2; at least 1).
    pub fn prefetch_factor(mut self, n: usize) -> Self {
        self.prefetch_factor = n;
        self
    }

    /// Batches with `collate` instead of [`DefaultCollate`] (a [`Collate`] value, such as
    /// [`super::PadSequence`], or a closure `Fn(Vec<Item>) -> Result<Batch>`).
    pub fn collate<C2>(self, collate: C2) -> DataLoaderBuilder<D, C2> {
        DataLoaderBuilder {
            dataset: self.dataset,
            collate,
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            seed: self.seed,
            drop_last: self.drop_last,
            sampler: self.sampler,
            batch_sampler: self.batch_sampler,
            num_workers: self.num_workers,
            prefetch_factor: self.prefetch_factor,
        }
    }

    /// The loader, or an error naming the conflicting settings (as PyTorch raises).
    pub fn build(self) -> Result<DataLoader<D, C>>
    where
        C: Collate<D::Item> + 'static,
    {
        const OP: &str = "DataLoader";
        if self.prefetch_factor == 0 {
            return Err(Error::invalid_config(
                OP,
                "prefetch_factor",
                0,
                "must be at least 1",
            ));
        }
        let batches = match self.batch_sampler {
            Some(bs) => {
                if self.batch_size.is_some()
                    || self.shuffle
                    || self.sampler.is_some()
                    || self.drop_last
                {
                    return Err(Error::invalid_config(
                        OP,
                        "batch_sampler",
                        "given",
                        "is mutually exclusive with batch_size, shuffle, sampler and drop_last",
                    ));
                }
                bs
            }
            None => {
                let sampler: Box<dyn Sampler> = match (self.sampler, self.shuffle) {
                    (Some(_), true) => {
                        return Err(Error::invalid_config(
                            OP,
                            "sampler",
                            "given",
                            "is mutually exclusive with shuffle",
                        ))
                    }
                    (Some(s), false) => s,
                    (None, true) => {
                        let seed = self.seed.unwrap_or_else(crate::rng::next_key);
                        Box::new(RandomSampler::new(self.dataset.len(), seed))
                    }
                    (None, false) => Box::new(SequentialSampler::new(self.dataset.len())),
                };
                BatchSampler::new(sampler, self.batch_size.unwrap_or(1), self.drop_last)?
            }
        };
        Ok(DataLoader {
            dataset: Arc::new(self.dataset),
            collate: Arc::new(self.collate),
            batches,
            num_workers: self.num_workers,
            prefetch_factor: self.prefetch_factor,
            epoch: 0,
        })
    }
}

impl<D: Dataset + 'static, C: Collate<D::Item> + 'static> DataLoader<D, C> {
    /// Batches per epoch (PyTorch's `len(loader)`).
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether an epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The data set.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// The epoch whose order the next iteration follows (PyTorch's
    /// `DistributedSampler.set_epoch`, here for every sampler and for epoch-seeded
    /// transforms): the order is a function of the seed and this number only.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The current epoch (see [`Self::set_epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The batches of the current epoch. Dropping the iterator early stops the workers
    /// (each finishes the sample it is loading) and joins them. An epoch whose indices
    /// cannot be allocated (a sampler asked for more than fit in memory) is one item,
    /// the [`crate::Error::OutOfMemory`] naming the sampler and the size.
    pub fn iter(&self) -> DataLoaderIter<'_, C::Batch> {
        self.dataset.set_epoch(self.epoch);
        let batches = match self.batches.try_batches(self.epoch) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                return DataLoaderIter {
                    source: Source::Failed(Some(e)),
                    next: 0,
                    total: 1,
                    _loader: PhantomData,
                }
            }
        };
        let total = batches.len();
        let source = if self.num_workers == 0 {
            let (ds, collate) = (self.dataset.clone(), self.collate.clone());
            Source::Inline(Box::new(move |k: usize| {
                load_batch(&*ds, &*collate, &batches[k])
            }))
        } else {
            let workers = self.num_workers.min(total.max(1));
            Source::Pool(Pool::spawn(
                workers,
                self.prefetch_factor,
                |w, n, tx, stop| {
                    let (ds, collate, batches) =
                        (self.dataset.clone(), self.collate.clone(), batches.clone());
                    move || {
                        for k in (w..batches.len()).step_by(n) {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            if tx.send(load_batch(&*ds, &*collate, &batches[k])).is_err() {
                                return;
                            }
                        }
                    }
                },
            ))
        };
        DataLoaderIter {
            source,
            next: 0,
            total,
            _loader: PhantomData,
        }
    }
}

impl<'a, D: Dataset + 'static, C: Collate<D::Item> + 'static> IntoIterator
    for &'a DataLoader<D, C>
{
    type Item = Result<C::Batch>;
    type IntoIter = DataLoaderIter<'a, C::Batch>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Where batches come from: the calling thread, or the workers' queues.
enum Source<B> {
    Inline(Box<dyn Fn(usize) -> Result<B>>),
    Pool(Pool<B>),
    /// The epoch's batches could not be made: this error, once.
    Failed(Option<crate::Error>),
}

/// The batches of one epoch of a [`DataLoader`], in order; items are `Result<Batch>`
/// (a failed sample fails its batch only; the following batches still come).
pub struct DataLoaderIter<'a, B> {
    source: Source<B>,
    next: usize,
    total: usize,
    _loader: PhantomData<&'a ()>,
}

impl<B> std::fmt::Debug for DataLoaderIter<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoaderIter")
            .field("next", &self.next)
            .field("total", &self.total)
            .finish()
    }
}

impl<B: Send + 'static> Iterator for DataLoaderIter<'_, B> {
    type Item = Result<B>;

    fn next(&mut self) -> Option<Result<B>> {
        if self.next >= self.total {
            return None;
        }
        let k = self.next;
        self.next += 1;
        match &mut self.source {
            Source::Inline(load) => Some(load(k)),
            Source::Pool(pool) => Some(pool.recv(k % pool.len(), || format!("batch {k}"))),
            Source::Failed(e) => e.take().map(Err),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.total - self.next;
        (n, Some(n))
    }
}

impl<B: Send + 'static> ExactSizeIterator for DataLoaderIter<'_, B> {}

/// Loads and collates one batch; a sample's error or panic becomes an error naming it.
pub(crate) fn load_batch<D: Dataset + ?Sized, C: Collate<D::Item> + ?Sized>(
    ds: &D,
    collate: &C,
    indices: &[usize],
) -> Result<C::Batch> {
    let mut samples = Vec::with_capacity(indices.len());
    for &i in indices {
        samples.push(load_sample(ds, i)?);
    }
    guarded(
        || format!("collate of the batch of samples {indices:?}"),
        || collate.collate(samples),
    )
}

/// Sample `index` of `ds`, its error or panic named by the index.
pub(crate) fn load_sample<D: Dataset + ?Sized>(ds: &D, index: usize) -> Result<D::Item> {
    guarded(|| format!("dataset.get({index})"), || ds.get(index)).map_err(|e| match e {
        e @ Error::WorkerPanic { .. } => e,
        e => Error::Sample {
            index,
            source: Box::new(e),
        },
    })
}

/// Runs `f`, turning a panic into [`Error::WorkerPanic`] naming `what`.
pub(crate) fn guarded<T>(
    what: impl FnOnce() -> String,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(Error::WorkerPanic { what: what(), msg })
    })
}

/// Worker threads, each with its own bounded queue of results.
pub(crate) struct Pool<B> {
    rx: Vec<Receiver<Result<B>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl<B: Send + 'static> Pool<B> {
    /// `n` workers; `make(w, n, tx, stop)` builds worker `w`'s body, which sends its
    /// results on `tx` (a queue of `depth`) and returns when `stop` is set or a send fails.
    pub(crate) fn spawn<F, W>(n: usize, depth: usize, mut make: F) -> Pool<B>
    where
        F: FnMut(usize, usize, SyncSender<Result<B>>, Arc<AtomicBool>) -> W,
        W: FnOnce() + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let mut rx = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for w in 0..n {
            let (tx, r) = sync_channel(depth);
            let body = make(w, n, tx.clone(), stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("nn-data-worker-{w}"))
                .spawn(body);
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // the iterator then reports the failure where this worker's batches were due
                    let _ = tx.try_send(Err(Error::Io {
                        path: format!("<data loader worker {w}>"),
                        source: e,
                    }));
                }
            }
            rx.push(r);
        }
        Pool { rx, handles, stop }
    }

    /// Workers.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    /// The next result of worker `w`; a worker gone without sending it is an error.
    pub(crate) fn recv(&self, w: usize, what: impl FnOnce() -> String) -> Result<B> {
        self.rx[w].recv().unwrap_or_else(|_| {
            Err(Error::WorkerPanic {
                what: what(),
                msg: format!("data loader worker {w} stopped without sending it"),
            })
        })
    }

    /// The next result of worker `w`, `None` when it has finished.
    pub(crate) fn try_next(&self, w: usize) -> Option<Result<B>> {
        self.rx[w].recv().ok()
    }
}

impl<B> Drop for Pool<B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // closing the queues wakes a worker blocked on a full one
        self.rx.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
