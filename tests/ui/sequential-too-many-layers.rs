use nn::{sequential, ReLU};

fn main() {
    let _net = sequential![
        ReLU, ReLU, ReLU, ReLU, ReLU, ReLU, ReLU, ReLU,
        ReLU, ReLU, ReLU, ReLU, ReLU, ReLU, ReLU, ReLU,
        ReLU,
    ];
}
