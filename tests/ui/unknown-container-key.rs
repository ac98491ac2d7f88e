use nn::{Linear, Module};

#[derive(Module)]
#[module(nmae = "Printed")]
struct Net {
    hidden: Linear,
}

fn main() {}
