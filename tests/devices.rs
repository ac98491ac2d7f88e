//! Every backend op, forward and backward, written once as `fn case(dev: &Device)` and run
//! on every device: the CPU always, CUDA device 0 with `--features cuda`. Without a GPU the
//! CUDA instances print "skipped: no CUDA device" and pass; with `NN_CUDA_REQUIRE=1` they
//! fail instead. Device results are compared with the CPU backend within tolerances.

// `&[x.clone()]` reads as "the inputs" at every call site; `slice::from_ref` would not.
#![allow(clippy::cloned_ref_to_slice_refs)]

use nn::{DType, Device, Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};

/// Instantiates each case once per device.
macro_rules! device_tests {
    ($($case:ident),* $(,)?) => {
        mod cpu {
            $(
                #[test]
                fn $case() -> nn::Result<()> {
                    super::$case(&nn::Device::Cpu)
                }
            )*
        }
        #[cfg(feature = "cuda")]
        mod cuda {
            $(
                #[test]
                fn $case() -> nn::Result<()> {
                    match super::cuda_device()? {
                        Some(dev) => super::$case(&dev),
                        None => Ok(()),
                    }
                }
            )*
        }
    };
}

device_tests!(
    upload_download,
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
    model_move_keeps_ties,
    device_mixing_is_an_error,
    empty_tensors,
);

/// CUDA device 0, or `None` (after printing why) when there is none, unless
/// `NN_CUDA_REQUIRE=1` turns that into a failure.
#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Option<Device>> {
    match nn::cuda::device(0) {
        Ok(d) => Ok(Some(d)),
        Err(e) if std::env::var("NN_CUDA_REQUIRE").is_ok_and(|v| v == "1") => Err(e),
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            Ok(None)
        }
    }
}

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn close(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= ATOL + RTOL * b.abs()
}

/// Asserts `got` (on `dev`) equals `want` (on the CPU): device, shape, dtype, values.
fn assert_same(what: &str, dev: &Device, got: &Tensor, want: &Tensor) -> Result<()> {
    assert_eq!(&got.device(), dev, "{what}: result on the wrong device");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
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
            .map(|x| Ok(x.to_device(d)?.set_requires_grad(x.dtype() == DType::F32)))
            .collect::<Result<_>>()?;
        let y = f(&xs)?;
        nn::manual_seed(99);
        let w = Tensor::randn(y.shape()).to_device(d)?;
        y.mul(&w)?.sum_all()?.backward()?;
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
    let leaf = x.set_requires_grad(true);
    leaf.to_device(dev)?
        .mul_scalar(2.0)?
        .sum_all()?
        .backward()?;
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
    grads_on(dev, "sum(1)", &[x.clone()], |v| v[0].sum(1, false))?;
    grads_on(dev, "mean(-1)", &[x.clone()], |v| v[0].mean(-1, true))?;
    grads_on(dev, "mean_all", &[x.clone()], |v| v[0].mean_all())?;
    grads_on(dev, "min(0)", &[x.clone()], |v| v[0].min(0, false))?;
    grads_on(dev, "min_all", &[x.clone()], |v| v[0].min_all())?;
    // ties split the gradient of max
    let t = Tensor::from_vec(vec![1.0f32, 3.0, 3.0, 2.0, 0.0, 0.0], &[2, 3])?;
    grads_on(dev, "max with ties", &[t], |v| v[0].max(1, false))?;
    // long rows: more elements than threads per block
    let long = seeded_randn(6, &[3, 1000]);
    same_on(dev, "sum long rows", &[long.clone()], |v| {
        v[0].sum(1, false)
    })?;
    same_on(dev, "max long rows", &[long.clone()], |v| {
        v[0].max(1, false)
    })?;
    same_on(dev, "sum long cols", &[long.clone()], |v| {
        v[0].sum(0, false)
    })?;
    same_on(dev, "sum everything", &[long], |v| v[0].sum_all())?;
    // NaN propagates through max/min
    let n = Tensor::from_vec(vec![1.0f32, f32::NAN, 2.0, 0.0], &[2, 2])?;
    same_on(dev, "max NaN", &[n.clone()], |v| v[0].max(1, false))?;
    same_on(dev, "min NaN", &[n], |v| v[0].min(0, false))?;
    let i = Tensor::from_vec(vec![5i64, -3, 1 << 40, 1, 1, -8], &[2, 3])?;
    same_on(dev, "i64 sum", &[i.clone()], |v| v[0].sum(1, false))?;
    same_on(dev, "i64 max", &[i.clone()], |v| v[0].max(0, false))?;
    same_on(dev, "i64 min", &[i], |v| v[0].min_all())?;
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
    let t = Tensor::from_vec(vec![0i64, 5, 2, 2], &[4])?;
    grads_on(dev, "cross_entropy", &[x.clone()], |v| {
        v[0].cross_entropy(&t.to_device(&v[0].device())?)
    })?;
    let y = seeded_randn(16, &[4, 6]);
    grads_on(dev, "mse", &[x, y], |v| v[0].mse(&v[1]))?;
    same_on(dev, "one_hot", &[t], |v| v[0].one_hot(6))?;
    Ok(())
}

