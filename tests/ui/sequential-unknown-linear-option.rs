use nn::sequential;

fn main() {
    let _net = sequential![Linear(20 => 256, bais = false)];
}
