//! Convolution, pooling and normalization checked against PyTorch (fixtures from
//! tools/make_convnet_fixtures.py, torch 2.15.0): values and gradients.

mod common;

use common::assert_close;
use nn::layers::{BatchNorm1d, BatchNorm2d, GroupNorm};
use nn::{io, Conv2dOptions, Forward, ModuleExt, Pool2dOptions, Result, StateDict, Tensor};

fn fixtures() -> Result<StateDict> {
    io::load_safetensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/conv_ops.safetensors"
    ))
}

fn get(sd: &StateDict, k: &str) -> Tensor {
    sd.get(k)
        .cloned()
        .unwrap_or_else(|| panic!("fixture has no `{k}`: rerun tools/make_convnet_fixtures.py"))
}

/// Runs `f` on the case's inputs and compares its output and input gradients.
fn case(sd: &StateDict, name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<()> {
    let n = (0..)
        .take_while(|i| sd.get(&format!("{name}.in{i}")).is_some())
        .count();
    assert!(n > 0, "no inputs for case {name}");
    let inputs: Vec<Tensor> = (0..n)
        .map(|i| get(sd, &format!("{name}.in{i}")).with_requires_grad(true))
        .collect();
    let out = f(&inputs)?;
    assert_close(
        &format!("{name}.out"),
        &out,
        &get(sd, &format!("{name}.out")),
        1e-4,
    )?;
    out.mul(&get(sd, &format!("{name}.upstream")))?
        .sum()?
        .backward()?;
    for (i, x) in inputs.iter().enumerate() {
        let g = x
            .grad()
            .unwrap_or_else(|| panic!("{name}: no gradient for input {i}"));
        assert_close(
            &format!("{name}.grad{i}"),
            &g,
            &get(sd, &format!("{name}.grad{i}")),
            1e-4,
        )?;
    }
    Ok(())
}

#[test]
fn convolutions_match_pytorch() -> Result<()> {
    let sd = fixtures()?;
    let d = Conv2dOptions::default();
    case(&sd, "conv2d_basic", |x| x[0].conv2d(&x[1], Some(&x[2]), &d))?;
    case(&sd, "conv2d_stride_pad", |x| {
        x[0].conv2d(&x[1], Some(&x[2]), &d.stride([2, 3]).padding([1, 2]))
    })?;
    case(&sd, "conv2d_dilation_groups", |x| {
        x[0].conv2d(&x[1], None, &d.padding([2, 2]).dilation([2, 1]).groups(2))
    })?;
    case(&sd, "conv2d_depthwise", |x| {
        x[0].conv2d(
            &x[1],
            Some(&x[2]),
            &d.stride([2, 2]).padding([1, 1]).groups(3),
        )
    })?;
    case(&sd, "conv2d_same_even_kernel", |x| {
        x[0].conv2d(&x[1], None, &d.dilation([1, 2]).same_padding([4, 2]))
    })?;
    case(&sd, "conv2d_1x1_stride2", |x| {
        x[0].conv2d(&x[1], None, &d.stride([2, 2]))
    })?;
    case(&sd, "conv1d", |x| {
        x[0].conv1d(&x[1], Some(&x[2]), 2, [1, 1], 2, 2)
    })
}

#[test]
fn pools_match_pytorch() -> Result<()> {
    let sd = fixtures()?;
    let o = Pool2dOptions::new([3, 3]).stride([2, 2]).padding([1, 1]);
    case(&sd, "max_pool2d", |x| x[0].max_pool2d(&o))?;
    let o2 = Pool2dOptions::new([2, 3])
        .stride([2, 2])
        .padding([1, 1])
        .dilation([2, 1])
        .ceil_mode(true);
    case(&sd, "max_pool2d_dilation_ceil", |x| x[0].max_pool2d(&o2))?;
    case(&sd, "avg_pool2d_include_pad", |x| x[0].avg_pool2d(&o, true))?;
    let o3 = Pool2dOptions::new([3, 2])
        .stride([2, 2])
        .padding([1, 1])
        .ceil_mode(true);
    case(&sd, "avg_pool2d_exclude_pad_ceil", |x| {
        x[0].avg_pool2d(&o3, false)
    })?;
    case(&sd, "adaptive_avg_pool2d", |x| {
        x[0].adaptive_avg_pool2d([3, 2])
    })?;
    case(&sd, "adaptive_avg_pool2d_1", |x| {
        x[0].adaptive_avg_pool2d([1, 1])
    })
}

fn buffers_match(sd: &StateDict, prefix: &str, model: &dyn nn::Module) -> Result<()> {
    let ours = nn::module::ModuleExt::state_dict(model)?;
    for (k, v) in ours.iter() {
        let want = get(sd, &format!("{prefix}.after.{k}"));
        if want.dtype() == nn::DType::I64 {
            assert_eq!(v.to_vec::<i64>()?, want.to_vec::<i64>()?, "{k}");
            assert_eq!(v.shape(), want.shape(), "{k}");
        } else {
            assert_close(k, v, &want, 1e-5)?;
        }
    }
    Ok(())
}

#[test]
fn batch_norm_matches_pytorch_in_both_modes() -> Result<()> {
    let sd = fixtures()?;
    let mut bn = BatchNorm2d::new(3).momentum(Some(0.2));
    bn.load_state_dict(&sd, &nn::LoadOptions::default().prefix("bn2d.sd"))?;
    let x = get(&sd, "bn2d.x").with_requires_grad(true);
    let y = bn.forward(&x)?;
    assert_close("train_out0", &y, &get(&sd, "bn2d.train_out0"), 1e-4)?;
    y.mul(&get(&sd, "bn2d.upstream"))?.sum()?.backward()?;
    let grad = |t: Option<Tensor>| t.unwrap_or_else(|| panic!("no gradient"));
    assert_close("grad.x", &grad(x.grad()), &get(&sd, "bn2d.grad.x"), 1e-4)?;
    let w = bn.weight.as_ref().and_then(|p| p.grad());
    assert_close("grad.weight", &grad(w), &get(&sd, "bn2d.grad.weight"), 1e-4)?;
    let b = bn.bias.as_ref().and_then(|p| p.grad());
    assert_close("grad.bias", &grad(b), &get(&sd, "bn2d.grad.bias"), 1e-4)?;
    let y1 = bn.forward(&get(&sd, "bn2d.x2"))?;
    assert_close("train_out1", &y1, &get(&sd, "bn2d.train_out1"), 1e-4)?;
    buffers_match(&sd, "bn2d", &bn)?;
    bn.eval();
    let ye = bn.forward(&get(&sd, "bn2d.x"))?;
    assert_close("eval_out", &ye, &get(&sd, "bn2d.eval_out"), 1e-4)?;

    // momentum None: a cumulative average, over [n, c] then [n, c, l] inputs
    let bn1 = BatchNorm1d::new(4).momentum(None);
    let y = bn1.forward(&get(&sd, "bn1d_cma.x"))?;
    assert_close(
        "bn1d train_out0",
        &y,
        &get(&sd, "bn1d_cma.train_out0"),
        1e-4,
    )?;
    let y = bn1.forward(&get(&sd, "bn1d_cma.x2"))?;
    assert_close(
        "bn1d train_out1",
        &y,
        &get(&sd, "bn1d_cma.train_out1"),
        1e-4,
    )?;
    buffers_match(&sd, "bn1d_cma", &bn1)
}

#[test]
fn group_norm_matches_pytorch() -> Result<()> {
    let sd = fixtures()?;
    let gn = GroupNorm::new(2, 6);
    gn.load_state_dict(&sd, &nn::LoadOptions::default().prefix("gn.sd"))?;
    let x = get(&sd, "gn.x").with_requires_grad(true);
    let y = gn.forward(&x)?;
    assert_close("gn.out", &y, &get(&sd, "gn.out"), 1e-4)?;
    y.mul(&get(&sd, "gn.upstream"))?.sum()?.backward()?;
    assert_close(
        "gn.grad.x",
        &x.grad().unwrap_or_else(|| panic!("no grad")),
        &get(&sd, "gn.grad.x"),
        1e-4,
    )?;
    let w = gn
        .weight
        .as_ref()
        .and_then(|p| p.grad())
        .unwrap_or_else(|| panic!("no grad"));
    assert_close("gn.grad.weight", &w, &get(&sd, "gn.grad.weight"), 1e-4)
}
