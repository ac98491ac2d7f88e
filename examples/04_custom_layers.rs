//! 5.4 Custom layers: one without parameters (`CenteredLayer`), one with (`MyLinear`), and
//! the exercises: a tensor-reduction layer, a Fourier layer, a block concatenating two nets
//! and a factory of independent copies.
//!
//! Run with `cargo run --example 04_custom_layers`.

use nn::init::Init;
use nn::{
    sequential, DynSequential, Forward, Layer, Linear, Module, ModuleExt, Param, ReLU, Result,
    Tensor,
};
use std::f64::consts::PI;

/// x - mean(x): a layer without parameters.
#[derive(Module)]
struct CenteredLayer;

impl Forward for CenteredLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.sub(&x.mean_all()?)
    }
}

/// relu(x W + b) with W `[in, units]` and b `[units]` drawn from N(0, 1), as the book's.
/// Naming, init, sharing and saving come from the derive.
#[derive(Module)]
struct MyLinear {
    weight: Param,
    bias: Param,
}

impl MyLinear {
    fn new(in_units: usize, units: usize) -> Result<MyLinear> {
        Ok(MyLinear {
            weight: Param::init(&[in_units, units], Init::normal(0.0, 1.0))?,
            bias: Param::init(&[units], Init::normal(0.0, 1.0))?,
        })
    }
}

impl Forward for MyLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.tensor()?)?
            .add(&self.bias.tensor()?)?
            .relu()
    }
}

/// Exercise 1: y_k = sum_ij W_ijk x_i x_j, batched: x `[n, d]` -> y `[n, k]`.
/// The outer products x x^T of a batch, flattened to `[n, d*d]`, times W seen as `[d*d, k]`.
#[derive(Module)]
struct TensorReduction {
    weight: Param,
}

impl TensorReduction {
    fn new(d: usize, k: usize) -> Result<TensorReduction> {
        Ok(TensorReduction {
            weight: Param::init(&[d, d, k], Init::normal(0.0, 0.1))?,
        })
    }
}

impl Forward for TensorReduction {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.tensor()?;
        let (d, k) = (w.shape()[0], w.shape()[2]);
        let [n, dx] = *x.shape() else {
            return Err(nn::Error::InputMismatch {
                layer: "TensorReduction".into(),
                expected: format!("shape [n, {d}]"),
                actual: x.shape().to_vec(),
            });
        };
        if dx != d {
            return Err(nn::Error::InputMismatch {
                layer: "TensorReduction".into(),
                expected: format!("shape [n, {d}]"),
                actual: x.shape().to_vec(),
            });
        }
        let outer = x
            .unsqueeze(2)?
            .mul(&x.unsqueeze(1)?)?
            .reshape(&[n, d * d])?;
        outer.matmul(&w.reshape(&[d * d, k])?)
    }
}

/// Exercise 2: the first half (`ceil(L/2)` terms) of the DFT of each row of x `[n, L]`,
/// X_m = sum_t x_t e^{-2 pi i m t / L}: magnitudes `[n, M]`, or `[Re | Im]` as `[n, 2M]`.
/// Real arithmetic only: Re X = x C, Im X = -x S with C_tm = cos(2 pi m t / L),
/// S_tm = sin(2 pi m t / L), so the layer is differentiable through matmul.
#[derive(Module)]
struct FourierHalf {
    #[module(skip)]
    complex: bool,
}

