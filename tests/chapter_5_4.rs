//! 5.4 Custom layers, cell by cell: a layer without parameters, a layer with parameters,
//! and the exercises (tensor reduction, Fourier coefficients, concatenation, factory), with
//! finite-difference gradient checks for the custom math.

#[path = "../examples/book/mod.rs"]
mod book;

use book::{replicate, CenteredLayer, Concat, FourierHalf, MyLinear, TensorReduction};
use nn::init::Init;
use nn::{sequential, Error, Forward, Linear, ModuleExt, Param, ReLU, Result, Tensor};
use std::f64::consts::PI;

/// Compares autograd's gradient of sum(f() * u) (u random) with respect to each of
/// `params` against central differences, perturbing one element at a time.
fn check_grads(params: &[&Param], f: impl Fn() -> Result<Tensor>) -> Result<()> {
    for p in params {
        p.zero_grad();
    }
    let out = f()?;
    let u = Tensor::rand_uniform(out.shape(), -1.0, 1.0);
    out.mul(&u)?.sum()?.backward()?;
    let uv = u.to_vec::<f32>()?;
    let objective = || -> Result<f64> {
        let y = nn::no_grad(&f)?.to_vec::<f32>()?;
        Ok(y.iter().zip(&uv).map(|(a, b)| *a as f64 * *b as f64).sum())
    };
    let eps = 1e-3f32;
    for (i, p) in params.iter().enumerate() {
        let base = p.data()?;
        let shape = base.shape().to_vec();
        let vals = base.to_vec::<f32>()?;
        let analytic = match p.grad() {
            Some(g) => g.to_vec::<f32>()?,
            None => vec![0.0; vals.len()],
        };
        for j in 0..vals.len() {
            let probe = |d: f32| -> Result<f64> {
                let mut v = vals.clone();
                v[j] += d;
                p.set_data(&Tensor::from_vec(v, &shape)?)?;
                objective()
            };
            let numeric = (probe(eps)? - probe(-eps)?) / (2.0 * eps as f64);
            p.set_data(&base)?;
            let a = analytic[j] as f64;
            if (numeric - a).abs() > 1e-2 + 1e-2 * numeric.abs() {
                return Err(Error::NotClose {
                    what: format!("gradient check, parameter {i} element {j}"),
                    got: format!("autograd {a}"),
                    expected: format!("finite difference {numeric}"),
                });
            }
        }
    }
    Ok(())
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol + tol * y.abs())
}

#[test]
fn centered_layer_alone_and_in_a_chain() -> Result<()> {
    let y = CenteredLayer.forward(&Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0], &[5])?)?;
    assert_eq!(y.to_vec::<f32>()?, vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
    assert!(CenteredLayer.parameters().is_empty());
    assert_eq!(CenteredLayer.to_string(), "CenteredLayer()");
    let net = sequential![Linear(8 => 128), CenteredLayer];
    let y = net.forward(&Tensor::rand(&[4, 8]))?;
    assert!(y.mean()?.item()?.abs() < 1e-5);
    assert_eq!(net.to_string(), "Sequential(\n  (0): Linear(in_features=8, out_features=128, bias=True)\n  (1): CenteredLayer()\n)");
    // d(x - mean x)/dx = I - 1/n
    let x = Param::new(Tensor::rand(&[3, 4]))?;
    check_grads(&[&x], || CenteredLayer.forward(&x.tensor()?))
}

