//! 5.4 Custom layers: one without parameters (`CenteredLayer`), one with (`MyLinear`), and
//! the exercises: a tensor-reduction layer, a Fourier layer, a block concatenating two nets
//! and a factory of independent copies.
//!
//! Run with `cargo run --example 04_custom_layers`.

#[path = "book/mod.rs"]
mod book;

use book::{replicate, CenteredLayer, Concat, FourierHalf, MyLinear, TensorReduction};
use nn::init::Init;
use nn::{sequential, Forward, Linear, ModuleExt, ReLU, Result, Tensor};

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
    println!("mean of the output: {:e}", y.mean()?.item()?);

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
