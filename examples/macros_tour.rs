//! A tour of the macros: `#[derive(Module)]` on a struct, an enum and a generic
//! wrapper, `#[module(constant/skip/rename)]`, and `sequential!` with compile-time size
//! inference (the book's 5.1 blocks, written with our DSL).
//!
//! Run: `cargo run --example macros_tour`

use nn::{sequential, Forward, Linear, Module, ModuleExt, ReLU, Result, Tensor};

/// The book's MLP: parameters are found and named with no registration code.
#[derive(Module)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.hidden.forward(x)?.relu()?)
    }
}

/// The book's FixedHiddenMLP: a constant tensor (moved with the model, never trained or
/// saved), a layer used twice, a data-dependent loop and a scalar output.
#[derive(Module)]
struct FixedHiddenMlp {
    #[module(constant)]
    rand_weight: Tensor,
    linear: Linear,
    #[module(skip)]
    max_halvings: usize,
}

impl Forward for FixedHiddenMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.linear.forward(x)?;
        let x = x.matmul(&self.rand_weight)?.add_scalar(1.0)?.relu()?;
        let mut x = self.linear.forward(&x)?; // shared weights
        let mut n = 0;
        while x.abs()?.sum()?.item()? > 1.0 && n < self.max_halvings {
            x = x.mul_scalar(0.5)?;
            n += 1;
        }
        x.sum()
    }
}

/// An enum of blocks: the active variant is visited; `Plain(Linear)` is transparent.
#[derive(Module)]
enum Head {
    Plain(Linear),
    Gated { gate: Linear, value: Linear },
}

impl Forward for Head {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Head::Plain(l) => l.forward(x),
            Head::Gated { gate, value } => gate.forward(x)?.sigmoid()?.mul(&value.forward(x)?),
        }
    }
}

/// A generic wrapper: the derive adds `B: Module` for the field, whatever `B` is named.
#[derive(Module)]
struct Named<B> {
    #[module(rename = "block 0")]
    block: B,
}

impl<B: Forward> Forward for Named<B> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.block.forward(x)
    }
}

fn names(m: &impl Module) -> Vec<String> {
    m.named_parameters().into_iter().map(|(n, _)| n).collect()
}

fn main() -> Result<()> {
    nn::manual_seed(42);
    let x = Tensor::rand(&[2, 20]);

    // sizes checked and filled at compile time: `Linear(128 => 10)` in the middle would
    // not compile ("expected 256 (output of entry 0), found 128")
    let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
    println!("{net}");
    println!("output shape: {:?}", net.forward(&x)?.shape());
    println!("net.2.weight: {:?}\n", net.2.weight.shape());

    let mlp = Mlp {
        hidden: Linear::new(20, 256),
        out: Linear::new(256, 10),
    };
    println!("{mlp}");
    println!("parameters: {:?}\n", names(&mlp));

    let fixed = FixedHiddenMlp {
        rand_weight: Tensor::rand(&[20, 20]),
        linear: Linear::new(20, 20),
        max_halvings: 100,
    };
    println!(
        "FixedHiddenMlp -> {:?}",
        fixed.forward(&x)?.to_vec::<f32>()?
    );
    println!(
        "parameters: {:?}, state_dict keys: {:?}\n",
        names(&fixed),
        fixed.state_dict()?.keys().collect::<Vec<_>>()
    );

    // nesting in any combination (the book's chimera), lazy where sizes are unknown
    let chimera = sequential![
        "nest" => Named { block: mlp },
        Linear(_ => 20),
        "head" => Head::Gated { gate: Linear::lazy(4), value: Linear::lazy(4) },
        Head::Plain(Linear::lazy(1)),
    ];
    println!("chimera output: {:?}", chimera.forward(&x)?.shape());
    println!("{chimera}");
    println!("parameters: {:?}", names(&chimera));
    Ok(())
}