#[test]
fn my_linear_gets_naming_init_saving_and_sharing_for_free() -> Result<()> {
    nn::manual_seed(8);
    let dense = MyLinear::new(5, 3)?;
    assert_eq!(dense.weight.shape(), Some(vec![5, 3]));
    assert!(dense
        .weight
        .to_string()
        .starts_with("Parameter containing:\ntensor([["));
    let x = Tensor::rand(&[2, 5]);
    let y = dense.forward(&x)?;
    let want = x
        .matmul(&dense.weight.data()?)?
        .add(&dense.bias.data()?)?
        .relu()?;
    assert_eq!(y.to_vec::<f32>()?, want.to_vec::<f32>()?);
    assert!(y.to_vec::<f32>()?.iter().all(|&v| v >= 0.0));

    let net = sequential![MyLinear::new(64, 8)?, MyLinear::new(8, 1)?];
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias"]);
    assert_eq!(net.forward(&Tensor::rand(&[2, 64]))?.shape(), &[2, 1]);
    assert_eq!(
        net.to_string(),
        "Sequential(\n  (0): MyLinear()\n  (1): MyLinear()\n)"
    );

    // init
    net.init_parameters(&Init::Constant(0.25))?;
    assert_eq!(net.1.bias.data()?.to_vec::<f32>()?, vec![0.25]);
    // saving and loading through the state dict into a freshly built twin
    net.init_parameters(&Init::normal(0.0, 1.0))?;
    let sd = net.state_dict()?;
    let twin = sequential![MyLinear::new(64, 8)?, MyLinear::new(8, 1)?];
    for (name, p) in twin.named_parameters() {
        p.set_data(sd.get(&name).ok_or_else(|| Error::MissingKey {
            container: "state dict".into(),
            key: name.clone(),
        })?)?;
    }
    let x = Tensor::rand(&[3, 64]);
    assert_eq!(
        net.forward(&x)?.to_vec::<f32>()?,
        twin.forward(&x)?.to_vec::<f32>()?
    );
    // sharing: a layer built from another's parameters is tied to it
    let tied = MyLinear {
        weight: dense.weight.clone(),
        bias: dense.bias.clone(),
    };
    let pair = Concat {
        net1: dense,
        net2: tied,
    };
    assert_eq!(pair.parameters().len(), 2);
    assert_eq!(pair.state_dict()?.len(), 4);
    // unlike the book's `.data` version, gradients flow: checked against finite differences
    let layer = MyLinear::new(4, 3)?;
    layer.bias.set_data(&Tensor::full(&[3], 0.5))?; // away from the relu kink
    let x = Param::new(Tensor::rand(&[2, 4]))?;
    check_grads(&[&layer.weight, &layer.bias, &x], || {
        layer.forward(&x.tensor()?)
    })
}

#[test]
fn tensor_reduction_layer() -> Result<()> {
    nn::manual_seed(6);
    let (d, k, n) = (4, 3, 2);
    let layer = TensorReduction {
        weight: Param::init(&[d, d, k], Init::normal(0.0, 1.0))?,
    };
    let x = Tensor::rand_uniform(&[n, d], -1.0, 1.0);
    let y = layer.forward(&x)?;
    assert_eq!(y.shape(), &[n, k]);
    // y_bk = sum_ij W_ijk x_bi x_bj, by the definition
    let (w, xv) = (layer.weight.data()?.to_vec::<f32>()?, x.to_vec::<f32>()?);
    let mut want = vec![0.0f32; n * k];
    for b in 0..n {
        for kk in 0..k {
            for i in 0..d {
                for j in 0..d {
                    want[b * k + kk] += w[(i * d + j) * k + kk] * xv[b * d + i] * xv[b * d + j];
                }
            }
        }
    }
    assert!(close(&y.to_vec::<f32>()?, &want, 1e-5));
    assert!(layer.forward(&Tensor::rand(&[2, 5])).is_err());
    let names: Vec<String> = layer
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["weight"]);
    // dy_k/dx_i = sum_j (W_ijk + W_jik) x_j, dy_k/dW_ijk = x_i x_j: checked numerically
    let xp = Param::new(x)?;
    check_grads(&[&layer.weight, &xp], || layer.forward(&xp.tensor()?))
}

/// The naive O(L^2) DFT in f64: (Re, Im) of the first ceil(L/2) coefficients of one row.
fn naive_dft(x: &[f32]) -> Vec<(f64, f64)> {
    let l = x.len();
    (0..l.div_ceil(2))
        .map(|k| {
            x.iter().enumerate().fold((0.0, 0.0), |(re, im), (t, &v)| {
                let a = -2.0 * PI * (k * t) as f64 / l as f64;
                (re + v as f64 * a.cos(), im + v as f64 * a.sin())
            })
        })
        .collect()
}

