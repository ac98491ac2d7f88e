//! The chapter's custom layers (section 5.4 and the exercises of 5.1), written once and
//! shared: `examples/04_custom_layers.rs` runs them, `tests/chapter_5_4.rs` and
//! `tests/macros.rs` test them (each includes this file with `#[path]`).

// Each includer uses a different part of this file.
#![allow(dead_code)]

use nn::init::Init;
use nn::{DynSequential, Forward, Layer, Module, ModuleExt, Param, Result, Tensor};
use std::f64::consts::PI;

/// x - mean(x): a layer without parameters.
#[derive(Module)]
pub struct CenteredLayer;

impl Forward for CenteredLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.sub(&x.mean()?)
    }
}

/// relu(x W + b) with W `[in, units]` and b `[units]` drawn from N(0, 1), as the book's.
/// Naming, init, sharing and saving come from the derive.
#[derive(Module)]
pub struct MyLinear {
    /// `[in, units]`.
    pub weight: Param,
    /// `[units]`.
    pub bias: Param,
}

impl MyLinear {
    pub fn new(in_units: usize, units: usize) -> Result<MyLinear> {
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
pub struct TensorReduction {
    /// `[d, d, k]`.
    pub weight: Param,
}

impl TensorReduction {
    pub fn new(d: usize, k: usize) -> Result<TensorReduction> {
        Ok(TensorReduction {
            weight: Param::init(&[d, d, k], Init::normal(0.0, 0.1))?,
        })
    }
}

impl Forward for TensorReduction {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.tensor()?;
        let [d, _, k] = *w.shape() else {
            // a layer's own invariant: `Error::custom` carries the layer's own words
            return Err(nn::Error::custom(format!(
                "TensorReduction: weight must be [d, d, k], got {:?}",
                w.shape()
            )));
        };
        let mismatch = || nn::Error::InputMismatch {
            layer: "TensorReduction".into(),
            expected: format!("shape [n, {d}]"),
            actual: x.shape().to_vec(),
        };
        let [n, dx] = *x.shape() else {
            return Err(mismatch());
        };
        if dx != d {
            return Err(mismatch());
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
pub struct FourierHalf {
    /// `[Re | Im]` instead of magnitudes.
    #[module(skip)]
    pub complex: bool,
}

pub fn dft_matrices(len: usize) -> Result<(Tensor, Tensor)> {
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
pub struct Concat<A, B> {
    /// The first net.
    pub net1: A,
    /// The second net.
    pub net2: B,
}

impl<A: Forward, B: Forward> Forward for Concat<A, B> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::cat(&[self.net1.forward(x)?, self.net2.forward(x)?], -1)
    }
}

/// Exercise (5.1): a factory chaining `n` independent copies of `net`.
pub fn replicate<M: Layer + Clone>(net: &M, n: usize) -> DynSequential {
    let mut chain = DynSequential::new();
    for _ in 0..n {
        chain.push(net.deep_copy());
    }
    chain
}
