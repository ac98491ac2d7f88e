use nn::sequential;

fn main() {
    let _net = sequential![Conv2d(3 => 8, 3, strides = 2)];
}
