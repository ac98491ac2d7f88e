use nn::layers::{Conv2d, MaxPool2d};
use nn::{sequential, Forward, Tensor};

fn main() -> nn::Result<()> {
    let net = sequential![input = [1, 6, 6]; Conv2d(1 => 4, 3), MaxPool2d::new(5)];
    let conv = sequential![input = [1, 4, 4]; Conv2d(1 => 4, [3, 5], padding = [0, 0])];
    net.forward(&Tensor::rand(&[2, 1, 6, 6]))?;
    conv.forward(&Tensor::rand(&[2, 1, 4, 4]))?;
    Ok(())
}
