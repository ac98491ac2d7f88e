//! Every backend op, forward and backward, written once as `fn case(dev: &Device)` and run
//! on every device: the CPU always; the host-run CUDA backend (`cuda_host`: nn-cuda's real
//! kernels and launches executed on the CPU, bounds-checked) always; CUDA device 0 with
//! `--features cuda`. Built on a machine without a GPU, the GPU instances are `#[ignore]`d
//! (the runner's summary counts them as ignored); `NN_CUDA_REQUIRE=1` at build time, or
//! `-- --include-ignored`, runs them, and they fail where there is no device. Device
//! results are compared with the CPU backend within tolerances.

// `&[x.clone()]` reads as "the inputs" at every call site; `slice::from_ref` would not.
#![allow(clippy::cloned_ref_to_slice_refs)]

use nn::{DType, Device, Forward, Linear, Result, Tensor};

/// Instantiates each case once per device.
macro_rules! device_tests {
    ($($case:ident),* $(,)?) => {
        /// Every case, by name (the kernel-coverage test runs them all).
        const CASES: &[(&str, fn(&Device) -> Result<()>)] = &[$((stringify!($case), $case)),*];
        mod cpu {
            $(
                #[test]
                fn $case() -> nn::Result<()> {
                    super::$case(&nn::Device::Cpu)
                }
            )*
        }
        /// The CUDA backend's kernels and launches executed on the host (every machine).
        mod cuda_host {
            $(
                #[test]
                fn $case() -> nn::Result<()> {
                    super::$case(&nn_cuda::host_device())
                }
            )*
        }
        #[cfg(feature = "cuda")]
        mod cuda {
            $(
                #[test]
                #[cfg_attr(
                    not(nn_gpu_found),
                    ignore = "no GPU on the machine that built this (NN_CUDA_REQUIRE=1 or --include-ignored runs it)"
                )]
                fn $case() -> nn::Result<()> {
                    super::$case(&nn::cuda::device(0)?)
                }
            )*
        }
    };
}

device_tests!(
    upload_download,
    attention,
    unary_ops,
    binary_broadcast,
    binary_i64,
    where_cond,
    matmul,
    reductions,
    argmax,
    shape_ops,
    indexing,
    casts,
    losses,
    mlp_train_step,
    optimizer_steps,
    in_place_writes,
    model_move_keeps_ties,
    device_mixing_is_an_error,
    empty_tensors,
    conv_and_pool,
    wide_rows,
    clamp_and_masks,
    functional_losses,
    clip_grads,
);

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn close(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= ATOL + RTOL * b.abs()
}

/// Asserts `got` (on `dev`) equals `want` (on the CPU): device, shape, dtype, values.
fn assert_same(what: &str, dev: &Device, got: &Tensor, want: &Tensor) -> Result<()> {
    assert_eq!(&got.device(), dev, "{what}: result on the wrong device");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    // a backend without bool storage answers a comparison with the i64 0/1 mask
    if want.dtype() == DType::Bool && got.dtype() == DType::I64 {
        let w = want.to_dtype(DType::I64)?;
        assert_eq!(got.to_vec::<i64>()?, w.to_vec::<i64>()?, "{what}");
        return Ok(());
    }
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    match want.dtype() {
        DType::F32 => {
            let (g, w) = (got.to_vec::<f32>()?, want.to_vec::<f32>()?);
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                assert!(
                    close(*a, *b),
                    "{what}: element {i}: {a} on {dev} vs {b} on cpu"
                );
            }
        }
        DType::I64 => assert_eq!(got.to_vec::<i64>()?, want.to_vec::<i64>()?, "{what}"),
        _ => assert_eq!(got.to_host()?, want.to_host()?, "{what}"),
    }
    Ok(())
}

fn on(dev: &Device, xs: &[Tensor]) -> Result<Vec<Tensor>> {
    xs.iter().map(|x| x.to_device(dev)).collect()
}

