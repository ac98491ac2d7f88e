use nn::{Linear, Module, Tensor};

#[derive(Module)]
struct Net {
    hidden: Linear,
    #[module(skip, constant)]
    rand_weight: Tensor,
}

fn main() {}
