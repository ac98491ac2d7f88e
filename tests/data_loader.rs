//! `nn::data::DataLoader`: order and contents independent of the worker count, epoch
//! seeding, samplers, collate functions, errors and panics in workers, early drops.

use nn::data::{
    BatchSampler, DataLoader, Dataset, DistributedSampler, IterableDataset, IterableLoader,
    PadSequence, RandomCrop, RandomSampler, SampleStream, SequentialSampler, TensorDataset,
    Transformed, WeightedRandomSampler,
};
use nn::{DType, Error, Result, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn data(n: usize) -> Result<TensorDataset<(Tensor, Tensor)>> {
    let x = Tensor::arange(0, (n * 3) as i64)
        .to_dtype(DType::F32)?
        .reshape(&[n, 3])?;
    TensorDataset::new((x, Tensor::arange(0, n as i64)))
}

/// Every batch of one epoch as (x values, y values).
fn epoch<D: Dataset<Item = (Tensor, Tensor)> + 'static>(
    loader: &DataLoader<D>,
) -> Result<Vec<(Vec<f32>, Vec<i64>)>> {
    loader
        .iter()
        .map(|b| {
            let (x, y) = b?;
            Ok((x.to_vec::<f32>()?, y.to_vec::<i64>()?))
        })
        .collect()
}

#[test]
fn batches_do_not_depend_on_the_number_of_workers() -> Result<()> {
    let mut runs = Vec::new();
    for workers in [0, 1, 3] {
        let mut l = DataLoader::builder(data(103)?)
            .batch_size(8)
            .shuffle(true)
            .seed(5)
            .num_workers(workers)
            .build()?;
        assert_eq!(l.len(), 13);
        let mut both = epoch(&l)?;
        l.set_epoch(1);
        both.extend(epoch(&l)?);
        runs.push(both);
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
    let first: Vec<i64> = runs[0][..13].iter().flat_map(|b| b.1.clone()).collect();
    let second: Vec<i64> = runs[0][13..].iter().flat_map(|b| b.1.clone()).collect();
    assert_ne!(first, second, "each epoch has its own order");
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..103).collect::<Vec<_>>(),
        "an epoch visits every sample once"
    );
    // x rows stay with their labels
    for (x, y) in &runs[0] {
        for (k, &label) in y.iter().enumerate() {
            assert_eq!(x[k * 3], (label * 3) as f32);
        }
    }
    Ok(())
}

#[test]
fn the_order_is_a_function_of_seed_and_epoch() -> Result<()> {
    let mut a = DataLoader::builder(data(20)?)
        .batch_size(4)
        .shuffle(true)
        .seed(1)
        .build()?;
    let mut b = DataLoader::builder(data(20)?)
        .batch_size(4)
        .shuffle(true)
        .seed(1)
        .num_workers(2)
        .build()?;
    a.set_epoch(0);
    let _ = epoch(&a)?;
    a.set_epoch(3);
    b.set_epoch(3);
    assert_eq!(
        epoch(&a)?,
        epoch(&b)?,
        "epoch 3 is the same whether epochs 0..3 ran or not"
    );
    // the order is RandomSampler's
    let order: Vec<i64> = epoch(&a)?.into_iter().flat_map(|b| b.1).collect();
    let sampler: Vec<i64> = nn::data::Sampler::indices(&RandomSampler::new(20, 1), 3)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    assert_eq!(order, sampler);
    Ok(())
}

#[test]
fn augmentation_is_the_same_with_any_number_of_workers() -> Result<()> {
    nn::manual_seed(0);
    let images = TensorDataset::new(Tensor::rand(&[9, 1, 5, 5]))?;
    let ds = Arc::new(Transformed::new(images, RandomCrop::new(5, 2), 11));
    let run = |workers| -> Result<Vec<Vec<f32>>> {
        let l = DataLoader::builder(ds.clone())
            .batch_size(2)
            .num_workers(workers)
            .build()?;
        l.iter().map(|b| b?.to_vec::<f32>()).collect()
    };
    assert_eq!(run(0)?, run(3)?);
    Ok(())
}

