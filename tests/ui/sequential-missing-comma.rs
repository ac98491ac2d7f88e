use nn::sequential;

fn main() {
    let _net = sequential![Linear(20 => 256) ReLU, Linear(_ => 10)];
}
