//! Hostile sizes through the public API (issue 29): every op and layer, the losses, the
//! optimizers and schedulers, the data readers, transforms, collates, samplers and the
//! `DataLoader`, driven with shapes that hold a zero dim beside dims near `usize::MAX` /
//! `MAX_NUMEL` and with counts near the top of their range. Each call answers `Ok` or
//! `Err`: never a panic, an abort or a wrapped size.
//!
//! CI runs this binary in the `checked` profile (release speed with overflow checks and
//! debug assertions: `cargo test -p nn-core --profile checked --test hostile_sizes`), so
//! wrapping arithmetic panics where it happens; the plain test profile has overflow
//! checks too.

use nn_core::data::readers::{self, idx, npy};
use nn_core::data::seed::SplitMix64;
use nn_core::data::{
    pad_sequence, random_split, resized_crop, stack_tensors, BatchSampler, DataLoader, Dataset,
    DistributedSampler, RandomCrop, RandomResizedCrop, RandomSampler, SequentialSampler, Split,
    Subset, TensorDataset, Transform, WeightedRandomSampler,
};
use nn_core::layers::{
    self, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, Conv1d, Embedding, GroupNorm, MaxPool2d,
    RMSNorm,
};
use nn_core::optim::lr_scheduler::{
    ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, LinearLR, LrScheduler, MultiStepLR,
    OneCycleLR, PolynomialLR, StepLR,
};
use nn_core::optim::{Adagrad, AdagradConfig, AdamW, AdamWConfig, RmsProp, RmsPropConfig};
use nn_core::shape::MAX_NUMEL;
use nn_core::{
    Adam, AdamConfig, BceLoss, BceWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, DType,
    Forward, HuberLoss, KlDivLoss, L1Loss, MseLoss, NllLoss, Optimizer, Param, Result, Sgd,
    SgdConfig, SmoothL1Loss, Tensor,
};
use proptest::prelude::*;
use std::path::Path;

/// Dims that stress size arithmetic; a zero elsewhere keeps the tensor free to build.
/// (No 2^31-style dims: an op on `[2^31, 0]` may legitimately fill an 8 GiB output.)
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(3),
        Just(1 << 40),
        Just(MAX_NUMEL),
        Just(MAX_NUMEL + 1),
        Just(1 << 62),
        Just(usize::MAX),
    ]
}

/// A shape of rank 1..=4 with at least one zero dim (so it holds no element).
fn empty_shape() -> impl Strategy<Value = Vec<usize>> {
    (
        prop::collection::vec(dim(), 1..=4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut s, i)| {
            let at = i.index(s.len());
            s[at] = 0;
            s
        })
}

/// Every tensor op on `x` (results dropped: only a panic fails).
fn tensor_ops(x: &Tensor, axis: isize, other: &[usize]) {
    let r = x.rank() as isize;
    let _ = (
        x.relu(),
        x.exp(),
        x.neg(),
        x.gelu(),
        x.sigmoid(),
        x.square(),
    );
    let _ = (x.softmax(axis), x.log_softmax(axis));
    let _ = (x.sum(), x.mean(), x.max(), x.min());
    let _ = (x.sum_dim(axis, false), x.mean_dim(axis, true));
    let _ = (x.max_dim(axis, false), x.min_dim(axis, true));
    let _ = (
        x.argmax(axis, false),
        x.amax(&[axis], false),
        x.amin(&[0, r - 1], true),
    );
    let _ = (x.reshape(other), x.broadcast_as(other), x.sum_to(other));
    let signed: Vec<isize> = other.iter().map(|&d| d as isize).collect();
    let _ = (x.reshape_infer(&signed), x.expand(&signed));
    let _ = (x.flatten_from(axis), x.unsqueeze(axis), x.squeeze(axis));
    let _ = (x.transpose(0, r - 1), x.t(), x.contiguous());
    let _ = (x.narrow(axis, 0, 0), x.narrow(axis, 1, 1), x.chunk(3, axis));
    let _ = (x.split(1 << 61, axis), x.split_sizes(&[0, 1], axis));
    let _ = (x.triu(1), x.tril(-1), x.to_dtype(DType::I64));
    let _ = Tensor::cat(&[x.clone(), x.clone()], axis);
    let _ = Tensor::stack(std::slice::from_ref(x), axis);
    for i in [0i64, -1, i64::MIN, i64::MAX] {
        if let Ok(i) = Tensor::from_vec(vec![i], &[1]) {
            let _ = x.index_select(axis, &i);
        }
    }
    let _ = x.matmul(x);
    let _ = x.matmul(&x.t().unwrap_or_else(|_| x.clone()));
    let _ = x.linear(&Tensor::zeros(&[2, 0]), None);
    let _ = x.one_hot(3);
    let xg = x.with_requires_grad(true);
    if let Ok(y) = xg.relu().and_then(|y| y.sum()) {
        let _ = y.backward();
    }
    if let Ok(y) = xg.softmax(axis).and_then(|y| y.sum()) {
        let _ = y.backward();
    }
}

