use nn::{Linear, Module};

#[derive(Module)]
struct Net {
    hidden: Linear,
    #[module(constant)]
    scale: f32,
}

fn main() {}
