use nn::{sequential, Linear, Module, ReLU};

#[derive(Module)]
struct Block {
    fc: Linear,
}

fn main() {
    let _net = sequential![Block { fc: Linear::new(2, 3) }, ReLU];
}