/// Fails at index 13, panics at index 35, counts its calls.
struct Flaky(Arc<AtomicUsize>);

impl Dataset for Flaky {
    type Item = Tensor;
    fn len(&self) -> usize {
        40
    }
    fn get(&self, i: usize) -> Result<Tensor> {
        self.0.fetch_add(1, Ordering::Relaxed);
        match i {
            13 => Err(Error::MissingKey {
                container: "flaky".into(),
                key: "13".into(),
            }),
            35 => panic!("sample 35 is cursed"),
            _ => Ok(Tensor::from_vec(vec![i as f32], &[1])?),
        }
    }
}

#[test]
fn errors_and_panics_in_workers_fail_their_batch_only() -> Result<()> {
    for workers in [0, 2] {
        let l = DataLoader::builder(Flaky(Arc::default()))
            .batch_size(10)
            .num_workers(workers)
            .build()?;
        let got: Vec<Result<Tensor>> = l.iter().collect();
        assert_eq!(got.len(), 4, "no batch lost");
        assert!(got[0].is_ok() && got[2].is_ok());
        let e1 = got[1]
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            matches!(got[1], Err(Error::Sample { index: 13, .. })),
            "{e1}"
        );
        assert!(e1.contains("sample 13"), "{e1}");
        let e3 = got[3]
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            e3.contains("dataset.get(35)") && e3.contains("cursed"),
            "{e3}"
        );
    }
    Ok(())
}

/// A slow data set, to drop iterators while workers are busy.
struct Slow(Arc<AtomicUsize>);

impl Dataset for Slow {
    type Item = Tensor;
    fn len(&self) -> usize {
        10_000
    }
    fn get(&self, i: usize) -> Result<Tensor> {
        self.0.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1));
        Tensor::from_vec(vec![i as f32], &[1])
    }
}

