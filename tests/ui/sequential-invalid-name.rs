use nn::{sequential, Linear};

fn main() {
    let _net = sequential!["block.0" => Linear(2 => 3)];
}
