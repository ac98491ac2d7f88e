use nn::{Linear, Module};

#[derive(Module)]
struct Net {
    #[module(rename = "a")]
    #[module(rename = "b")]
    hidden: Linear,
}

fn main() {}