/// `f` on `dev` copies of `inputs` equals `f` on the CPU.
fn same_on(
    dev: &Device,
    what: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    let want = f(inputs)?;
    let got = f(&on(dev, inputs)?)?;
    assert_same(what, dev, &got, &want)
}

/// Gradients of `sum(f(x) * w)` (fixed random `w`) on `dev` equal those on the CPU, for
/// every f32 input.
fn grads_on(
    dev: &Device,
    what: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    let run = |d: &Device| -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|x| Ok(x.to_device(d)?.with_requires_grad(x.dtype() == DType::F32)))
            .collect::<Result<_>>()?;
        let y = f(&xs)?;
        nn::manual_seed(99);
        let w = Tensor::randn(y.shape()).to_device(d)?;
        y.mul(&w)?.sum()?.backward()?;
        Ok((y, xs.iter().map(|x| x.grad()).collect()))
    };
    let (want_y, want_g) = run(&Device::Cpu)?;
    let (got_y, got_g) = run(dev)?;
    assert_same(&format!("{what} (forward)"), dev, &got_y, &want_y)?;
    for (i, (g, w)) in got_g.iter().zip(&want_g).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => assert_same(&format!("{what} (grad of input {i})"), dev, g, w)?,
            (None, None) => {}
            _ => panic!("{what}: gradient of input {i} present on one device only"),
        }
    }
    Ok(())
}

fn seeded_randn(seed: u64, shape: &[usize]) -> Tensor {
    nn::manual_seed(seed);
    Tensor::randn(shape)
}

fn upload_download(dev: &Device) -> Result<()> {
    let x = Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, -1e-8], &[2, 3])?;
    let d = x.to_device(dev)?;
    assert_eq!(&d.device(), dev);
    assert_eq!(d.to_vec::<f32>()?, x.to_vec::<f32>()?);
    assert_eq!(
        d.to_device(&Device::Cpu)?.to_vec::<f32>()?,
        x.to_vec::<f32>()?
    );
    let i = Tensor::from_vec(vec![i64::MIN, -1, 0, 1, i64::MAX], &[5])?;
    assert_eq!(i.to_device(dev)?.to_vec::<i64>()?, i.to_vec::<i64>()?);
    let s = Tensor::scalar(4.5).to_device(dev)?;
    assert_eq!((s.shape().len(), s.item()?), (0, 4.5));
    let z = d.zeros_like()?;
    assert_eq!((&z.device(), z.to_vec::<f32>()?), (dev, vec![0.0; 6]));
    // moving to the device it is on is a handle clone
    assert!(d.to_device(dev)?.same_storage(&d));
    // gradients flow back through a device copy
    let leaf = x.with_requires_grad(true);
    leaf.to_device(dev)?.mul_scalar(2.0)?.sum()?.backward()?;
    assert_eq!(leaf.grad().map(|g| g.device()), Some(Device::Cpu));
    assert_eq!(
        leaf.grad().map(|g| g.to_vec::<f32>()).transpose()?,
        Some(vec![2.0; 6])
    );
    Ok(())
}

fn unary_ops(dev: &Device) -> Result<()> {
    let special = Tensor::from_vec(
        vec![
            f32::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            0.5,
            3.0,
            f32::INFINITY,
            f32::NAN,
        ],
        &[8],
    )?;
    let x = seeded_randn(1, &[3, 5]);
    let pos = x.abs()?.add_scalar(0.1)?;
    type Op = fn(&Tensor) -> Result<Tensor>;
    let ops: [(&str, Op); 13] = [
        ("neg", |t| t.neg()),
        ("exp", |t| t.exp()),
        ("abs", |t| t.abs()),
        ("relu", |t| t.relu()),
        ("sigmoid", |t| t.sigmoid()),
        ("tanh", |t| t.tanh()),
        ("sign", |t| t.sign()),
        ("square", |t| t.square()),
        ("powf3", |t| t.powf(3.0)),
        ("affine", |t| t.affine(-1.5, 0.25)),
        ("add_scalar", |t| t.add_scalar(2.0)),
        ("mul_scalar", |t| t.mul_scalar(-3.0)),
        ("div_scalar", |t| t.div_scalar(4.0)),
    ];
    for (name, op) in ops {
        same_on(
            dev,
            &format!("{name} on special values"),
            &[special.clone()],
            |v| op(&v[0]),
        )?;
        grads_on(dev, name, &[x.clone()], |v| op(&v[0]))?;
    }
    grads_on(dev, "log", &[pos.clone()], |v| v[0].log())?;
    grads_on(dev, "sqrt", &[pos.clone()], |v| v[0].sqrt())?;
    grads_on(dev, "powf(-0.5)", &[pos], |v| v[0].powf(-0.5))?;
    Ok(())
}

