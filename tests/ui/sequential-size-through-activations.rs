use nn::layers::{LeakyReLU, Softmax, GELU};
use nn::{sequential, Linear};

fn main() {
    // GELU, LeakyReLU and Softmax keep the size: 8 flows to the last Linear
    let _net = sequential![Linear(4 => 8), GELU::new(), LeakyReLU::new(0.1), Softmax::new(-1), Linear(7 => 3)];
}
