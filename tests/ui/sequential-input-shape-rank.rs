use nn::sequential;

fn main() {
    let _net = sequential![input = [2, 1, 8, 8]; nn::layers::Conv2d(1 => 4, 3)];
}
