use super::{BatchNorm1d, BatchNorm2d};
use crate::module::{Forward, ModuleExt};
use crate::ops::testing::check_grad;
use crate::{Result, Tensor};

#[test]
fn hand_derived_stats() -> Result<()> {
    // one channel, values 1, 3: mean 2, biased var 1 -> y = -1, 1 (eps 0);
    // running_mean = 0.9*0 + 0.1*2 = 0.2, running_var = 0.9*1 + 0.1*(1*2/1) = 1.1
    let mut bn = BatchNorm1d::new(1).eps(0.0);
    let y = bn.forward(&Tensor::from_vec(vec![1.0f32, 3.0], &[2, 1])?)?;
    assert_eq!(y.to_vec::<f32>()?, vec![-1.0, 1.0]);
    let rm = bn
        .running_mean
        .as_ref()
        .map(|b| b.get().to_vec::<f32>())
        .transpose()?;
    let rv = bn
        .running_var
        .as_ref()
        .map(|b| b.get().to_vec::<f32>())
        .transpose()?;
    assert!((rm.unwrap_or_default()[0] - 0.2).abs() < 1e-6);
    assert!((rv.unwrap_or_default()[0] - 1.1).abs() < 1e-6);
    let n = bn
        .num_batches_tracked
        .as_ref()
        .map(|b| b.get().to_vec::<i64>())
        .transpose()?;
    assert_eq!(n, Some(vec![1]));
    bn.eval();
    // eval: (x - 0.2) / sqrt(1.1)
    let y = bn.forward(&Tensor::from_vec(vec![0.2f32], &[1, 1])?)?;
    assert!(y.to_vec::<f32>()?[0].abs() < 1e-6);
    Ok(())
}

#[test]
fn grads_finite_difference() -> Result<()> {
    let bn = BatchNorm2d::new(3);
    check_grad(&[&[2, 3, 2, 3]], |t| bn.forward(&t[0]))?;
    let bn1 = BatchNorm1d::new(4).no_running_stats();
    check_grad(&[&[5, 4]], |t| bn1.forward(&t[0]))
}

#[test]
fn lazy_options_repr_and_errors() -> Result<()> {
    let bn = BatchNorm2d::lazy();
    assert!(bn.repr().starts_with("BatchNorm2d(?, eps=1e-05"));
    bn.forward(&Tensor::randn(&[2, 5, 3, 3]))?;
    assert_eq!(bn.num_features(), Some(5));
    assert_eq!(
        bn.repr(),
        "BatchNorm2d(5, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)"
    );
    let e = bn
        .forward(&Tensor::randn(&[2, 4, 3, 3]))
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("5 channels") && e.contains("[2, 4, 3, 3]")));
    assert!(bn.forward(&Tensor::randn(&[2, 5, 3])).is_err());
    assert!(bn.forward(&Tensor::randn(&[1, 5, 1, 1])).is_err());
    let plain = BatchNorm1d::new(3)
        .no_affine()
        .no_running_stats()
        .momentum(None);
    assert_eq!(plain.state_dict()?.len(), 0);
    assert_eq!(
        plain.repr(),
        "BatchNorm1d(3, eps=1e-05, momentum=None, affine=False, bias=False, track_running_stats=False)"
    );
    Ok(())
}

/// Trained-looking statistics and parameters, so the eval pass is not an identity.
fn trained<const D: usize>(
    mut bn: super::BatchNorm<D>,
    x: &[usize],
) -> Result<super::BatchNorm<D>> {
    for _ in 0..3 {
        bn.forward(&Tensor::randn(x).mul_scalar(2.0)?.add_scalar(0.5)?)?;
    }
    for p in bn.parameters() {
        p.set_data(&Tensor::randn(&p.shape().unwrap_or_default()))?;
    }
    bn.eval();
    Ok(bn)
}

