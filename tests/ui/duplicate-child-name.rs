use nn::{Linear, Module};

#[derive(Module)]
struct Net {
    #[module(rename = "out")]
    hidden: Linear,
    out: Linear,
}

fn main() {}
