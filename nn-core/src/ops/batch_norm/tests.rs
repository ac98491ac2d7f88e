use super::BatchNormArgs;
use crate::ops::testing::check_grad;
use crate::{Error, Result, Tensor};

/// The node's output for `x` and optional operands, ReLU on.
fn node(x: &Tensor, args: BatchNormArgs<'_>) -> Result<Tensor> {
    let out = x.batch_norm_fused(&args)?;
    out.map(|(y, _)| y)
        .ok_or_else(|| Error::custom("the CPU has a fused batch norm"))
}

fn args<'a>(
    weight: Option<&'a Tensor>,
    bias: Option<&'a Tensor>,
    residual: Option<&'a Tensor>,
    running: Option<(&'a Tensor, &'a Tensor)>,
) -> BatchNormArgs<'a> {
    BatchNormArgs {
        weight,
        bias,
        residual,
        running,
        eps: 1e-5,
        relu: true,
    }
}

#[test]
fn finite_differences_of_every_operand() -> Result<()> {
    // batch statistics: x, weight, bias, residual
    check_grad(&[&[2, 3, 2, 3], &[3], &[3], &[2, 3, 2, 3]], |t| {
        node(&t[0], args(Some(&t[1]), Some(&t[2]), Some(&t[3]), None))
    })?;
    check_grad(&[&[5, 2], &[2]], |t| {
        node(&t[0], args(Some(&t[1]), None, None, None))
    })?;
    // without the ReLU (the residual's gradient is the output's)
    check_grad(&[&[3, 2, 4], &[3, 2, 4]], |t| {
        let a = BatchNormArgs {
            relu: false,
            ..args(None, None, Some(&t[1]), None)
        };
        node(&t[0], a)
    })?;
    // running statistics: constants to the backward
    let (rm, rv) = (
        Tensor::from_vec(vec![0.3f32, -0.2, 0.1], &[3])?,
        Tensor::from_vec(vec![0.5f32, 2.0, 1.0], &[3])?,
    );
    check_grad(&[&[2, 3, 4], &[3], &[3], &[2, 3, 4]], |t| {
        node(
            &t[0],
            args(Some(&t[1]), Some(&t[2]), Some(&t[3]), Some((&rm, &rv))),
        )
    })
}

#[test]
fn hand_derived_statistics_and_gradients() -> Result<()> {
    // one channel, values 1, 3 (eps 0): mean 2, var 1, invstd 1, xhat = [-1, 1];
    // weight 2, bias 0.5, residual [1, -4]: pre-ReLU [-0.5, -1.5], both cut
    let x = Tensor::from_vec(vec![1.0f32, 3.0], &[2, 1])?.with_requires_grad(true);
    let w = Tensor::from_vec(vec![2.0f32], &[1])?.with_requires_grad(true);
    let b = Tensor::from_vec(vec![0.5f32], &[1])?.with_requires_grad(true);
    let r = Tensor::from_vec(vec![1.0f32, -4.0], &[2, 1])?.with_requires_grad(true);
    let a = BatchNormArgs {
        eps: 0.0,
        ..args(Some(&w), Some(&b), Some(&r), None)
    };
    let (y, stats) = x
        .batch_norm_fused(&a)?
        .ok_or_else(|| Error::custom("fused"))?;
    assert_eq!(y.to_vec::<f32>()?, vec![0.0, 0.0]);
    assert_eq!(stats.to_vec::<f32>()?, vec![2.0, 1.0, 1.0]);
    let r2 = Tensor::from_vec(vec![3.0f32, 0.0], &[2, 1])?.with_requires_grad(true);
    let a = BatchNormArgs {
        eps: 0.0,
        ..args(Some(&w), Some(&b), Some(&r2), None)
    };
    let (y, _) = x
        .batch_norm_fused(&a)?
        .ok_or_else(|| Error::custom("fused"))?;
    // pre-ReLU [1.5, 2.5]: both pass; g = [1, 0]: g' = g, db = 1, dw = -1,
    // dx = 2 (g - 1/2 - xhat (-1)/2) = 2 ([1, 0] - 0.5 + [-0.5, 0.5]) = [0, 0]
    assert_eq!(y.to_vec::<f32>()?, vec![1.5, 2.5]);
    y.mul(&Tensor::from_vec(vec![1.0f32, 0.0], &[2, 1])?)?
        .sum()?
        .backward()?;
    let g = |t: &Tensor| -> Result<Vec<f32>> {
        t.grad()
            .ok_or_else(|| Error::custom("no grad"))?
            .to_vec::<f32>()
    };
    assert_eq!(g(&x)?, vec![0.0, 0.0]);
    assert_eq!(g(&w)?, vec![-1.0]);
    assert_eq!(g(&b)?, vec![1.0]);
    assert_eq!(g(&r2)?, vec![1.0, 0.0]);
    Ok(())
}

#[test]
fn operands_that_do_not_fit_fall_back() -> Result<()> {
    let x = Tensor::randn(&[2, 3, 4]);
    let wrong = Tensor::randn(&[4]);
    let bcast = Tensor::randn(&[1, 3, 4]);
    assert!(x
        .batch_norm_fused(&args(Some(&wrong), None, None, None))?
        .is_none());
    assert!(x
        .batch_norm_fused(&args(None, None, Some(&bcast), None))?
        .is_none());
    assert!(Tensor::randn(&[0, 3])
        .batch_norm_fused(&args(None, None, None, None))?
        .is_none());
    let x64 = x.to_dtype(crate::DType::F64)?;
    assert!(x64
        .batch_norm_fused(&args(None, None, None, None))?
        .is_none());
    Ok(())
}