#[test]
fn fused_eval_pass_matches_the_ops_bit_for_bit() -> Result<()> {
    let bits = |t: &Tensor| -> Result<Vec<u32>> {
        Ok(t.to_vec::<f32>()?.iter().map(|v| v.to_bits()).collect())
    };
    let cases: Vec<(super::BatchNorm2d, Vec<usize>)> = vec![
        (BatchNorm2d::new(3), vec![2, 3, 5, 7]),
        (BatchNorm2d::new(4).no_affine(), vec![1, 4, 3, 2]),
        (BatchNorm2d::new(2).no_bias(), vec![3, 2, 1, 9]),
        // large enough for the threaded split
        (BatchNorm2d::new(16), vec![4, 16, 33, 31]),
    ];
    for (bn, shape) in cases {
        let bn = trained(bn, &shape)?;
        let x = Tensor::randn(&shape);
        let r = Tensor::randn(&shape);
        let want = bn.forward(&x)?.relu()?;
        let want_res = bn.forward(&x)?.add(&r)?.relu()?;
        // recorded: the unfused ops; under no_grad: the one pass
        assert_eq!(bits(&bn.forward_relu(&x)?)?, bits(&want)?, "{shape:?}");
        let fused = crate::no_grad(|| bn.forward_relu(&x))?;
        assert_eq!(bits(&fused)?, bits(&want)?, "{shape:?}");
        let fused = crate::no_grad(|| bn.forward_add_relu(&x, &r))?;
        assert_eq!(bits(&fused)?, bits(&want_res)?, "{shape:?}");
    }
    let bn = trained(BatchNorm1d::new(5), &[4, 5, 3])?;
    for shape in [[6usize, 5].as_slice(), &[2, 5, 3]] {
        let x = Tensor::randn(shape);
        let want = bits(&bn.forward(&x)?.relu()?)?;
        assert_eq!(bits(&crate::no_grad(|| bn.forward_relu(&x))?)?, want);
    }
    Ok(())
}

#[test]
fn fused_helpers_keep_training_and_gradients() -> Result<()> {
    // training: the same values, statistics and gradients as forward + add + relu
    let (a, b) = (BatchNorm2d::new(3), BatchNorm2d::new(3));
    let x = Tensor::randn(&[2, 3, 4, 5]).with_requires_grad(true);
    let r = Tensor::randn(&[2, 3, 4, 5]);
    let ya = a.forward_add_relu(&x, &r)?;
    let yb = b.forward(&x)?.add(&r)?.relu()?;
    assert_eq!(ya.to_vec::<f32>()?, yb.to_vec::<f32>()?);
    let ga = {
        ya.sum()?.backward()?;
        x.grad().map(|g| g.to_vec::<f32>()).transpose()?
    };
    x.zero_grad();
    yb.sum()?.backward()?;
    assert_eq!(ga, x.grad().map(|g| g.to_vec::<f32>()).transpose()?);
    let stats = |bn: &BatchNorm2d| -> Result<Vec<f32>> {
        let mut v = bn
            .running_mean
            .as_ref()
            .map(|b| b.get().to_vec::<f32>())
            .transpose()?
            .unwrap_or_default();
        v.extend(
            bn.running_var
                .as_ref()
                .map(|b| b.get().to_vec::<f32>())
                .transpose()?
                .unwrap_or_default(),
        );
        Ok(v)
    };
    assert_eq!(stats(&a)?, stats(&b)?);
    // eval with autograd on: differentiable, checked by finite differences
    let bn = trained(BatchNorm2d::new(2), &[3, 2, 2, 3])?;
    check_grad(&[&[2, 2, 2, 3], &[2, 2, 2, 3]], |t| {
        bn.forward_add_relu(&t[0], &t[1])
    })?;
    Ok(())
}

