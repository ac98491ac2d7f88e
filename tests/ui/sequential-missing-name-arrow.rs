use nn::sequential;

fn main() {
    let _net = sequential!["hidden" = Linear(20 => 256), ReLU];
}