/// Every layer on `x`. Layers sized from a dim of the input (lazy channels, normalized
/// shapes) only see small ones: a huge one is a legitimately huge parameter.
fn layer_ops(x: &Tensor, axis: isize) {
    let small = |d: Option<&usize>| d.is_some_and(|&d| d <= 3);
    let _ = layers::Flatten::range(0, axis).forward(x);
    let _ = layers::Dropout::new(0.5).forward(x);
    let _ = (layers::ReLU.forward(x), layers::Tanh.forward(x));
    let _ = MaxPool2d::new(2).forward(x);
    let _ = AvgPool2d::new(2).forward(x);
    let _ = AdaptiveAvgPool2d::new([1, 1]).forward(x);
    let _ = AdaptiveAvgPool2d::new([usize::MAX, 2]).forward(x);
    let _ = GroupNorm::new(1, 2).forward(x);
    if small(x.shape().last()) {
        let _ = layers::Linear::lazy(2).forward(x);
    }
    let last = x.shape().last().copied().filter(|&d| d <= 3).unwrap_or(3);
    if let Ok(ln) = layers::LayerNorm::new(&[last]) {
        let _ = ln.forward(x);
    }
    if let Ok(rms) = RMSNorm::new(&[last]) {
        let _ = rms.forward(x);
    }
    if small(x.shape().get(1)) {
        let _ = layers::Conv2d::lazy(2, 1).forward(x);
        let _ = Conv1d::lazy(2, 1).forward(x);
        let _ = layers::BatchNorm2d::lazy().forward(x);
        let _ = BatchNorm1d::lazy().forward(x);
    }
    if let Ok(e) = Embedding::new(4, 2) {
        if let Ok(i) = x.to_dtype(DType::I64) {
            let _ = e.forward(&i);
        }
    }
}

/// Every loss on `(x, y)`, both as given and with `y` as class indices.
fn losses(x: &Tensor, y: &Tensor) {
    let _ = MseLoss::new().forward(x, y);
    let _ = L1Loss::new().forward(x, y);
    let _ = HuberLoss::new().forward(x, y);
    let _ = SmoothL1Loss::new().forward(x, y);
    let _ = BceLoss::new().forward(x, y);
    let _ = BceWithLogitsLoss::new().forward(x, y);
    let _ = KlDivLoss::new().forward(x, y);
    let _ = CosineEmbeddingLoss::new().forward(x, y, y);
    if let Ok(t) = y.to_dtype(DType::I64) {
        let _ = CrossEntropyLoss::new().forward(x, &t);
        let _ = NllLoss::new().forward(x, &t);
    }
    let _ = CrossEntropyLoss::new().forward(x, y);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ops_layers_and_losses_on_empty_tensors_with_huge_dims(
        shape in empty_shape(),
        other in empty_shape(),
        axis in -4isize..4,
    ) {
        let x = Tensor::zeros(&shape);
        let y = Tensor::zeros(&other);
        tensor_ops(&x, axis, &other);
        layer_ops(&x, axis);
        losses(&x, &y);
        losses(&x, &x);
        let _ = (x.add(&y), x.mul(&y), x.maximum(&y), x.lt(&y), x.matmul(&y));
        let _ = Tensor::where_cond(&x.gt_scalar(0.0).unwrap_or_else(|_| x.clone()), &x, &y);
        let _ = x.masked_fill(&y.to_dtype(DType::I64).unwrap_or_else(|_| y.clone()), 1.0);
    }

    #[test]
    fn builders_refuse_counts_that_overflow(shape in prop::collection::vec(dim(), 1..=4)) {
        let checked = nn_core::shape::checked_numel("t", &shape);
        let r: Result<Tensor> = Tensor::from_vec(Vec::<f32>::new(), &shape);
        prop_assert_eq!(r.is_ok(), matches!(checked, Ok(0)));
        if checked.is_err() {
            prop_assert!(Tensor::try_zeros(&shape).is_err());
            prop_assert!(Param::init(&shape, nn_core::Init::Zeros).is_err());
        }
    }

    #[test]
    fn optimizers_step_empty_parameters_with_huge_dims(
        a in empty_shape(),
        b in empty_shape(),
        steps in 1usize..4,
    ) {
        // zero-size parameters beside a small one: every optimizer steps them (or says
        // why not), clips their gradients and saves its state
        let params = || -> Vec<Param> {
            [a.as_slice(), b.as_slice(), &[2]]
                .iter()
                .filter_map(|s| Param::new(Tensor::zeros(s)).ok())
                .collect()
        };
        let mut opts: Vec<Box<dyn Optimizer>> = Vec::new();
        let cfg = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() };
        opts.extend(Sgd::new(params(), cfg).ok().map(|o| Box::new(o) as Box<dyn Optimizer>));
        let adam = AdamConfig { amsgrad: true, ..Default::default() };
        opts.extend(Adam::new(params(), adam).ok().map(|o| Box::new(o) as _));
        opts.extend(AdamW::new(params(), AdamWConfig::default()).ok().map(|o| Box::new(o) as _));
        let rms = RmsPropConfig { momentum: 0.5, centered: true, ..Default::default() };
        opts.extend(RmsProp::new(params(), rms).ok().map(|o| Box::new(o) as _));
        opts.extend(Adagrad::new(params(), AdagradConfig::default()).ok().map(|o| Box::new(o) as _));
        prop_assert_eq!(opts.len(), 5);
        for o in &mut opts {
            for _ in 0..steps {
                for p in o.params() {
                    if let Ok(l) = p.tensor().and_then(|t| t.sum()) {
                        let _ = l.backward();
                    }
                }
                let _ = nn_core::utils::clip_grad_norm(o.params(), 1.0, 2.0, true);
                let _ = nn_core::utils::clip_grad_value(o.params(), 1.0);
                let _ = o.step();
                o.zero_grad();
            }
            let _ = o.state_dict();
        }
    }
}