#[test]
fn dropping_the_iterator_stops_the_workers() -> Result<()> {
    let calls = Arc::new(AtomicUsize::new(0));
    let l = DataLoader::builder(Slow(calls.clone()))
        .batch_size(4)
        .num_workers(2)
        .prefetch_factor(2)
        .build()?;
    let start = Instant::now();
    let mut it = l.iter();
    let first = it.next().transpose()?;
    assert!(first.is_some());
    drop(it);
    let after = calls.load(Ordering::Relaxed);
    // bounded prefetch: at most (1 taken + 2 workers x (2 queued + 1 in progress)) batches
    assert!(after <= 4 * 7, "{after} samples loaded");
    assert!(start.elapsed() < Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(calls.load(Ordering::Relaxed), after, "the workers are gone");
    Ok(())
}

#[test]
fn samplers_plug_in() -> Result<()> {
    // DistributedSampler: two ranks see disjoint halves
    let shard = |rank| -> Result<Vec<i64>> {
        let s = DistributedSampler::new(10, 2, rank, Some(3))?;
        let l = DataLoader::builder(data(10)?)
            .batch_size(2)
            .sampler(s)
            .build()?;
        Ok(epoch(&l)?.into_iter().flat_map(|b| b.1).collect())
    };
    let (a, b) = (shard(0)?, shard(1)?);
    let mut all = [a.clone(), b].concat();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(a.len(), 5);
    // a weighted sampler never draws a zero weight
    let w = WeightedRandomSampler::new(vec![1.0, 0.0, 1.0, 0.0], 50, true, 0)?;
    let l = DataLoader::builder(data(4)?)
        .batch_size(10)
        .sampler(w)
        .build()?;
    assert!(epoch(&l)?
        .iter()
        .flat_map(|b| b.1.clone())
        .all(|i| i % 2 == 0));
    // a batch sampler gives the batches
    let bs = BatchSampler::new(SequentialSampler::new(7), 3, true)?;
    let l = DataLoader::builder(data(7)?).batch_sampler(bs).build()?;
    assert_eq!(
        epoch(&l)?.into_iter().map(|b| b.1).collect::<Vec<_>>(),
        vec![vec![0, 1, 2], vec![3, 4, 5]]
    );
    // PyTorch's exclusions
    assert!(DataLoader::builder(data(4)?)
        .shuffle(true)
        .sampler(SequentialSampler::new(4))
        .build()
        .is_err());
    let bs = BatchSampler::new(SequentialSampler::new(4), 2, false)?;
    assert!(DataLoader::builder(data(4)?)
        .batch_size(2)
        .batch_sampler(bs)
        .build()
        .is_err());
    assert!(DataLoader::builder(data(4)?).batch_size(0).build().is_err());
    Ok(())
}

#[test]
fn drop_last_and_len() -> Result<()> {
    let l = DataLoader::builder(data(10)?)
        .batch_size(4)
        .drop_last(true)
        .build()?;
    assert_eq!((l.len(), l.iter().count()), (2, 2));
    let l = DataLoader::builder(data(10)?).batch_size(4).build()?;
    let sizes: Vec<usize> = epoch(&l)?.iter().map(|b| b.1.len()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    Ok(())
}

/// Sequences of length 1 + i % 3 with label i.
struct Seqs;

impl Dataset for Seqs {
    type Item = (Tensor, i64);
    fn len(&self) -> usize {
        5
    }
    fn get(&self, i: usize) -> Result<(Tensor, i64)> {
        let n = 1 + i % 3;
        Ok((Tensor::full(&[n, 2], i as f32), i as i64))
    }
}

#[test]
fn padding_and_user_collate() -> Result<()> {
    let l = DataLoader::builder(Seqs)
        .batch_size(3)
        .collate(PadSequence {
            padding_value: -1.0,
        })
        .num_workers(2)
        .build()?;
    let batches: Vec<_> = l.iter().collect::<Result<_>>()?;
    let (p, y) = &batches[0];
    assert_eq!(p.data.shape(), &[3, 3, 2]);
    assert_eq!(p.lengths.to_vec::<i64>()?, vec![1, 2, 3]);
    assert_eq!(y.to_vec::<i64>()?, vec![0, 1, 2]);
    let mask = p.padding_mask.to_dtype(DType::I64)?.to_vec2::<i64>()?;
    assert_eq!(mask, vec![vec![0, 1, 1], vec![0, 0, 1], vec![0, 0, 0]]);
    assert_eq!(
        p.data.to_vec::<f32>()?[..6],
        [0.0, 0.0, -1.0, -1.0, -1.0, -1.0]
    );
    // a closure: the total length of each batch
    let l = DataLoader::builder(Seqs)
        .batch_size(2)
        .collate(|s: Vec<(Tensor, i64)>| -> Result<usize> {
            Ok(s.iter().map(|(t, _)| t.shape()[0]).sum())
        })
        .build()?;
    assert_eq!(l.iter().collect::<Result<Vec<_>>>()?, vec![3, 4, 2]);
    Ok(())
}

/// 0..n split into shards by stride.
struct Stream(i64);

impl IterableDataset for Stream {
    type Item = i64;
    fn shard(&self, w: usize, n: usize) -> Result<SampleStream<i64>> {
        Ok(Box::new((0..self.0).skip(w).step_by(n).map(Ok)))
    }
}

#[test]
fn iterable_datasets_shard_over_workers() -> Result<()> {
    let run = |workers| -> Result<Vec<Vec<i64>>> {
        let l = IterableLoader::builder(Stream(23))
            .batch_size(4)
            .num_workers(workers)
            .build()?;
        l.iter().map(|b| b?.to_vec::<i64>()).collect()
    };
    let one = run(0)?;
    assert_eq!(one.concat(), (0..23).collect::<Vec<_>>());
    let three = run(3)?;
    assert_eq!(three, run(3)?, "the same order every run");
    assert_eq!(
        three[0],
        vec![0, 3, 6, 9],
        "worker 0's first batch comes first"
    );
    assert_eq!(three[1], vec![1, 4, 7, 10]);
    let mut all = three.concat();
    all.sort_unstable();
    assert_eq!(all, (0..23).collect::<Vec<_>>());
    Ok(())
}
