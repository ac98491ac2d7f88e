use nn::layers::{BatchNorm2d, Conv2d, MaxPool2d};
use nn::{sequential, Forward, ReLU, Tensor};

fn main() -> nn::Result<()> {
    let net = sequential![Conv2d(3 => 64, 3), ReLU, MaxPool2d::new(2), Conv2d(32 => 8, 3)];
    let old = sequential![Conv2d::new(3, 16, 3).padding(1), Conv2d::new(8, 4, 1)];
    let bn = sequential![Conv2d(1 => 8, 3), BatchNorm2d(16)];
    // no cascade: the expansions are still `Sequential`s
    net.forward(&Tensor::rand(&[1, 3, 16, 16]))?;
    old.forward(&Tensor::rand(&[1, 3, 16, 16]))?;
    bn.forward(&Tensor::rand(&[2, 1, 8, 8]))?;
    Ok(())
}