/// `a` (fused node) and `b` (composite) layers with the same random parameters.
fn pair<const D: usize>(
    make: impl Fn() -> super::BatchNorm<D>,
    c: usize,
) -> Result<(super::BatchNorm<D>, super::BatchNorm<D>)> {
    let (a, b) = (make(), make());
    for (pa, pb) in a.parameters().iter().zip(b.parameters()) {
        let v = Tensor::randn(&[c]).add_scalar(0.5)?;
        pa.set_data(&v)?;
        pb.set_data(&v)?;
    }
    Ok((a, b))
}

/// Elementwise `|x - y| <= tol (1 + |y|)`.
fn close(what: &str, a: &Tensor, b: &Tensor, tol: f32) -> Result<()> {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (i, (x, y)) in a
        .to_vec::<f32>()?
        .iter()
        .zip(b.to_vec::<f32>()?)
        .enumerate()
    {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
    Ok(())
}

/// The buffers, parameter gradients and batch count of a layer, flattened.
fn state<const D: usize>(bn: &super::BatchNorm<D>) -> Result<Vec<(String, Tensor)>> {
    let mut out: Vec<(String, Tensor)> = bn
        .state_dict()?
        .iter()
        .map(|(k, t)| (k.to_string(), t.clone()))
        .collect();
    for (i, p) in bn.parameters().iter().enumerate() {
        if let Some(g) = p.grad() {
            out.push((format!("grad {i}"), g));
        }
    }
    Ok(out)
}

/// Fused vs composite on input `shape` (channel 0 constant): output, running statistics
/// and every gradient, over two training steps then one recorded eval step.
fn fused_vs_composite<const D: usize>(
    make: impl Fn() -> super::BatchNorm<D>,
    shape: &[usize],
    residual: bool,
    relu: bool,
) -> Result<()> {
    let c = shape[1];
    let (mut a, mut b) = pair(make, c)?;
    for step in 0..3 {
        if step == 2 {
            a.eval();
            b.eval();
        }
        let mut xv = Tensor::randn(shape)
            .mul_scalar(2.0)?
            .add_scalar(0.5)?
            .to_vec::<f32>()?;
        let inner: usize = shape[2..].iter().product();
        for (i, v) in xv.iter_mut().enumerate() {
            if (i / inner).is_multiple_of(c) {
                *v = 3.0;
            }
        }
        let x = Tensor::from_vec(xv, shape)?.with_requires_grad(true);
        let r = residual.then(|| Tensor::randn(shape).with_requires_grad(true));
        let u = Tensor::randn(shape);
        let ya = a.forward_then(&x, r.as_ref(), relu)?;
        ya.mul(&u)?.sum()?.backward()?;
        let ga: Vec<Option<Tensor>> = [Some(&x), r.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.grad())
            .collect();
        x.zero_grad();
        if let Some(r) = &r {
            r.zero_grad();
        }
        let mut yb = b.composite(&x)?;
        if let Some(r) = &r {
            yb = yb.add(r)?;
        }
        if relu {
            yb = yb.relu()?;
        }
        yb.mul(&u)?.sum()?.backward()?;
        let gb: Vec<Option<Tensor>> = [Some(&x), r.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.grad())
            .collect();
        let case = format!("{shape:?} residual {residual} relu {relu} step {step}");
        close(&format!("y {case}"), &ya, &yb, 1e-4)?;
        for (i, (ga, gb)) in ga.iter().zip(&gb).enumerate() {
            match (ga, gb) {
                (Some(ga), Some(gb)) => close(&format!("input grad {i} {case}"), ga, gb, 2e-3)?,
                (ga, gb) => assert_eq!(ga.is_some(), gb.is_some(), "input grad {i} {case}"),
            }
        }
        let (sa, sb) = (state(&a)?, state(&b)?);
        assert_eq!(sa.len(), sb.len(), "{case}");
        for ((ka, ta), (kb, tb)) in sa.iter().zip(&sb) {
            assert_eq!(ka, kb);
            if ta.dtype() == crate::DType::I64 {
                assert_eq!(ta.to_vec::<i64>()?, tb.to_vec::<i64>()?, "{ka} {case}");
            } else {
                close(&format!("{ka} {case}"), ta, tb, 2e-3)?;
            }
        }
        for p in a.parameters().iter().chain(&b.parameters()) {
            p.zero_grad();
        }
    }
    Ok(())
}

#[test]
fn fused_node_matches_the_composite() -> Result<()> {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| crate::Error::custom(e.to_string()))?;
        pool.install(|| -> Result<()> {
            for (residual, relu) in [(false, false), (false, true), (true, false), (true, true)] {
                // small, and large enough for the threaded split (c 16, 3 * 16 * 40 * 37);
                // planes shorter than 32 take the row-wise passes
                fused_vs_composite(|| BatchNorm2d::new(3), &[2, 3, 4, 5], residual, relu)?;
                fused_vs_composite(|| BatchNorm2d::new(16), &[3, 16, 40, 37], residual, relu)?;
                fused_vs_composite(|| BatchNorm1d::new(5), &[7, 5], residual, relu)?;
                fused_vs_composite(|| BatchNorm1d::new(4), &[3, 4, 9], residual, relu)?;
                // short planes split by rows over the pool (81920 values)
                fused_vs_composite(|| BatchNorm1d::new(40), &[2048, 40], residual, relu)?;
            }
            let no_affine = || BatchNorm2d::new(3).no_affine().momentum(None);
            fused_vs_composite(no_affine, &[2, 3, 3, 3], true, true)?;
            fused_vs_composite(|| BatchNorm2d::new(3).no_bias(), &[2, 3, 3, 3], true, true)?;
            let untracked = || BatchNorm1d::new(6).no_running_stats();
            fused_vs_composite(untracked, &[4, 6, 5], true, true)?;
            fused_vs_composite(
                || BatchNorm1d::new(6).no_affine().no_running_stats(),
                &[4, 6],
                false,
                true,
            )
        })?;
    }
    Ok(())
}

