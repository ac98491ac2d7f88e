//! 5.1 Layers and blocks: a sequential MLP, a user-defined block, a runtime-built chain
//! (`MySequential`), arbitrary code in forward (`FixedHiddenMLP`) and nesting (`chimera`).
//!
//! Run with `cargo run --example 01_blocks`. Values differ from the book's (another random
//! generator); shapes, names and structure are the same.

use nn::{
    sequential, Dropout, DynSequential, Flatten, Forward, Layer, Linear, Module, ModuleExt, ReLU,
    Result, Sequential, Tensor,
};

/// The book's `MLP`: a hidden layer of 256 units and an output layer of 10. The derive
/// registers the fields: no registration code, parameters named `hidden.weight`, ...
#[derive(Module)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Mlp {
    fn new() -> Mlp {
        Mlp {
            hidden: Linear::new(20, 256),
            out: Linear::new(256, 10),
        }
    }
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.hidden.forward(x)?.relu()?)
    }
}

/// The book's `FixedHiddenMLP`: a constant random weight (not a parameter), one layer used
/// twice, a data-dependent loop and a scalar output.
#[derive(Module)]
struct FixedHiddenMlp {
    /// moved with the model, neither trained nor saved
    #[module(constant)]
    rand_weight: Tensor,
    linear: Linear,
}

impl FixedHiddenMlp {
    fn new() -> FixedHiddenMlp {
        FixedHiddenMlp {
            rand_weight: Tensor::rand(&[20, 20]),
            linear: Linear::new(20, 20),
        }
    }
}

impl Forward for FixedHiddenMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.linear.forward(x)?;
        let x = x.matmul(&self.rand_weight)?.add_scalar(1.0)?.relu()?;
        // the same layer again: its parameters are shared between both uses
        let mut x = self.linear.forward(&x)?;
        while x.abs()?.sum()?.item()? > 1.0 {
            x = x.div_scalar(2.0)?;
        }
        x.sum()
    }
}

/// The book's `NestMLP`: a sequential inside a user block.
#[derive(Module)]
struct NestMlp {
    net: Sequential<(Linear, ReLU, Linear, ReLU)>,
    linear: Linear,
}

impl NestMlp {
    fn new() -> NestMlp {
        NestMlp {
            net: sequential![Linear(20 => 64), ReLU, Linear(_ => 32), ReLU],
            linear: Linear::new(32, 16),
        }
    }
}

impl Forward for NestMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(&self.net.forward(x)?)
    }
}

fn names(m: &dyn Module) -> Vec<String> {
    m.named_parameters().into_iter().map(|(n, _)| n).collect()
}

fn main() -> Result<()> {
    nn::manual_seed(0);
    let x = Tensor::rand(&[2, 20]);

    println!("# 5.1 a sequential MLP");
    let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
    println!("{}", net.forward(&x)?);

    println!("\n# 5.1.1 a custom block");
    let net = Mlp::new();
    println!("{}", net.forward(&x)?);
    println!("parameters: {:?}", names(&net));
    println!("{net}");

    println!("\n# 5.1.2 MySequential: blocks pushed one at a time");
    // the book's `MySequential(*args)`: any number of blocks, pushed in a loop
    let blocks: Vec<Box<dyn Layer>> = vec![
        Box::new(Linear::new(20, 256)),
        Box::new(ReLU),
        Box::new(Linear::new(256, 10)),
    ];
    let mut net = DynSequential::new();
    for block in blocks {
        net.push_boxed(block);
    }
    println!("{}", net.forward(&x)?);
    println!("parameters: {:?}", names(&net));
    let mut named = DynSequential::new();
    for i in 0..3 {
        named.push_named(format!("block {i}"), Linear::new(20, 20))?;
    }
    println!("named in a loop: {:?}", names(&named));

    println!("\n# 5.1.3 code in forward");
    let net = FixedHiddenMlp::new();
    let y = net.forward(&x)?;
    println!("{y}");
    y.backward()?;
    println!(
        "parameters: {:?}; linear.weight has a gradient: {}; rand_weight is a constant: {}",
        names(&net),
        net.linear.weight.grad().is_some(),
        !net.rand_weight.requires_grad()
    );

    println!("\n# nesting: chimera");
    let chimera = sequential![NestMlp::new(), Linear::new(16, 20), FixedHiddenMlp::new()];
    println!("{}", chimera.forward(&x)?);
    println!("{chimera}");
    println!("parameters: {:?}", names(&chimera));

    println!("\n# layers that behave differently in training and evaluation");
    let mut net =
        sequential![Flatten::new(), Linear(12 => 8), ReLU, Dropout::new(0.5), Linear(_ => 2)];
    let x = Tensor::rand(&[2, 3, 4]);
    println!("{net}");
    println!("train (dropout active):  {}", net.forward(&x)?);
    println!("train again (new mask):  {}", net.forward(&x)?);
    net.eval();
    println!("eval (deterministic):    {}", net.forward(&x)?);
    println!("eval again:              {}", net.forward(&x)?);
    net.train();
    Ok(())
}