/// Step counts past `i64::MAX` are errors: they wrapped to negative counts (a
/// `CosineAnnealingLR` of `T_max = 2^62` then overflowed `2 * T_max` at its first cycle).
#[test]
fn scheduler_counts_past_i64_max_are_errors() -> Result<()> {
    let sgd = || Sgd::with_lr(vec![Param::new(Tensor::ones(&[2]))?], 0.1);
    for big in [i64::MAX as usize + 1, usize::MAX] {
        let o = &mut sgd()?;
        assert!(StepLR::new(o, big, 0.5).is_err());
        assert!(MultiStepLR::new(o, &[1, big], 0.5).is_err());
        assert!(ConstantLR::new(o, 0.5, big).is_err());
        assert!(LinearLR::new(o, 0.5, 1.0, big).is_err());
        assert!(PolynomialLR::new(o, big, 1.0).is_err());
        assert!(CosineAnnealingLR::new(o, big, 0.0).is_err());
        assert!(CosineAnnealingWarmRestarts::new(o, big, 1, 0.0).is_err());
        assert!(CosineAnnealingWarmRestarts::new(o, 2, big, 0.0).is_err());
        assert!(OneCycleLR::builder(&[1.0], big).build(o).is_err());
        // nothing changed in the optimizer
        assert_eq!(o.lr(), 0.1);
    }
    // the largest counts run: a few steps, no overflow anywhere
    let o = &mut sgd()?;
    let mut ss: Vec<Box<dyn LrScheduler>> = vec![
        Box::new(StepLR::new(o, i64::MAX as usize, 0.5)?),
        Box::new(CosineAnnealingLR::new(o, i64::MAX as usize, 0.0)?),
        Box::new(CosineAnnealingLR::new(o, 1 << 62, 0.0)?),
        Box::new(CosineAnnealingWarmRestarts::new(
            o,
            1,
            i64::MAX as usize,
            0.0,
        )?),
        Box::new(PolynomialLR::new(o, i64::MAX as usize, 2.0)?),
        Box::new(LinearLR::new(o, 0.5, 1.0, i64::MAX as usize)?),
        Box::new(MultiStepLR::new(o, &[i64::MAX as usize, 0], 0.5)?),
    ];
    for s in &mut ss {
        for _ in 0..4 {
            s.step(o)?;
        }
    }
    Ok(())
}

