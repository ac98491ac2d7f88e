//! Tensors and autograd at work: creation, broadcasting, matmul, reductions, backward, no_grad.
//!
//! Run with `cargo run --example 00_tensors`.

use nn::{Result, Tensor};

fn main() -> Result<()> {
    nn::manual_seed(0);

    // creation
    let x = Tensor::arange_f32(0.0, 12.0, 1.0)?.reshape(&[3, 4])?;
    println!("x = {x}");
    println!(
        "shape {:?}, {} elements, dtype {}",
        x.shape(),
        x.numel(),
        x.dtype()
    );
    println!("zeros: {}", Tensor::zeros(&[2, 3]));
    println!("randn: {}", Tensor::randn(&[2, 3]));
    println!(
        "from_vec: {}",
        Tensor::from_vec(vec![2.0f32, 1.0, 4.0, 3.0], &[2, 2])?
    );

    // elementwise ops with broadcasting: [3, 1] against [1, 2] gives [3, 2]
    let a = Tensor::arange_f32(0.0, 3.0, 1.0)?.reshape(&[3, 1])?;
    let b = Tensor::arange_f32(0.0, 2.0, 1.0)?.reshape(&[1, 2])?;
    println!("a + b = {}", a.add(&b)?);
    println!("x * 2 + 1 = {}", x.mul_scalar(2.0)?.add_scalar(1.0)?);
    println!("exp(x[0]) = {}", x.get(0)?.exp()?);

    // matrix product and reductions
    let w = Tensor::ones(&[4, 2]);
    println!("x @ ones(4, 2) = {}", x.matmul(&w)?);
    println!("sum = {}, mean = {}", x.sum()?, x.mean()?);
    println!("sum over rows = {}", x.sum_dim(0, false)?);
    println!("max over columns = {}", x.max_dim(1, false)?);
    println!(
        "cat along dim 0: shape {:?}",
        Tensor::cat(&[x.clone(), x.clone()], 0)?.shape()
    );

    // autograd: y = 2 x.x, dy/dx = 4x
    let x = Tensor::arange_f32(0.0, 4.0, 1.0)?.with_requires_grad(true);
    let y = x.mul(&x)?.sum()?.mul_scalar(2.0)?;
    y.backward()?;
    println!("y = {y}");
    if let Some(g) = x.grad() {
        println!("dy/dx = {g} (4x = {})", x.mul_scalar(4.0)?.detach());
    }

    // a graph that reuses a value sums the gradients of both uses: d(x*x + x)/dx = 2x + 1
    let x = Tensor::from_vec(vec![1.0f32, -2.0, 3.0], &[3])?.with_requires_grad(true);
    x.mul(&x)?.add(&x)?.sum()?.backward()?;
    println!(
        "d(x^2 + x)/dx = {}",
        x.grad().map(|g| g.to_string()).unwrap_or_default()
    );

    // no_grad: inference records no graph
    let z = nn::no_grad(|| x.mul_scalar(3.0))?;
    println!("under no_grad: requires_grad = {}", z.requires_grad());
    Ok(())
}
