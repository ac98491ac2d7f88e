use nn::{sequential, Linear, ReLU};

fn main() {
    let _net = sequential![Linear(20 => 256), ReLU, Linear(_ => _)];
}