/// Fractions within the 1e-6 tolerance that floor to more than the length are an error
/// (the remainder `len - sum` underflowed, and in release looped ~2^64 times).
#[test]
fn split_fractions_that_floor_past_the_length_are_errors() -> Result<()> {
    let f = Split::Fractions(vec![0.500_000_4, 0.500_000_4]);
    assert!(f.lengths(10_000_000).is_err());
    assert_eq!(f.lengths(10)?, vec![5, 5]);
    assert!(Split::Lengths(vec![usize::MAX, 2]).lengths(1).is_err());
    assert!(Split::Fractions(vec![0.5, 0.5])
        .lengths(usize::MAX)
        .is_err());
    let ds = TensorDataset::new(Tensor::arange(0, 4))?;
    assert!(random_split(ds, Split::Lengths(vec![usize::MAX, 5]), 0).is_err());
    Ok(())
}

/// A data set too long to pad into equal shards is an error (`total_size` overflowed).
#[test]
fn distributed_sampler_lengths_that_overflow_are_errors() -> Result<()> {
    assert!(DistributedSampler::new(usize::MAX, 2, 0, None).is_err());
    let s = DistributedSampler::new(usize::MAX - 1, 2, 1, Some(3))?;
    assert_eq!(s.total_size(), usize::MAX - 1);
    assert!(DistributedSampler::new(4, 0, 0, None).is_err());
    assert!(DistributedSampler::new(4, 2, 2, None).is_err());
    Ok(())
}

/// Collating huge (expanded, storage-free) or zero-size samples: an error or a result,
/// never a wrapped total or an abort on the padding mask.
#[test]
fn collates_of_huge_and_empty_samples() -> Result<()> {
    // (a view of one element, where the backend keeps it one)
    if let Ok(huge) = Tensor::zeros(&[1]).broadcast_as(&[MAX_NUMEL]) {
        let many = vec![huge.clone(); 16];
        assert!(stack_tensors(&many).is_err());
        assert!(pad_sequence(&many, 0.0).is_err());
        assert!(pad_sequence(&[huge.clone(), huge], 0.0).is_err());
    }
    // zero-size sequences: a long one with an empty row shape, and huge trailing dims
    let long = Tensor::zeros(&[1 << 40, 0]);
    assert!(pad_sequence(&[long.clone(), long], 0.0).is_err());
    let wide = Tensor::zeros(&[0, usize::MAX, 2]);
    let _ = pad_sequence(&[wide.clone(), wide], 0.0);
    let p = pad_sequence(&[Tensor::zeros(&[0, 3]), Tensor::ones(&[2, 3])], -1.0)?;
    assert_eq!(p.data.shape(), &[2, 2, 3]);
    let _ = stack_tensors(&vec![Tensor::zeros(&[0, usize::MAX]); 3])?;
    Ok(())
}

/// Transforms with sizes near `usize::MAX`: errors, never a wrapped padded size or an
/// aborted allocation of the output.
#[test]
fn transforms_with_huge_sizes_are_errors() -> Result<()> {
    let img = Tensor::ones(&[1, 4, 4]);
    let mut rng = SplitMix64::new(1);
    assert!(RandomCrop::new(2, usize::MAX / 2)
        .apply(img.clone(), &mut rng)
        .is_err());
    assert!(RandomCrop::new(1 << 31, 1 << 30)
        .apply(img.clone(), &mut rng)
        .is_err());
    assert!(RandomCrop::new(usize::MAX, 0)
        .apply(img.clone(), &mut rng)
        .is_err());
    let y = RandomCrop::new(3, 2).apply(img.clone(), &mut rng)?;
    assert_eq!(y.shape(), &[1, 3, 3]);
    assert!(RandomResizedCrop::new(1 << 31)
        .apply(img.clone(), &mut rng)
        .is_err());
    assert!(RandomResizedCrop::new(usize::MAX)
        .apply(img.clone(), &mut rng)
        .is_err());
    assert!(resized_crop(&img, usize::MAX, 0, 2, 2, (2, 2)).is_err());
    assert!(resized_crop(&img, 0, 1, 2, usize::MAX, (2, 2)).is_err());
    assert!(resized_crop(&img, 0, 0, 2, 2, (usize::MAX, 2)).is_err());
    assert_eq!(resized_crop(&img, 1, 1, 2, 2, (3, 5))?.shape(), &[1, 3, 5]);
    Ok(())
}

/// An IDX header with dims near `usize::MAX`.
fn idx_bytes(dims: &[u32]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(&[1, 2, 3, 4]);
    b
}

