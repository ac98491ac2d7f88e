use nn::sequential;

const SIDE: usize = 8;

fn main() {
    let _net = sequential![input = [1, SIDE, SIDE]; nn::layers::Conv2d(1 => 4, 3)];
}