fn dft_matrices(len: usize) -> Result<(Tensor, Tensor)> {
    let m = len.div_ceil(2);
    let mut c = Vec::with_capacity(len * m);
    let mut s = Vec::with_capacity(len * m);
    for t in 0..len {
        for k in 0..m {
            // (k t mod L) keeps the angle small, so f32 rounding does not grow with L
            let a = 2.0 * PI * ((k * t) % len) as f64 / len as f64;
            c.push(a.cos() as f32);
            s.push(a.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(c, &[len, m])?,
        Tensor::from_vec(s, &[len, m])?,
    ))
}

impl Forward for FourierHalf {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let len = x.shape().last().copied().unwrap_or(0);
        let (c, s) = dft_matrices(len)?;
        let re = x.matmul(&c)?;
        let im = x.matmul(&s)?.neg()?;
        if self.complex {
            return Tensor::cat(&[re, im], -1);
        }
        // NOTE: d|X|/dx is undefined where |X| = 0 (sqrt at 0)
        re.square()?.add(&im.square()?)?.sqrt()
    }
}

/// Exercise (5.1): a block running two nets on the same input and concatenating their
/// outputs along the last dim.
#[derive(Module)]
struct Concat<A, B> {
    net1: A,
    net2: B,
}

impl<A: Forward, B: Forward> Forward for Concat<A, B> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::cat(&[self.net1.forward(x)?, self.net2.forward(x)?], -1)
    }
}

/// Exercise (5.1): a factory chaining `n` independent copies of `net`.
fn replicate<M: Layer + Clone>(net: &M, n: usize) -> DynSequential {
    let mut chain = DynSequential::new();
    for _ in 0..n {
        chain.push(net.deep_copy());
    }
    chain
}

fn main() -> Result<()> {
    nn::manual_seed(0);

    println!("# 5.4.1 a layer without parameters");
    let layer = CenteredLayer;
    println!(
        "{}",
        layer.forward(&Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0], &[5])?)?
    );
    let net = sequential![Linear(8 => 128), CenteredLayer];
    let y = net.forward(&Tensor::rand(&[4, 8]))?;
    println!("mean of the output: {:e}", y.mean_all()?.item()?);

    println!("\n# 5.4.2 a layer with parameters");
    let dense = MyLinear::new(5, 3)?;
    println!("{}", dense.weight);
    println!("{}", dense.forward(&Tensor::rand(&[2, 5]))?);
    let net = sequential![MyLinear::new(64, 8)?, MyLinear::new(8, 1)?];
    println!("{}", net.forward(&Tensor::rand(&[2, 64]))?);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    println!("named for free: {names:?}");
    net.init_matching("bias", &Init::Zeros)?;
    println!(
        "0.bias after init_matching(\"bias\", zeros): {}",
        net.0.bias.data()?
    );

    println!("\n# exercise: y_k = sum_ij W_ijk x_i x_j");
    let red = TensorReduction::new(4, 3)?;
    let x = Tensor::rand(&[2, 4]);
    println!("{}", red.forward(&x)?);

    println!("\n# exercise: first half of the Fourier coefficients (magnitudes)");
    let x = Tensor::from_vec(vec![1.0f32, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0], &[1, 8])?;
    println!(
        "|X| of a period-4 cosine: {}",
        FourierHalf { complex: false }.forward(&x)?
    );
    println!(
        "[Re X | Im X]: {}",
        FourierHalf { complex: true }.forward(&x)?
    );

    println!("\n# exercise: concatenating two nets");
    let both = Concat {
        net1: sequential![Linear(20 => 8), ReLU],
        net2: Linear::new(20, 4),
    };
    println!(
        "output shape: {:?}",
        both.forward(&Tensor::rand(&[2, 20]))?.shape()
    );
    println!("{both}");

    println!("\n# exercise: a factory of independent copies");
    let block = sequential![Linear(8 => 8), ReLU];
    let chain = replicate(&block, 3);
    println!("{chain}");
    let ps = chain.parameters();
    println!(
        "{} parameters, distinct objects: {}, equal starting values: {}",
        ps.len(),
        !ps[0].ptr_eq(&ps[2]),
        ps[0].data()?.to_vec::<f32>()? == ps[2].data()?.to_vec::<f32>()?
    );
    println!(
        "output shape: {:?}",
        chain.forward(&Tensor::rand(&[2, 8]))?.shape()
    );
    Ok(())
}
