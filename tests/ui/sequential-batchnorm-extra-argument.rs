use nn::sequential;

fn main() {
    let _net = sequential![BatchNorm2d(8, 1e-3)];
}
