use nn::{sequential, Forward, Linear, ReLU, Tensor};

fn main() -> nn::Result<()> {
    let net = sequential![Linear(20 => 256), ReLU, Linear(128 => 10)];
    let old = sequential![Linear::new(20, 256), ReLU, Linear::new(64, 10)];
    // no cascade: the expansion is still a `Sequential`
    net.forward(&Tensor::rand(&[2, 20]))?;
    old.forward(&Tensor::rand(&[2, 20]))?;
    Ok(())
}
