use nn::{Linear, Module};

#[derive(Module)]
struct Net {
    #[module(rename = hidden_layer)]
    hidden: Linear,
    #[module(rename = "out.layer")]
    out: Linear,
    #[module(skip = true)]
    steps: usize,
}

fn main() {}
