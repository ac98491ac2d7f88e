//! Regression tests: sizes computed from user shapes never overflow, wrap or abort;
//! each op answers `Err(BadShape)` or `Err(OutOfMemory)` instead (issue: hostile sizes).

use crate::{Error, Result, Tensor};

fn is_bad_shape<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(
        r,
        Err(Error::BadShape { .. }) | Err(Error::ShapeMismatch { .. })
    )
}

#[test]
fn overflowing_shapes_are_errors() -> Result<()> {
    let empty = Tensor::zeros(&[usize::MAX, 0]);
    assert!(is_bad_shape(Tensor::zeros(&[4]).reshape(&[1 << 62, 4])));
    // a zero dim makes any shape hold nothing: fine, as in PyTorch
    assert!(Tensor::zeros(&[0])
        .reshape(&[1 << 62, 4, 0, 1 << 62])
        .is_ok());
    assert!(is_bad_shape(Tensor::cat(
        &[empty.clone(), empty.clone()],
        0
    )));
    assert!(is_bad_shape(empty.matmul(&Tensor::zeros(&[0, usize::MAX]))));
    assert!(is_bad_shape(
        Tensor::zeros(&[0, usize::MAX]).sum_dim(0, false)
    ));
    assert!(is_bad_shape(
        Tensor::zeros(&[1]).broadcast_as(&[1 << 40, 1 << 40])
    ));
    // [2^31, 0, 1] + [0, 1, 2^31] does not broadcast (2^31 vs 0 in dim 0)
    let col = Tensor::zeros(&[1 << 31, 0]).reshape(&[1 << 31, 0, 1])?;
    let row = Tensor::zeros(&[0, 1 << 31]).reshape(&[0, 1, 1 << 31])?;
    assert!(is_bad_shape(col.add(&row)));
    assert!(is_bad_shape(Tensor::zeros(&[2]).reshape_infer(&[
        -1,
        1 << 62,
        1 << 62
    ])));
    Ok(())
}

#[test]
fn zero_sized_results_stay_cheap() -> Result<()> {
    // [0, MAX] @ [MAX, 0]-style products with a zero-size result need no work
    let y = Tensor::zeros(&[1 << 40, 0, 3]).matmul(&Tensor::zeros(&[3, 0]))?;
    assert_eq!(y.shape(), &[1 << 40, 0, 0]);
    let z = Tensor::zeros(&[0, 5]).matmul(&Tensor::zeros(&[5, 7]))?;
    assert_eq!((z.shape(), z.numel()), (&[0, 7][..], 0));
    Ok(())
}

/// Beyond the 128 TiB of a 64-bit user address space in f32: no allocation can
/// succeed, whatever the overcommit policy.
const HUGE: usize = 1 << 46;

fn refused<T: std::fmt::Debug>(what: &str, r: Result<T>) {
    assert!(
        matches!(
            r,
            Err(Error::OutOfMemory { .. }) | Err(Error::BadShape { .. })
        ),
        "{what}: {r:?}"
    );
}

#[test]
fn huge_sizes_are_errors_not_aborts() {
    use crate::module::Forward;
    use crate::{Init, Linear, Param};
    refused("randint", Tensor::randint(&[HUGE], 0, 10));
    refused("arange_f32", Tensor::arange_f32(0.0, 1e30, 1e-30));
    refused("try_arange", Tensor::try_arange(0, i64::MAX));
    refused("try_zeros", Tensor::try_zeros(&[HUGE]));
    refused("try_full", Tensor::try_full(&[1 << 23, 1 << 23], 1.0));
    refused(
        "try_rand_uniform",
        Tensor::try_rand_uniform(&[HUGE], 0.0, 1.0),
    );
    refused("try_randn_with", Tensor::try_randn_with(&[HUGE], 0.0, 1.0));
    refused("broadcast_as", Tensor::zeros(&[1]).broadcast_as(&[HUGE]));
    refused("one_hot", Tensor::arange(0, 2).one_hot(HUGE));
    refused("Param::init", Param::init(&[HUGE], Init::Zeros));
    refused(
        "Param::init normal",
        Param::init(&[1 << 23, 1 << 23], Init::normal(0.0, 1.0)),
    );
    refused(
        "mean over [0, HUGE]",
        Tensor::zeros(&[0, HUGE]).mean_dim(0, false),
    );
    refused(
        "sum of [0, MAX]",
        Tensor::zeros(&[0, usize::MAX]).sum_dim(0, false),
    );
    // layers: a lazy layer sized at the first forward, and one sized at once (its
    // parameters stay deferred and the error comes at the first use)
    refused(
        "Linear::lazy forward",
        Linear::lazy(HUGE).forward(&Tensor::ones(&[1, 2])),
    );
    let big = Linear::new(1 << 23, 1 << 23);
    assert!(!big.weight.is_initialized());
    refused(
        "Linear::new forward",
        big.forward(&Tensor::ones(&[1, 1 << 23])),
    );
}

#[test]
fn batch_index_maps_are_allocated_fallibly() {
    // 2^40 batches of a 1x1 product: the index map alone would take 8 TiB (it aborted)
    let r = Tensor::zeros(&[1 << 40, 1, 0]).matmul(&Tensor::zeros(&[1, 0, 1]));
    refused("matmul with 2^40 batches", r);
}

#[test]
fn flattening_dims_beside_a_zero_dim_is_checked() {
    use crate::module::Forward;
    // [4, MAX, 0] holds nothing, but flattening dims 0..=1 asks for 4 * MAX of them
    let x = Tensor::zeros(&[4, usize::MAX, 0]);
    let r = crate::Flatten::range(0, 1).forward(&x);
    assert!(
        is_bad_shape(r),
        "{:?}",
        crate::Flatten::range(0, 1).forward(&x)
    );
    // the dims that hold the zero flatten fine
    let y = crate::Flatten::range(1, 2).forward(&x);
    assert!(matches!(y.as_ref().map(|t| t.shape().to_vec()), Ok(s) if s == [4, 0]));
}

#[test]
fn from_vec_checks_the_element_count() {
    // 2^62 * 4 wraps to 0 elements: it was accepted for an empty vector
    assert!(is_bad_shape(Tensor::from_vec(
        Vec::<f32>::new(),
        &[1 << 62, 4]
    )));
    assert!(Tensor::from_vec(Vec::<f32>::new(), &[1 << 62, 0]).is_ok());
}

#[test]
fn negative_indices_never_overflow() -> Result<()> {
    let x = Tensor::arange_f32(0.0, 3.0, 1.0)?;
    for i in [i64::MIN, -4, 3, i64::MAX] {
        let r = x.index_select(0, &Tensor::from_vec(vec![i], &[1])?);
        assert!(
            matches!(r, Err(Error::IndexOutOfRange { .. })),
            "index {i}: {r:?}"
        );
    }
    let last = x.index_select(0, &Tensor::from_vec(vec![-1i64, -3], &[2])?)?;
    assert_eq!(last.to_vec::<f32>()?, [2.0, 0.0]);
    // an axis longer than i64::MAX (with a zero dim beside it): i64::MIN counts from
    // its end without overflowing `i + size`
    let wide = Tensor::zeros(&[0, usize::MAX]);
    assert!(wide
        .index_select(1, &Tensor::from_vec(vec![i64::MIN], &[1])?)
        .is_ok());
    Ok(())
}
