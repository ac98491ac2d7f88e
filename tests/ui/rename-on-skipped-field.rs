use nn::{Linear, Module};

#[derive(Module)]
struct Net {
    hidden: Linear,
    #[module(skip, rename = "n")]
    steps: usize,
}

fn main() {}
