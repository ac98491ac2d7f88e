//! Training data as PyTorch's `torch.utils.data` shapes it: a [`Dataset`] (or an
//! [`IterableDataset`] for streams), a [`Sampler`] choosing the order, a
//! [`DataLoader`] batching with worker threads, [`transforms`] applied per sample, and
//! [`readers`] for the files people have (IDX, CIFAR, `.npy`/`.npz`, CSV, image
//! folders).
//!
//! Every random choice (the shuffle, a split, an augmentation) is a function of a seed
//! and the epoch, never of the thread that makes it: the same seed gives the same
//! batches with 0 or 8 workers.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::data::{DataLoader, TensorDataset};
//! use nn::Tensor;
//! let x = Tensor::rand(&[10, 3]);
//! let y = Tensor::arange(0, 10);
//! let mut loader = DataLoader::builder(TensorDataset::new((x, y))?)
//!     .batch_size(4)
//!     .shuffle(true)
//!     .seed(0)
//!     .num_workers(2)
//!     .build()?;
//! assert_eq!(loader.len(), 3); // 4 + 4 + 2
//! for epoch in 0..2 {
//!     loader.set_epoch(epoch);
//!     for batch in &loader {
//!         let (xb, yb) = batch?;
//!         assert_eq!(xb.shape()[1], 3);
//!         assert_eq!(xb.shape()[0], yb.shape()[0]);
//!     }
//! }
//! # Ok::<(), nn::Error>(())
//! ```
//!
//! A failing or panicking `get` fails its batch with an error naming the sample
//! ([`crate::Error::Sample`], [`crate::Error::WorkerPanic`]); the following batches
//! still come, and dropping the iterator stops the workers.

mod collate;
mod dataset;
mod distributed;
mod iterable;
mod loader;
pub mod readers;
mod sampler;
pub mod seed;
pub mod transforms;

pub use collate::{
    pad_sequence, stack_tensors, Collate, DefaultCollate, PadSequence, PaddedBatch, Stack,
};
pub use dataset::{
    random_split, ConcatDataset, Dataset, Split, Subset, TensorDataset, TensorTuple,
};
pub use distributed::DistributedSampler;
pub use iterable::{
    IterableDataset, IterableIter, IterableLoader, IterableLoaderBuilder, SampleStream,
};
pub use loader::{DataLoader, DataLoaderBuilder, DataLoaderIter};
pub use sampler::{BatchSampler, RandomSampler, Sampler, SequentialSampler, WeightedRandomSampler};
pub use transforms::{
    resized_crop, Compose, Lambda, Normalize, RandomCrop, RandomHorizontalFlip, RandomResizedCrop,
    ToTensor, Transform, Transformed,
};
