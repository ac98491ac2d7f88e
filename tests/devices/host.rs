//! The host-run CUDA backend's own checks: the device suite fails on a mutated kernel,
//! and every kernel of nn-cuda runs in it; plus the device cases of the window gathers
//! and of rows wider than a block.

use super::*;

/// The suite bites: on a host runtime whose `nn_copy_f32` reads its source at the
/// destination's offsets (one index expression mutated, `build_host.rs`), the shape
/// cases fail, while the same cases pass on the unmutated `cuda_host` device above.
#[test]
fn suite_fails_on_a_mutated_copy_kernel() {
    let dev = nn_cuda::host_mutant_device();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shape_ops(&dev)));
    assert!(
        !matches!(outcome, Ok(Ok(()))),
        "the device suite passed with a broken index expression in nn_copy_f32"
    );
}

/// Every kernel of every nn-cuda module runs in this suite: the cases, run on the
/// host-run CUDA backend, launch each of them at least once (a new kernel without a
/// device test fails here).
#[test]
fn every_cuda_kernel_runs_on_the_host() -> Result<()> {
    let dev = nn_cuda::host_device();
    for (name, case) in CASES {
        println!("case {name}");
        case(&dev)?;
    }
    let counts = nn_cuda::host_launch_counts();
    let missing: Vec<&str> = nn_cuda::kernels::ALL_MODULES
        .iter()
        .flat_map(|m| m.kernels.iter().copied())
        .filter(|k| counts.get(k).copied().unwrap_or(0) == 0)
        .collect();
    assert!(
        missing.is_empty(),
        "kernels no device case launches: {missing:?}"
    );
    for (k, n) in &counts {
        println!("{k}: {n} launches");
    }
    Ok(())
}

/// Convolutions (strided, padded, dilated, grouped) and pooling, forward and backward:
/// the im2col/col2im primitives, in both column layouts, with both padding values.
pub(crate) fn conv_and_pool(dev: &Device) -> Result<()> {
    let x = seeded_randn(30, &[2, 4, 5, 6]);
    let w = seeded_randn(31, &[6, 2, 3, 2]);
    let b = seeded_randn(32, &[6]);
    let opts = nn::Conv2dOptions {
        stride: [2, 1],
        padding: [[1, 0], [1, 2]],
        dilation: [1, 2],
        groups: 2,
    };
    grads_on(dev, "conv2d", &[x.clone(), w, b.clone()], |v| {
        v[0].conv2d(&v[1], Some(&v[2]), &opts)
    })?;
    // large enough for the CPU's per-sample schedule (64+ output positions): a 3x3 and
    // a 1x1 read straight from the input, against the composite the trait's defaults run
    let xl = seeded_randn(36, &[2, 4, 9, 9]);
    let wl = seeded_randn(37, &[3, 4, 3, 3]);
    let w1 = seeded_randn(38, &[3, 4, 1, 1]);
    let same = nn::Conv2dOptions::default().padding([1, 1]);
    grads_on(
        dev,
        "conv2d, per sample",
        &[xl.clone(), wl, b.narrow(0, 0, 3)?],
        |v| v[0].conv2d(&v[1], Some(&v[2]), &same),
    )?;
    grads_on(dev, "conv2d 1x1, per sample", &[xl, w1], |v| {
        v[0].conv2d(&v[1], None, &nn::Conv2dOptions::default())
    })?;
    let pool = nn::Pool2dOptions::new([3, 2])
        .stride([2, 2])
        .padding([1, 1]);
    grads_on(dev, "max_pool2d", &[x.clone()], |v| v[0].max_pool2d(&pool))?;
    grads_on(dev, "avg_pool2d", &[x.clone()], |v| {
        v[0].avg_pool2d(&pool, false)
    })?;
    // batch norm's eval pass with residual and ReLU (`channel_affine`: the trait's
    // default off the CPU), after one training step so the statistics are not 0 and 1
    use nn::ModuleExt;
    let mut bn = nn::layers::BatchNorm2d::new(4);
    bn.forward(&seeded_randn(34, &[3, 4, 2, 3]).mul_scalar(3.0)?)?;
    bn.eval();
    let r = seeded_randn(35, &[2, 4, 5, 6]);
    let want = nn::no_grad(|| bn.forward_add_relu(&x, &r))?;
    bn.to_device(dev)?;
    let (xd, rd) = (x.to_device(dev)?, r.to_device(dev)?);
    let got = nn::no_grad(|| bn.forward_add_relu(&xd, &rd))?;
    assert_same("batch norm eval + add + relu", dev, &got, &want)?;
    let got = nn::no_grad(|| bn.forward_relu(&xd))?;
    let want = bn.forward(&xd)?.relu()?;
    assert_same(
        "batch norm eval + relu",
        dev,
        &got,
        &want.to_device(&Device::Cpu)?,
    )?;
    // batch norm's training pass with residual and ReLU: one fused node on the CPU, the
    // composite where the backend has no `batch_norm` (a layer without parameters or
    // buffers, so it runs on either device as it is)
    let plain = nn::layers::BatchNorm2d::new(4)
        .no_affine()
        .no_running_stats();
    let r = seeded_randn(36, &[2, 4, 5, 6]);
    grads_on(dev, "batch norm train + add + relu", &[x.clone(), r], |v| {
        plain.forward_add_relu(&v[0], &v[1])
    })?;
    Ok(())
}

/// Rows wider than a block's threads: the fused cross-entropy's per-thread loops and
/// shared-memory trees, with a target in each row's last thread share.
pub(crate) fn wide_rows(dev: &Device) -> Result<()> {
    let x = seeded_randn(33, &[3, 300]);
    let t = Tensor::from_vec(vec![299i64, 0, 257], &[3])?;
    grads_on(dev, "cross_entropy, 300 classes", &[x.clone(), t], |v| {
        v[0].cross_entropy(&v[1])
    })?;
    grads_on(dev, "relu, 900 elements", &[x], |v| v[0].relu())?;
    Ok(())
}