/// A few SGD steps of a small MLP on `dev` track the same steps on the CPU.
fn mlp_train_step(dev: &Device) -> Result<()> {
    nn::manual_seed(17);
    let cpu_net = Sequential::new((Linear::new(20, 32), ReLU, Linear::new(32, 5)));
    let mut dev_net = cpu_net.deep_copy();
    dev_net.to_device(dev)?;
    nn::manual_seed(18);
    let x = Tensor::randn(&[16, 20]);
    let t = Tensor::randint(&[16], 0, 5)?;
    let (xd, td) = (x.to_device(dev)?, t.to_device(dev)?);
    let step = |net: &Sequential<(Linear, ReLU, Linear)>, x: &Tensor, t: &Tensor| -> Result<f32> {
        net.zero_grad();
        let loss = net.forward(x)?.cross_entropy(t)?;
        loss.backward()?;
        for p in net.parameters() {
            if let Some(g) = p.grad() {
                p.update(|d| d.sub(&g.mul_scalar(0.1)?))?;
            }
        }
        loss.item()
    };
    for i in 0..3 {
        let (lc, ld) = (step(&cpu_net, &x, &t)?, step(&dev_net, &xd, &td)?);
        assert!(close(ld, lc), "step {i}: loss {ld} on {dev} vs {lc} on cpu");
    }
    for ((name, pc), (_, pd)) in cpu_net
        .named_parameters()
        .into_iter()
        .zip(dev_net.named_parameters())
    {
        assert_same(
            &format!("parameter {name} after 3 steps"),
            dev,
            &pd.data()?,
            &pc.data()?,
        )?;
    }
    Ok(())
}

/// Moving a model keeps tied parameters tied; gradients of a tied weight sum its uses.
fn model_move_keeps_ties(dev: &Device) -> Result<()> {
    nn::manual_seed(19);
    let shared = Linear::new(6, 6);
    let cpu_net = Sequential::new((
        Linear::new(4, 6),
        ReLU,
        shared.clone(),
        ReLU,
        shared,
        Linear::new(6, 2),
    ));
    let mut net = cpu_net.deep_copy();
    net.to_device(dev)?;
    assert!(net.2.weight.ptr_eq(&net.4.weight), "tie lost by the move");
    assert_eq!(net.parameters().len(), 6, "a tied parameter is listed once");
    assert!(net.parameters().iter().all(|p| &p.device() == dev));
    let x = seeded_randn(20, &[3, 4]);
    let (yc, yd) = (cpu_net.forward(&x)?, net.forward(&x.to_device(dev)?)?);
    assert_same("tied forward", dev, &yd, &yc)?;
    yc.sum_all()?.backward()?;
    yd.sum_all()?.backward()?;
    let (gc, gd) = (cpu_net.2.weight.grad(), net.4.weight.grad());
    match (gd, gc) {
        (Some(gd), Some(gc)) => assert_same("tied grad", dev, &gd, &gc)?,
        _ => panic!("tied weight has no gradient"),
    }
    // a write through one handle is seen through the other, on the device
    net.2.weight.set_item(&[0, 0], 42.0)?;
    assert_eq!(net.4.weight.data()?.to_vec::<f32>()?[0], 42.0);
    // and back to the host
    net.to_device(&Device::Cpu)?;
    assert!(net.2.weight.ptr_eq(&net.4.weight));
    assert_eq!(net.4.weight.device(), Device::Cpu);
    assert_eq!(
        net.0.weight.data()?.to_vec::<f32>()?,
        cpu_net.0.weight.data()?.to_vec::<f32>()?
    );
    Ok(())
}

