//! Property test: every public op and layer, driven with shapes that hold a zero dim
//! beside dims near `usize::MAX` / [`MAX_NUMEL`], answers `Ok` or `Err`: never a panic,
//! an abort or a wrapped size. The test profile (the README command's, opt-level 2)
//! keeps overflow checks and debug assertions on, so wrapping arithmetic panics where
//! it happens.

use crate::module::Forward;
use crate::shape::MAX_NUMEL;
use crate::{layers, DType, Result, Tensor};
use proptest::prelude::*;

/// Dims that stress size arithmetic; a zero keeps the tensor itself free to build.
/// (No 2^31-style dims: an op on `[2^31, 0]` may legitimately fill an 8 GiB output.)
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(3),
        // past any memory (an output this size is refused at once, never attempted)
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

/// Every unary-style op and layer on `x`, results dropped: only a panic fails.
fn drive_one(x: &Tensor, axis: isize, other: &[usize]) {
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
    let _ = (
        x.max_dim(axis, false),
        x.min_dim(axis, true),
        x.argmax(axis, false),
    );
    let _ = (x.amax(&[axis], false), x.amin(&[0, r - 1], true));
    let _ = (x.reshape(other), x.broadcast_as(other), x.sum_to(other));
    let signed: Vec<isize> = other.iter().map(|&d| d as isize).collect();
    let _ = (x.reshape_infer(&signed), x.expand(&signed));
    let _ = (x.flatten_from(axis), x.unsqueeze(axis), x.squeeze(axis));
    let _ = (x.transpose(0, r - 1), x.t(), x.contiguous());
    let _ = (x.narrow(axis, 0, 0), x.narrow(axis, 1, 1), x.chunk(3, axis));
    let _ = (x.split(1 << 61, axis), x.split_sizes(&[0, 1], axis));
    let _ = (x.triu(1), x.tril(-1), x.to_dtype(DType::I64));
    let _ = (
        Tensor::cat(&[x.clone(), x.clone()], axis),
        Tensor::stack(std::slice::from_ref(x), axis),
    );
    for idx in [vec![0i64], vec![-1], vec![i64::MIN], vec![i64::MAX]] {
        if let Ok(i) = Tensor::from_vec(idx, &[1]) {
            let _ = x.index_select(axis, &i);
        }
    }
    let _ = x.matmul(x);
    let _ = x.matmul(&x.t().unwrap_or_else(|_| x.clone()));
    let _ = x.linear(&Tensor::zeros(&[2, 0]), None);
    let _ = layers::Flatten::range(0, axis).forward(x);
    // (sized from the last dim: a huge one is a legitimately huge weight, so small only)
    if x.shape().last().is_some_and(|&d| d <= 3) {
        let _ = layers::Linear::lazy(2).forward(x);
    }
    // (a huge normalized shape would be a legitimately huge parameter: kept small)
    let last = x.shape().last().copied().filter(|&d| d <= 3).unwrap_or(3);
    if let Ok(ln) = layers::LayerNorm::new(&[last]) {
        let _ = ln.forward(x);
    }
    let _ = layers::Dropout::new(0.5).forward(x);
    // lazy layers size their parameters from dim 1 (channels): a huge one is a
    // legitimately huge parameter, not a size bug, so only small ones here
    if x.shape().get(1).is_some_and(|&c| c <= 3) {
        let _ = layers::Conv2d::lazy(2, 1).forward(x);
        let _ = layers::BatchNorm2d::lazy().forward(x);
    }
    let _ = layers::MaxPool2d::new(2).forward(x);
    let _ = layers::AdaptiveAvgPool2d::new([1, 1]).forward(x);
    // backward through a few, from a zero-size loss
    let xg = x.with_requires_grad(true);
    if let Ok(y) = xg.relu().and_then(|y| y.sum()) {
        let _ = y.backward();
    }
    if let Ok(y) = xg.softmax(axis).and_then(|y| y.sum()) {
        let _ = y.backward();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ops_on_empty_tensors_with_huge_dims_never_panic(
        shape in empty_shape(),
        other in empty_shape(),
        axis in -4isize..4,
    ) {
        let x = Tensor::zeros(&shape);
        drive_one(&x, axis, &other);
        let y = Tensor::zeros(&other);
        let _ = (x.add(&y), x.mul(&y), x.maximum(&y), x.lt(&y), x.matmul(&y));
        let _ = Tensor::where_cond(&x.gt_scalar(0.0).unwrap_or_else(|_| x.clone()), &x, &y);
        let _ = x.masked_fill(&y.to_dtype(DType::I64).unwrap_or_else(|_| y.clone()), 1.0);
    }

    #[test]
    fn builders_refuse_counts_that_overflow(shape in prop::collection::vec(dim(), 1..=4)) {
        // a shape without a zero: a valid count builds (small ones only), an overflowing
        // one is an error, never a wrapped count or an abort
        let checked = crate::shape::checked_numel("t", &shape);
        let r: Result<Tensor> = Tensor::from_vec(Vec::<f32>::new(), &shape);
        prop_assert_eq!(r.is_ok(), matches!(checked, Ok(0)));
        if checked.is_err() {
            prop_assert!(Tensor::try_zeros(&shape).is_err());
        }
    }
}
