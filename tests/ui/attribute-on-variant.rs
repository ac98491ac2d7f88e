use nn::{Linear, Module, ReLU};

#[derive(Module)]
enum Act {
    #[module(skip)]
    Relu(ReLU),
    Proj(Linear),
}

fn main() {}
