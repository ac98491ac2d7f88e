//! 5.3 Deferred initialization: layers declared without their input size get their shapes,
//! and their initial values, from the first forward pass.
//!
//! Run with `cargo run --example 03_deferred_init`.

use nn::init::Init;
use nn::{sequential, Forward, Linear, ModuleExt, ReLU, Result, Tensor};

fn shapes(m: &dyn nn::Module) -> Vec<(String, String)> {
    m.named_parameters()
        .into_iter()
        .map(|(n, p)| (n, nn::module::fmt_partial(&p.partial_shape())))
        .collect()
}

fn main() -> Result<()> {
    nn::manual_seed(0);

    println!("# 5.3.1 a network whose input size is not known yet");
    // Keras' `Dense(256, activation=relu), Dense(10)`, PyTorch's `LazyLinear`. (The shape
    // form `Linear(_ => 10)` would already know its input, 256, at compile time.)
    let net = sequential![Linear::lazy(256), ReLU, Linear::lazy(10)];
    println!("{net}");
    println!("parameters exist, shapes do not: {:?}", shapes(&net));
    match net.0.weight.data() {
        Ok(_) => println!("unexpected: data before the first forward"),
        Err(e) => println!("reading the data is an error: {e}"),
    }
    match net.state_dict() {
        Ok(_) => println!("unexpected: a state dict before the first forward"),
        Err(e) => println!("so is asking for the state dict: {e}"),
    }

    let x = Tensor::rand(&[2, 20]);
    let y = net.forward(&x)?;
    println!(
        "after net(X) with X of shape {:?}: y {:?}",
        x.shape(),
        y.shape()
    );
    println!("{:?}", shapes(&net));
    println!("{net}");

    println!("\n# mismatched input: an error naming the layer, expected and actual shapes");
    match net.forward(&Tensor::rand(&[2, 5])) {
        Ok(_) => println!("unexpected: no error"),
        Err(e) => println!("{e}"),
    }

    println!("\n# sizes known at compile time: sequential! infers them, no deferral");
    // `Linear(_ => 10)` after a known 256 becomes `Linear::new(256, 10)`; a literal that
    // disagrees, as in `sequential![Linear(20 => 256), ReLU, Linear(128 => 10)]`, is a
    // compile error pointing at `128` ("expected 256 (output of entry 0), found 128")
    let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
    println!("{:?}", shapes(&net));

    println!("\n# exercise 1: only the first layer's input size is given, at run time");
    let net = sequential![Linear(20 => 256), ReLU, Linear::lazy(10)];
    println!("before any forward: {:?}", shapes(&net));
    net.forward(&x)?;
    println!("after one: {:?}", shapes(&net));

    println!("\n# an initializer chosen before the shapes are known is used when they are");
    let net = sequential![Linear(_ => 8), ReLU, Linear(_ => 1)];
    net.init_matching("weight$", &Init::Constant(0.5))?;
    net.forward(&Tensor::rand(&[3, 4]))?;
    println!("0.weight[0] = {}", net.0.weight.data()?.get(0)?);

    println!("\n# lazy and eager twins built under one seed get the same values");
    nn::manual_seed(42);
    let eager = sequential![Linear(20 => 16), ReLU, Linear(_ => 3)];
    nn::manual_seed(42);
    let lazy = sequential![Linear(_ => 16), ReLU, Linear(_ => 3)];
    let same = eager.forward(&x)?.to_vec::<f32>()? == lazy.forward(&x)?.to_vec::<f32>()?;
    println!("identical outputs: {same}");

    println!("\n# a lazy model takes its shapes from a saved state dict, no dummy forward");
    let fresh = sequential![Linear(_ => 16), ReLU, Linear(_ => 3)];
    let saved = eager.state_dict()?;
    for (name, p) in fresh.named_parameters() {
        if let Some(t) = saved.get(&name) {
            p.set_data(t)?;
        }
    }
    println!("{:?}", shapes(&fresh));
    let same = eager.forward(&x)?.to_vec::<f32>()? == fresh.forward(&x)?.to_vec::<f32>()?;
    println!("identical outputs: {same}");
    Ok(())
}