/// Operands on two devices are an error naming both, never a silent copy.
fn device_mixing_is_an_error(dev: &Device) -> Result<()> {
    if dev.is_cpu() {
        return Ok(());
    }
    let a = Tensor::ones(&[2, 2]);
    let b = Tensor::ones(&[2, 2]).to_device(dev)?;
    let idx = Tensor::from_vec(vec![0i64], &[1])?;
    let errs = [
        a.add(&b).err(),
        b.mul(&a).err(),
        a.matmul(&b).err(),
        Tensor::cat(&[b.clone(), a.clone()], 0).err(),
        Tensor::where_cond(&a.gt_scalar(0.0)?, &b, &a).err(),
        b.index_select(0, &idx).err(),
        // targets left on the host
        b.cross_entropy(&Tensor::from_vec(vec![0i64, 1], &[2])?)
            .err(),
    ];
    for e in errs {
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("different devices")
                && msg.contains("cpu")
                && msg.contains(&dev.to_string()),
            "{msg}"
        );
    }
    let lin = Linear::new(2, 3);
    let e = lin
        .forward(&b)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("different devices"), "{e}");
    Ok(())
}

/// Zero-size tensors go through every op without a launch failing.
fn empty_tensors(dev: &Device) -> Result<()> {
    let e = Tensor::zeros(&[0, 3]);
    same_on(dev, "empty exp", &[e.clone()], |v| v[0].exp())?;
    same_on(dev, "empty add", &[e.clone(), Tensor::ones(&[3])], |v| {
        v[0].add(&v[1])
    })?;
    same_on(dev, "empty sum(0)", &[e.clone()], |v| v[0].sum(0, false))?;
    same_on(dev, "empty sum(1)", &[e.clone()], |v| v[0].sum(1, false))?;
    same_on(
        dev,
        "empty matmul k=0",
        &[Tensor::zeros(&[2, 0]), Tensor::zeros(&[0, 3])],
        |v| v[0].matmul(&v[1]),
    )?;
    same_on(
        dev,
        "empty matmul m=0",
        &[e.clone(), Tensor::ones(&[3, 2])],
        |v| v[0].matmul(&v[1]),
    )?;
    same_on(
        dev,
        "cat with empty",
        &[e.clone(), Tensor::ones(&[2, 3])],
        |v| Tensor::cat(v, 0),
    )?;
    same_on(dev, "narrow to nothing", &[Tensor::ones(&[2, 3])], |v| {
        v[0].narrow(1, 3, 0)
    })?;
    same_on(dev, "permute empty", &[e.clone()], |v| v[0].t())?;
    let none = Tensor::from_vec(Vec::<i64>::new(), &[0])?;
    same_on(
        dev,
        "index_select nothing",
        &[Tensor::ones(&[2, 3]), none],
        |v| v[0].index_select(1, &v[1]),
    )?;
    same_on(dev, "empty cast", &[e], |v| v[0].to_dtype(DType::I64))?;
    Ok(())
}

/// The CUDA entry points answer without a GPU: counts, readable errors, CPU fallbacks.
#[cfg(feature = "cuda")]
#[test]
fn cuda_entry_points_never_panic() {
    let n = nn::cuda::device_count();
    let e = nn::cuda::device(n + 7)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains(&format!("cuda:{}", n + 7)), "{e}");
    if n == 0 {
        println!("no CUDA device: {e}");
        assert!(!nn::cuda::is_available());
        assert!(nn::cuda::device(0).is_err());
        assert_eq!(nn::cuda::try_device(0), Device::Cpu);
        assert_eq!(nn::cuda::all_devices(), vec![Device::Cpu]);
    } else {
        assert_eq!(nn::cuda::all_devices().len(), n);
    }
}

/// A device whose storage refuses every op: mixing it with the CPU must be caught by
/// nn-core's device checks before any backend op runs (this runs without a GPU).
mod fake_gpu {
    use nn::backend::{
        BackendStorage, BinaryOp, DeviceBackend, MatmulSpec, ReduceOp, Storage, UnaryOp,
    };
    use nn::cpu::CpuStorage;
    use nn::{DType, Device, Error, Result};
    use std::any::Any;
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct FakeGpu;

    #[derive(Debug)]
    struct FakeStorage(CpuStorage);

    fn refuse<T>() -> Result<T> {
        Err(Error::backend("fake", "fake backend op reached"))
    }

