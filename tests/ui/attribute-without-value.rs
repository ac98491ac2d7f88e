use nn::{Linear, Module};

#[derive(Module)]
struct Net {
    #[module(rename)]
    hidden: Linear,
    #[module]
    out: Linear,
}

fn main() {}
