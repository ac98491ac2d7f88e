use nn::{sequential, Linear, ReLU};

fn main() {
    let _net = sequential!["fc" => Linear(4 => 8), ReLU, "fc" => Linear(_ => 1)];
    let _pos = sequential!["2" => Linear(4 => 8), ReLU, Linear(_ => 1)];
}
