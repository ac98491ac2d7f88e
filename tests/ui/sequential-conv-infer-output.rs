use nn::layers::Conv2d;
use nn::sequential;

fn main() {
    let _net = sequential![Conv2d(3 => _, 3)];
}