    impl DeviceBackend for FakeGpu {
        fn name(&self) -> String {
            "fake:0".into()
        }
        fn ordinal(&self) -> usize {
            0
        }
        fn upload(&self, data: &CpuStorage) -> Result<Storage> {
            Ok(Arc::new(FakeStorage(data.clone())))
        }
        fn zeros(&self, len: usize, dtype: DType) -> Result<Storage> {
            Ok(Arc::new(FakeStorage(CpuStorage::zeros(len, dtype))))
        }
        fn synchronize(&self) -> Result<()> {
            Ok(())
        }
    }

    impl BackendStorage for FakeStorage {
        fn device(&self) -> Device {
            Device::Cuda(Arc::new(FakeGpu))
        }
        fn dtype(&self) -> DType {
            self.0.dtype()
        }
        fn len(&self) -> usize {
            BackendStorage::len(&self.0)
        }
        fn to_cpu(&self) -> Result<CpuStorage> {
            Ok(self.0.clone())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
        fn unary(&self, _: UnaryOp) -> Result<Storage> {
            refuse()
        }
        fn binary(
            &self,
            _: BinaryOp,
            _: &[usize],
            _: &dyn BackendStorage,
            _: &[usize],
            _: &[usize],
        ) -> Result<Storage> {
            refuse()
        }
        fn where_cond(
            &self,
            _: &[usize],
            _: &dyn BackendStorage,
            _: &[usize],
            _: &dyn BackendStorage,
            _: &[usize],
            _: &[usize],
        ) -> Result<Storage> {
            refuse()
        }
        fn matmul(&self, _: &dyn BackendStorage, _: &MatmulSpec) -> Result<Storage> {
            refuse()
        }
        fn reduce(&self, _: ReduceOp, _: &[usize], _: &[usize]) -> Result<Storage> {
            refuse()
        }
        fn permute(&self, _: &[usize], _: &[usize]) -> Result<Storage> {
            refuse()
        }
        fn narrow(&self, _: &[usize], _: usize, _: usize, _: usize) -> Result<Storage> {
            refuse()
        }
        fn cat(
            &self,
            _: &[usize],
            _: &[(&dyn BackendStorage, &[usize])],
            _: usize,
        ) -> Result<Storage> {
            refuse()
        }
        fn index_select(&self, _: &[usize], _: usize, _: &dyn BackendStorage) -> Result<Storage> {
            refuse()
        }
        fn index_add(
            &self,
            _: &[usize],
            _: usize,
            _: &dyn BackendStorage,
            _: &[usize],
        ) -> Result<Storage> {
            refuse()
        }
        fn cast(&self, _: DType) -> Result<Storage> {
            refuse()
        }
    }
}

/// Every binary-operand entry point rejects a CPU/GPU mix with a message naming both
/// devices (checked here against a fake GPU, so it runs on every machine).
#[test]
fn device_mixing_is_caught_before_the_backend() -> Result<()> {
    let gpu = Device::Cuda(std::sync::Arc::new(fake_gpu::FakeGpu));
    let a = Tensor::ones(&[2, 2]);
    let b = Tensor::ones(&[2, 2]).to_device(&gpu)?;
    assert_eq!(b.device(), gpu);
    let idx = Tensor::from_vec(vec![0i64], &[1])?;
    let mask = a.gt_scalar(0.0)?;
    let errs = [
        ("add", a.add(&b).err()),
        ("mul", b.mul(&a).err()),
        ("maximum", a.maximum(&b).err()),
        ("lt", b.lt(&a).err()),
        ("matmul", a.matmul(&b).err()),
        ("cat", Tensor::cat(&[b.clone(), a.clone()], 0).err()),
        ("where", Tensor::where_cond(&mask, &b, &a).err()),
        ("index_select", b.index_select(0, &idx).err()),
        ("linear", Linear::new(2, 3).forward(&b).err()),
        (
            "cross_entropy",
            b.cross_entropy(&Tensor::from_vec(vec![0i64, 1], &[2])?)
                .err(),
        ),
    ];
    for (op, e) in errs {
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("different devices")
                && msg.contains("cpu")
                && msg.contains("fake:0")
                && msg.starts_with(op),
            "{op}: {msg}"
        );
    }
    // a mixed pair is no worse than the copy it asks for
    assert_eq!(
        a.add(&b.to_device(&Device::Cpu)?)?.to_vec::<f32>()?,
        vec![2.0; 4]
    );
    Ok(())
}
