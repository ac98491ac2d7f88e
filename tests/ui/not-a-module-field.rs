use nn::{Linear, Module};

struct Config {
    width: usize,
}

#[derive(Module)]
struct Net {
    hidden: Linear,
    config: Config,
}

fn main() {}