fn binary_broadcast(dev: &Device) -> Result<()> {
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 3, 4], &[4]),
        (&[2, 3, 4], &[]),
        (&[2, 1, 4], &[3, 1]),
        (&[1, 3, 1], &[2, 1, 4]),
    ];
    type Op = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let ops: [(&str, Op); 6] = [
        ("add", |a, b| a.add(b)),
        ("sub", |a, b| a.sub(b)),
        ("mul", |a, b| a.mul(b)),
        ("div", |a, b| a.div(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
    ];
    let cmps: [(&str, Op); 6] = [
        ("eq", |a, b| a.eq(b)),
        ("ne", |a, b| a.ne(b)),
        ("lt", |a, b| a.lt(b)),
        ("le", |a, b| a.le(b)),
        ("gt", |a, b| a.gt(b)),
        ("ge", |a, b| a.ge(b)),
    ];
    for (i, (sa, sb)) in shapes.iter().enumerate() {
        let a = seeded_randn(10 + i as u64, sa);
        // rounded values make ties, so comparisons and max/min see equal operands
        let b = seeded_randn(20 + i as u64, sb)
            .mul_scalar(2.0)?
            .to_dtype(DType::I64)?
            .to_dtype(DType::F32)?;
        let a = a
            .mul_scalar(2.0)?
            .to_dtype(DType::I64)?
            .to_dtype(DType::F32)?
            .add(
                &seeded_randn(30, sa)
                    .mul_scalar(0.01)?
                    .gt_scalar(0.0)?
                    .to_dtype(DType::F32)?
                    .mul_scalar(0.5)?,
            )?;
        for (name, op) in ops {
            let b = if name == "div" {
                b.abs()?.add_scalar(1.0)?
            } else {
                b.clone()
            };
            grads_on(
                dev,
                &format!("{name} {sa:?} {sb:?}"),
                &[a.clone(), b.clone()],
                |v| op(&v[0], &v[1]),
            )?;
        }
        for (name, op) in cmps {
            same_on(
                dev,
                &format!("{name} {sa:?} {sb:?}"),
                &[a.clone(), b.clone()],
                |v| op(&v[0], &v[1]),
            )?;
        }
    }
    // NaN against numbers: max/min ignore it, comparisons are false except ne
    let n = Tensor::from_vec(vec![f32::NAN, 1.0, f32::NAN], &[3])?;
    let m = Tensor::from_vec(vec![2.0f32, f32::NAN, f32::NAN], &[3])?;
    for (name, op) in ops.iter().chain(cmps.iter()) {
        same_on(
            dev,
            &format!("{name} with NaN"),
            &[n.clone(), m.clone()],
            |v| op(&v[0], &v[1]),
        )?;
    }
    Ok(())
}

fn binary_i64(dev: &Device) -> Result<()> {
    let a = Tensor::from_vec(vec![7i64, -7, 0, i64::MAX, i64::MIN, 5], &[2, 3])?;
    let b = Tensor::from_vec(vec![2i64, 0, -3], &[3])?;
    type Op = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let ops: [(&str, Op); 12] = [
        ("add", |a, b| a.add(b)),
        ("sub", |a, b| a.sub(b)),
        ("mul", |a, b| a.mul(b)),
        ("div", |a, b| a.div(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
        ("eq", |a, b| a.eq(b)),
        ("ne", |a, b| a.ne(b)),
        ("lt", |a, b| a.lt(b)),
        ("le", |a, b| a.le(b)),
        ("gt", |a, b| a.gt(b)),
        ("ge", |a, b| a.ge(b)),
    ];
    for (name, op) in ops {
        same_on(dev, &format!("i64 {name}"), &[a.clone(), b.clone()], |v| {
            op(&v[0], &v[1])
        })?;
    }
    let m = Tensor::from_vec(vec![-1i64], &[1])?;
    same_on(dev, "i64 MIN / -1", &[a.clone(), m], |v| v[0].div(&v[1]))?;
    // mixed dtypes promote to f32
    same_on(
        dev,
        "i64 + f32",
        &[a.clone(), Tensor::full(&[3], 0.5)],
        |v| v[0].add(&v[1]),
    )?;
    same_on(dev, "i64 add_scalar", &[a], |v| v[0].add_scalar(3.0))?;
    Ok(())
}

fn where_cond(dev: &Device) -> Result<()> {
    let x = seeded_randn(3, &[3, 4]);
    let y = seeded_randn(4, &[4]);
    grads_on(dev, "where broadcast", &[x.clone(), y.clone()], |v| {
        Tensor::where_cond(&v[0].gt_scalar(0.0)?, &v[0], &v[1])
    })?;
    grads_on(dev, "where scalar cond", &[x.clone(), y.clone()], |v| {
        let c = Tensor::from_vec(vec![0i64], &[])?.to_device(&v[0].device())?;
        Tensor::where_cond(&c, &v[0], &v[1])
    })?;
    let ia = Tensor::arange(0, 12).reshape(&[3, 4])?;
    let ib = Tensor::from_vec(vec![-1i64], &[1])?;
    same_on(dev, "where i64", &[x, ia, ib], |v| {
        Tensor::where_cond(&v[0].lt_scalar(0.0)?, &v[1], &v[2])
    })?;
    Ok(())
}

fn matmul(dev: &Device) -> Result<()> {
    let cases: [(&[usize], &[usize]); 8] = [
        (&[3, 4], &[4, 5]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[2, 3, 4], &[4, 5]),
        (&[4, 5], &[2, 5, 3]),
        (&[2, 1, 3, 4], &[3, 4, 5]),
        (&[4], &[4, 5]),
        (&[3, 4], &[4]),
        (&[4], &[4]),
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let a = seeded_randn(40 + i as u64, sa);
        let b = seeded_randn(50 + i as u64, sb);
        grads_on(dev, &format!("matmul {sa:?} x {sb:?}"), &[a, b], |v| {
            v[0].matmul(&v[1])
        })?;
    }
    // transposed operands (the layout Linear and the backward pass use)
    let a = seeded_randn(60, &[6, 3]);
    let b = seeded_randn(61, &[5, 6]);
    grads_on(dev, "aT x bT", &[a.clone(), b.clone()], |v| {
        v[0].t()?.matmul(&v[1].t()?)
    })?;
    // a product large enough for cuBLAS's tiled kernels
    let a = seeded_randn(62, &[64, 300]);
    let b = seeded_randn(63, &[300, 70]);
    same_on(dev, "matmul 64x300x70", &[a, b], |v| v[0].matmul(&v[1]))?;
    Ok(())
}

fn reductions(dev: &Device) -> Result<()> {
    let x = seeded_randn(5, &[2, 3, 4]);
    let axes: [&[usize]; 6] = [&[0], &[1], &[2], &[0, 2], &[0, 1], &[0, 1, 2]];
    for ax in axes {
        grads_on(dev, &format!("sum {ax:?}"), &[x.clone()], |v| {
            v[0].sum_axes_keepdim(ax)
        })?;
        grads_on(dev, &format!("max {ax:?}"), &[x.clone()], |v| {
            v[0].max_axes_keepdim(ax)
        })?;
    }
    grads_on(dev, "sum(1)", &[x.clone()], |v| v[0].sum_dim(1, false))?;
    grads_on(dev, "mean(-1)", &[x.clone()], |v| v[0].mean_dim(-1, true))?;
    grads_on(dev, "mean_all", &[x.clone()], |v| v[0].mean())?;
    grads_on(dev, "min(0)", &[x.clone()], |v| v[0].min_dim(0, false))?;
    grads_on(dev, "min_all", &[x.clone()], |v| v[0].min())?;
    // ties split the gradient of max
    let t = Tensor::from_vec(vec![1.0f32, 3.0, 3.0, 2.0, 0.0, 0.0], &[2, 3])?;
    grads_on(dev, "max with ties", &[t], |v| v[0].max_dim(1, false))?;
    // long rows: more elements than threads per block
    let long = seeded_randn(6, &[3, 1000]);
    same_on(dev, "sum long rows", &[long.clone()], |v| {
        v[0].sum_dim(1, false)
    })?;
    same_on(dev, "max long rows", &[long.clone()], |v| {
        v[0].max_dim(1, false)
    })?;
    same_on(dev, "sum long cols", &[long.clone()], |v| {
        v[0].sum_dim(0, false)
    })?;
    same_on(dev, "sum everything", &[long], |v| v[0].sum())?;
    // NaN propagates through max/min
    let n = Tensor::from_vec(vec![1.0f32, f32::NAN, 2.0, 0.0], &[2, 2])?;
    same_on(dev, "max NaN", &[n.clone()], |v| v[0].max_dim(1, false))?;
    same_on(dev, "min NaN", &[n], |v| v[0].min_dim(0, false))?;
    let i = Tensor::from_vec(vec![5i64, -3, 1 << 40, 1, 1, -8], &[2, 3])?;
    same_on(dev, "i64 sum", &[i.clone()], |v| v[0].sum_dim(1, false))?;
    same_on(dev, "i64 max", &[i.clone()], |v| v[0].max_dim(0, false))?;
    same_on(dev, "i64 min", &[i], |v| v[0].min())?;
    Ok(())
}

fn argmax(dev: &Device) -> Result<()> {
    let x = seeded_randn(7, &[4, 5, 6]);
    for axis in [0isize, 1, 2, -1] {
        same_on(dev, &format!("argmax {axis}"), &[x.clone()], |v| {
            v[0].argmax(axis, false)
        })?;
        same_on(dev, &format!("argmax {axis} keepdim"), &[x.clone()], |v| {
            v[0].argmax(axis, true)
        })?;
    }
    // first maximum wins ties; the first NaN wins over numbers
    let t = Tensor::from_vec(
        vec![
            1.0f32,
            3.0,
            3.0,
            0.0,
            f32::NAN,
            2.0,
            f32::NAN,
            9.0,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            0.0,
            0.0,
        ],
        &[4, 3],
    )?;
    same_on(dev, "argmax ties/NaN", &[t], |v| v[0].argmax(1, false))?;
    let long = seeded_randn(8, &[2, 700]);
    same_on(dev, "argmax long", &[long], |v| v[0].argmax(-1, false))?;
    let i = Tensor::from_vec(vec![3i64, 9, 9, -1], &[2, 2])?;
    same_on(dev, "argmax i64", &[i], |v| v[0].argmax(0, false))?;
    Ok(())
}

fn shape_ops(dev: &Device) -> Result<()> {
    let x = seeded_randn(9, &[2, 3, 4]);
    grads_on(dev, "permute", &[x.clone()], |v| v[0].permute(&[2, 0, 1]))?;
    grads_on(dev, "permute 1 0 2", &[x.clone()], |v| {
        v[0].permute(&[1, 0, 2])
    })?;
    grads_on(dev, "transpose", &[x.clone()], |v| v[0].transpose(0, 2))?;
    grads_on(dev, "reshape", &[x.clone()], |v| v[0].reshape(&[6, 4]))?;
    for axis in 0..3isize {
        grads_on(dev, &format!("narrow {axis}"), &[x.clone()], |v| {
            v[0].narrow(axis, 1, 1)
        })?;
    }
    let y = seeded_randn(10, &[2, 5, 4]);
    let z = seeded_randn(11, &[2, 1, 4]);
    grads_on(dev, "cat 1", &[x.clone(), y, z], |v| Tensor::cat(v, 1))?;
    let w = seeded_randn(12, &[1, 3, 4]);
    grads_on(dev, "cat 0", &[x.clone(), w], |v| Tensor::cat(v, 0))?;
    grads_on(dev, "stack", &[x.clone(), x.clone()], |v| {
        Tensor::stack(v, 3)
    })?;
    grads_on(dev, "chunk", &[x.clone()], |v| {
        let c = v[0].chunk(3, 2)?;
        c[1].sub(&c[0])
    })?;
    grads_on(dev, "broadcast_as", &[seeded_randn(13, &[3, 1])], |v| {
        v[0].broadcast_as(&[2, 3, 4])
    })?;
    let i = Tensor::arange(0, 24).reshape(&[2, 3, 4])?;
    same_on(dev, "i64 permute", &[i.clone()], |v| {
        v[0].permute(&[2, 1, 0])
    })?;
    same_on(dev, "i64 narrow", &[i.clone()], |v| v[0].narrow(2, 1, 2))?;
    same_on(dev, "i64 cat", &[i.clone(), i], |v| Tensor::cat(v, 2))?;
    Ok(())
}

fn indexing(dev: &Device) -> Result<()> {
    let x = seeded_randn(14, &[4, 3, 2]);
    let idx = Tensor::from_vec(vec![3i64, 0, -1, 0, 2], &[5])?;
    for axis in [0isize, 2] {
        let idx = if axis == 2 {
            Tensor::from_vec(vec![1i64, 1, 0, -2], &[4])?
        } else {
            idx.clone()
        };
        grads_on(dev, &format!("index_select {axis}"), &[x.clone()], |v| {
            v[0].index_select(axis, &idx.to_device(&v[0].device())?)
        })?;
    }
    let i = Tensor::arange(0, 6).reshape(&[3, 2])?;
    same_on(
        dev,
        "i64 index_select",
        &[i.clone(), idx.narrow(0, 1, 2)?],
        |v| v[0].index_select(0, &v[1]),
    )?;
    same_on(dev, "get(-1)", &[i.clone()], |v| v[0].get(-1))?;
    let bad = Tensor::from_vec(vec![3i64], &[1])?.to_device(dev)?;
    let e = i
        .to_device(dev)?
        .index_select(0, &bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("index 3 out of range for size 3"), "{e}");
    Ok(())
}

fn casts(dev: &Device) -> Result<()> {
    let x = Tensor::from_vec(
        vec![
            -2.7f32,
            -0.5,
            0.0,
            0.9,
            3.99,
            1e20,
            -1e20,
            f32::NAN,
            f32::INFINITY,
        ],
        &[9],
    )?;
    same_on(dev, "f32 -> i64", &[x], |v| v[0].to_dtype(DType::I64))?;
    let i = Tensor::from_vec(vec![-3i64, 0, 16_777_217, i64::MAX], &[4])?;
    same_on(dev, "i64 -> f32", &[i.clone()], |v| {
        v[0].to_dtype(DType::F32)
    })?;
    same_on(dev, "i64 -> i64", &[i], |v| v[0].to_dtype(DType::I64))?;
    Ok(())
}

fn losses(dev: &Device) -> Result<()> {
    let x = seeded_randn(15, &[4, 6]).mul_scalar(3.0)?;
    grads_on(dev, "softmax", &[x.clone()], |v| v[0].softmax(-1))?;
    grads_on(dev, "softmax 0", &[x.clone()], |v| v[0].softmax(0))?;
    grads_on(dev, "log_softmax", &[x.clone()], |v| v[0].log_softmax(-1))?;
    grads_on(dev, "softmax 3d", &[x.reshape(&[2, 2, 6])?], |v| {
        v[0].softmax(-1)
    })?;
    let (w, b) = (seeded_randn(17, &[6]), seeded_randn(18, &[6]));
    grads_on(dev, "layer_norm", &[x.clone(), w.clone(), b], |v| {
        v[0].layer_norm(&[6], Some(&v[1]), Some(&v[2]), 1e-5)
    })?;
    grads_on(dev, "layer_norm weight only", &[x.clone(), w], |v| {
        v[0].layer_norm(&[6], Some(&v[1]), None, 1e-5)
    })?;
    grads_on(dev, "layer_norm 2 dims", &[x.reshape(&[2, 2, 6])?], |v| {
        v[0].layer_norm(&[2, 6], None, None, 1e-5)
    })?;
    let t = Tensor::from_vec(vec![0i64, 5, 2, 2], &[4])?;
    grads_on(dev, "cross_entropy", &[x.clone()], |v| {
        v[0].cross_entropy(&t.to_device(&v[0].device())?)
    })?;
    let y = seeded_randn(16, &[4, 6]);
    grads_on(dev, "mse", &[x, y], |v| v[0].mse(&v[1]))?;
    same_on(dev, "one_hot", &[t], |v| v[0].one_hot(6))?;
    Ok(())
}

/// `scaled_dot_product_attention`: with gradients (masks of both kinds, a fully masked
/// row, causal, dropout) and the no-grad forward (the CPU's fused kernels against the
/// device's path).
fn attention(dev: &Device) -> Result<()> {
    use nn::functional::scaled_dot_product_attention as sdpa;
    let (q, k, v) = (
        seeded_randn(40, &[2, 2, 3, 4]),
        seeded_randn(41, &[2, 2, 5, 4]),
        seeded_randn(42, &[2, 2, 5, 3]),
    );
    let fm = seeded_randn(43, &[2, 1, 3, 5]);
    let keep: Vec<bool> = (0..15).map(|i| i % 4 != 1 && i / 5 != 1).collect();
    let bm = Tensor::from_vec(keep, &[3, 5])?;
    let qkv = [q, k, v];
    for (what, m, causal) in [
        ("sdpa", None, false),
        ("sdpa causal", None, true),
        ("sdpa f32 mask", Some(&fm), false),
        ("sdpa bool mask", Some(&bm), false),
    ] {
        let run = |x: &[Tensor]| {
            // f32 masks go to the device; bool ones stay on the host (CUDA has no bool
            // storage), which the op accepts
            let m = m
                .map(|m| match m.dtype() {
                    DType::Bool => Ok(m.clone()),
                    _ => m.to_device(&x[0].device()),
                })
                .transpose()?;
            sdpa(&x[0], &x[1], &x[2], m.as_ref(), 0.0, causal, None)
        };
        grads_on(dev, what, &qkv, run)?;
        same_on(dev, &format!("{what} no_grad"), &qkv, |x| {
            nn::no_grad(|| run(x))
        })?;
    }
    // dropout on the weights: one seed per run, so every device draws the same mask
    // (the CPU's fused training node against the device's path)
    grads_on(dev, "sdpa dropout", &qkv, |x| {
        nn::manual_seed(44);
        let m = fm.to_device(&x[0].device())?;
        sdpa(&x[0], &x[1], &x[2], Some(&m), 0.3, false, None)
    })?;
    Ok(())
}

#[path = "devices/backends.rs"]
mod backends;
#[path = "devices/edge.rs"]
mod edge;
#[path = "devices/host.rs"]
mod host;
#[path = "devices/training.rs"]
mod training;
#[path = "devices/trainops.rs"]
mod trainops;

use edge::{device_mixing_is_an_error, empty_tensors};
use host::{conv_and_pool, wide_rows};
use training::{in_place_writes, mlp_train_step, model_move_keeps_ties, optimizer_steps};
use trainops::{clamp_and_masks, clip_grads, functional_losses};
