use nn::layers::{Conv2d, MaxPool2d};
use nn::{sequential, Flatten, Forward, Linear, ReLU, Tensor};

fn main() -> nn::Result<()> {
    // 4 channels x 3 x 3 after the pool: 36 features, not 64
    let net = sequential![
        input = [1, 8, 8];
        Conv2d(1 => 4, 3),
        ReLU,
        MaxPool2d::new(2),
        Flatten::new(),
        Linear(64 => 10),
    ];
    let old = sequential![input = [3, 7, 7]; Conv2d::new(3, 2, 3).stride(2), Flatten::new(), Linear::new(50, 10)];
    // no cascade: the expansions are still `Sequential`s
    net.forward(&Tensor::rand(&[2, 1, 8, 8]))?;
    old.forward(&Tensor::rand(&[2, 3, 7, 7]))?;
    Ok(())
}