#[test]
fn fourier_layer_matches_a_naive_dft() -> Result<()> {
    nn::manual_seed(12);
    for len in [7usize, 8, 33] {
        let x = Tensor::randn(&[3, len]);
        let mag = FourierHalf { complex: false }.forward(&x)?;
        let cplx = FourierHalf { complex: true }.forward(&x)?;
        let m = len.div_ceil(2);
        assert_eq!(mag.shape(), &[3, m]);
        assert_eq!(cplx.shape(), &[3, 2 * m]);
        let (mag, cplx, xv) = (
            mag.to_vec::<f32>()?,
            cplx.to_vec::<f32>()?,
            x.to_vec::<f32>()?,
        );
        for row in 0..3 {
            let want = naive_dft(&xv[row * len..(row + 1) * len]);
            for (k, (re, im)) in want.iter().enumerate() {
                let tol = 1e-4 * (1.0 + len as f64);
                assert!((mag[row * m + k] as f64 - re.hypot(*im)).abs() < tol);
                assert!((cplx[row * 2 * m + k] as f64 - re).abs() < tol);
                assert!((cplx[row * 2 * m + m + k] as f64 - im).abs() < tol);
            }
        }
    }
    // gradients, both forms (random inputs keep |X| away from 0, where sqrt has no derivative)
    let x = Param::new(Tensor::randn(&[2, 6]))?;
    check_grads(&[&x], || {
        FourierHalf { complex: true }.forward(&x.tensor()?)
    })?;
    check_grads(&[&x], || {
        FourierHalf { complex: false }.forward(&x.tensor()?)
    })
}

#[test]
fn concatenating_two_nets() -> Result<()> {
    let both = Concat {
        net1: sequential![Linear(20 => 8), ReLU],
        net2: Linear::new(20, 4),
    };
    let x = Tensor::rand(&[2, 20]);
    let y = both.forward(&x)?;
    assert_eq!(y.shape(), &[2, 12]);
    let want = Tensor::cat(&[both.net1.forward(&x)?, both.net2.forward(&x)?], 1)?;
    assert_eq!(y.to_vec::<f32>()?, want.to_vec::<f32>()?);
    let names: Vec<String> = both
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        ["net1.0.weight", "net1.0.bias", "net2.weight", "net2.bias"]
    );
    y.sum()?.backward()?;
    assert!(both.parameters().iter().all(|p| p.grad().is_some()));
    // outputs whose other dims disagree cannot be concatenated: an error, not a panic
    let odd = Concat {
        net1: Linear::new(3, 2),
        net2: nn::Flatten::range(0, -1),
    };
    let err = odd
        .forward(&Tensor::rand(&[2, 3]))
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.starts_with("cat")));
    Ok(())
}

#[test]
fn factory_makes_independent_copies() -> Result<()> {
    let shared = Linear::new(8, 8);
    let block = sequential![shared.clone(), ReLU, shared];
    let chain = replicate(&block, 3);
    assert_eq!(chain.len(), 3);
    let ps = chain.parameters();
    // each copy keeps its own internal tie (2 params per copy) and shares nothing with others
    assert_eq!(ps.len(), 6);
    assert!(!ps[0].ptr_eq(&ps[2]) && !ps[0].ptr_eq(&block.0.weight));
    assert_eq!(
        ps[0].data()?.to_vec::<f32>()?,
        ps[2].data()?.to_vec::<f32>()?
    );
    let first = chain.layer::<nn::Sequential<(Linear, ReLU, Linear)>>(0)?;
    assert!(first.0.weight.ptr_eq(&first.2.weight));
    ps[0].set_item(&[0, 0], 7.0)?;
    assert_ne!(ps[2].data()?.to_vec::<f32>()?[0], 7.0);
    assert_ne!(block.0.weight.data()?.to_vec::<f32>()?[0], 7.0);
    let y = chain.forward(&Tensor::rand(&[2, 8]))?;
    assert_eq!(y.shape(), &[2, 8]);
    y.sum()?.backward()?;
    assert!(block.0.weight.grad().is_none(), "the original is untouched");
    assert!(ps.iter().all(|p| p.grad().is_some()));
    Ok(())
}