/// A `.npy` file (version 1) of `descr` and `shape` (a Python tuple) with `data`.
fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(data);
    b
}

/// The readers' headers claiming sizes near `usize::MAX`: errors, or an empty result
/// where a zero dim makes the claim hold nothing.
#[test]
fn readers_with_huge_headers() -> Result<()> {
    let what = Path::new("<test>");
    for dims in [
        &[u32::MAX, u32::MAX][..],
        &[u32::MAX, u32::MAX, u32::MAX, u32::MAX],
        &[0, u32::MAX, u32::MAX],
        &[u32::MAX, 0, u32::MAX],
        &[1 << 31, 1 << 31, 4],
    ] {
        let r = idx::parse_idx(&idx_bytes(dims), what);
        assert!(
            r.as_ref().map_or(true, |t| t.numel() == 0),
            "{dims:?}: {r:?}"
        );
    }
    // found by the data_readers fuzz target: a multi-byte first char in 'descr' panicked
    // (the byte order was cut at byte 1)
    for descr in ["\u{2d9}4", "\u{2d9}", "<\u{2d9}", "\u{1F600}f4"] {
        let b = npy_bytes(descr, "(2, 3)", &[0x12; 24]);
        assert!(npy::npy_from_bytes(&b, what).is_err(), "{descr}");
        assert!(npy::parse_header(&b, what).is_err(), "{descr}");
    }
    let max = usize::MAX;
    let dir = std::env::temp_dir().join(format!("nn-hostile-sizes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| nn_core::Error::io(&dir, e))?;
    let path = dir.join("a.npy");
    for shape in [
        format!("(0, {}, {})", 1u64 << 40, 1u64 << 40),
        format!("(0, {max}, {max})"),
        format!("({max}, {max})"),
        format!("({max},)"),
        format!("({}, 0)", 1u64 << 62),
        format!("(2, {})", 1u64 << 61),
        format!("(0, {})", 1u64 << 61),
        "(18446744073709551616,)".to_string(),
    ] {
        for descr in ["<f4", "|u1", "<f8"] {
            let b = npy_bytes(descr, &shape, &[0; 16]);
            let r = npy::npy_from_bytes(&b, what);
            assert!(
                r.as_ref().map_or(true, |t| t.numel() == 0),
                "{shape}: {r:?}"
            );
            std::fs::write(&path, &b).map_err(|e| nn_core::Error::io(&path, e))?;
            let _ = readers::read_npy(&path);
            if let Ok(rows) = readers::NpyFile::open(&path) {
                for i in 0..rows.len().min(4) {
                    let _ = rows.get(i);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The `DataLoader` and its samplers given impossible sizes: errors at build time.
#[test]
fn data_loader_bad_inputs_are_errors() -> Result<()> {
    let ds = || TensorDataset::new(Tensor::arange(0, 10));
    assert!(DataLoader::builder(ds()?).batch_size(0).build().is_err());
    assert!(DataLoader::builder(ds()?)
        .prefetch_factor(0)
        .num_workers(2)
        .build()
        .is_err());
    // a batch larger than the data set, every sample in one batch, or none with drop_last
    let l = DataLoader::builder(ds()?).batch_size(usize::MAX).build()?;
    assert_eq!(l.len(), 1);
    assert_eq!(l.iter().count(), 1);
    let l = DataLoader::builder(ds()?)
        .batch_size(usize::MAX)
        .drop_last(true)
        .build()?;
    assert_eq!((l.len(), l.iter().count()), (0, 0));
    // workers beyond the batches: idle ones
    let l = DataLoader::builder(ds()?)
        .batch_size(3)
        .num_workers(64)
        .build()?;
    assert_eq!(l.iter().count(), 4);
    // an empty data set, a zero-size sample shape
    let empty = TensorDataset::new(Tensor::zeros(&[0, usize::MAX]))?;
    let l = DataLoader::builder(empty).batch_size(4).build()?;
    assert_eq!(l.iter().count(), 0);
    let wide = TensorDataset::new(Tensor::zeros(&[3, 0, usize::MAX]))?;
    for b in DataLoader::builder(wide).batch_size(2).build()?.iter() {
        assert_eq!(b?.shape()[1..], [0, usize::MAX]);
    }
    assert!(Subset::new(ds()?, vec![usize::MAX]).is_err());
    assert!(BatchSampler::new(SequentialSampler::new(3), 0, false).is_err());
    let b = BatchSampler::new(SequentialSampler::new(3), usize::MAX, false)?;
    assert_eq!(b.len(), 1);
    assert!(WeightedRandomSampler::new(vec![f64::MAX, f64::MAX], 1, true, 0).is_ok());
    assert!(WeightedRandomSampler::new(vec![f64::INFINITY], 1, true, 0).is_err());
    assert!(WeightedRandomSampler::new(vec![1.0], 2, false, 0).is_err());
    let r = RandomSampler::new(0, 1).num_samples(usize::MAX);
    assert!(nn_core::data::Sampler::indices(&r, 0).is_empty());
    Ok(())
}

/// Samplers asked for more indices than fit in memory: `try_indices`, `try_batches` and
/// the `DataLoader` answer an out-of-memory error naming the sampler and the size (the
/// infallible `indices` would abort, as any failed allocation does).
#[test]
fn samplers_asked_for_more_indices_than_fit_are_errors() -> Result<()> {
    use nn_core::data::Sampler;
    use nn_core::Error;
    let huge = usize::MAX / 4;
    let cases: Vec<(Box<dyn Sampler>, &str)> = vec![
        (
            Box::new(RandomSampler::new(10, 1).num_samples(huge)),
            "RandomSampler::indices",
        ),
        (
            Box::new(
                RandomSampler::new(10, 1)
                    .replacement(true)
                    .num_samples(huge),
            ),
            "RandomSampler::indices",
        ),
        (
            Box::new(RandomSampler::new(huge, 1)),
            "RandomSampler::indices",
        ),
        (
            Box::new(SequentialSampler::new(huge)),
            "SequentialSampler::indices",
        ),
        (
            Box::new(WeightedRandomSampler::new(vec![1.0, 2.0], huge, true, 0)?),
            "WeightedRandomSampler::indices",
        ),
        (
            Box::new(DistributedSampler::new(usize::MAX - 1, 2, 1, Some(3))?),
            "DistributedSampler::indices",
        ),
        (
            Box::new(DistributedSampler::new(huge, 3, 2, None)?),
            "DistributedSampler::indices",
        ),
    ];
    for (s, op) in cases {
        match s.try_indices(0) {
            Err(e @ Error::OutOfMemory { .. }) => {
                let m = e.to_string();
                assert!(
                    m.starts_with(&format!("{op}: out of memory allocating ")),
                    "{m}"
                );
            }
            other => panic!("{op}: {:?}", other.map(|v| v.len())),
        }
    }
    // through a batch sampler and a data loader: the error, once
    let b = BatchSampler::new(RandomSampler::new(10, 1).num_samples(huge), 4, false)?;
    assert!(matches!(b.try_batches(0), Err(Error::OutOfMemory { .. })));
    let l = DataLoader::builder(TensorDataset::new(Tensor::arange(0, 10))?)
        .sampler(RandomSampler::new(10, 1).num_samples(huge))
        .batch_size(4)
        .build()?;
    let items: Vec<_> = l.iter().collect();
    assert_eq!(items.len(), 1);
    assert!(
        matches!(
            &items[0],
            Err(Error::OutOfMemory {
                op: "RandomSampler::indices",
                ..
            })
        ),
        "{:?}",
        items[0].as_ref().err()
    );
    // sizes that fit still give every index, as `indices` does
    let s = DistributedSampler::new(7, 3, 2, Some(5))?;
    assert_eq!(s.try_indices(4)?, s.indices(4));
    let r = RandomSampler::new(5, 2).num_samples(12);
    assert_eq!(r.try_indices(1)?, r.indices(1));
    Ok(())
}

/// What the property test above found: average pooling collected one divisor per window
/// position (~2^58 here, beside a zero batch) until the process was killed, and the
/// class losses filled one weight per class (`MAX_NUMEL` here, beside zero rows) with
/// an infallible allocation that aborted.
#[test]
fn pooling_and_class_losses_beside_a_zero_dim() -> Result<()> {
    let x = Tensor::zeros(&[0, 1, 1 << 40, 1 << 20]);
    let y = AvgPool2d::new(2).forward(&x)?;
    assert_eq!(y.shape(), &[0, 1, 1 << 39, 1 << 19]);
    let _ = x.avg_pool2d(&nn_core::Pool2dOptions::new([2, 2]), false)?;
    let logits = Tensor::zeros(&[0, MAX_NUMEL]);
    let target = Tensor::from_vec(Vec::<i64>::new(), &[0])?;
    let _ = CrossEntropyLoss::new().forward(&logits, &target);
    let _ = NllLoss::new().forward(&logits, &target);
    Ok(())
}