#[test]
fn fused_node_falls_back_and_keeps_errors() -> Result<()> {
    // a broadcast residual is not the node's: the composite adds it
    let (a, b) = pair(|| BatchNorm2d::new(3), 3)?;
    let x = Tensor::randn(&[2, 3, 4, 4]);
    let r = Tensor::randn(&[1, 3, 1, 4]);
    let want = b.composite(&x)?.add(&r)?.relu()?;
    close(
        "broadcast residual",
        &a.forward_add_relu(&x, &r)?,
        &want,
        1e-4,
    )?;
    // (the node does run on the CPU for a residual of the input's shape, or none)
    assert!(a.node_fused(&x, Some(&r), true)?.is_none());
    assert!(a.node_fused(&x, Some(&x), true)?.is_some());
    assert!(a.node_fused(&x, None, false)?.is_some());
    // one value per channel in training, a wrong channel count, an f64 input: errors
    let bn = BatchNorm1d::new(3);
    assert!(bn.forward_relu(&Tensor::randn(&[1, 3])).is_err());
    assert!(bn.forward_relu(&Tensor::randn(&[4, 2])).is_err());
    let x64 = Tensor::randn(&[4, 3]).to_dtype(crate::DType::F64)?;
    assert!(bn.forward(&x64).is_err());
    // a mismatched residual is reported as the composite reports it
    assert!(bn
        .forward_add_relu(&Tensor::randn(&[4, 3]), &Tensor::randn(&[5, 3]))
        .is_err());
    Ok(())
}

#[test]
fn fused_node_finite_differences() -> Result<()> {
    let bn = BatchNorm2d::new(3);
    check_grad(&[&[2, 3, 2, 3], &[2, 3, 2, 3]], |t| {
        bn.forward_add_relu(&t[0], &t[1])
    })?;
    check_grad(&[&[2, 3, 2, 3]], |t| bn.forward_relu(&t[0]))?;
    let bn1 = BatchNorm1d::new(4).no_affine();
    check_grad(&[&[5, 4], &[5, 4]], |t| bn1.forward_add_relu(&t[0], &t[1]))
}
