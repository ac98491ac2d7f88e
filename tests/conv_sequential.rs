//! `sequential!` following channels through convolutions, pools and batch norms: the
//! passing twins of tests/ui/sequential-channel-mismatch.rs and the other conv cases.

use nn::layers::{AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, MaxPool2d};
use nn::{sequential, Flatten, Forward, Linear, ModuleExt, ReLU, Result, Tensor};

#[test]
fn channels_follow_through_the_chain() -> Result<()> {
    // twin of ui/sequential-channel-mismatch.rs: the channels agree
    let net = sequential![
        Conv2d(3 => 16, 3, padding = 1, bias = false),
        BatchNorm2d(_),
        ReLU,
        MaxPool2d::new(2),
        Conv2d(_ => 32, 3, stride = 2, padding = same_as_kernel(3)),
        BatchNorm2d(32),
        Conv2d(32 => 8, [1, 3], dilation = [1, 2], groups = 4),
        AdaptiveAvgPool2d::new([1, 1]),
        Flatten::new(),
        Linear(_ => 10),
    ];
    assert_eq!(net.0.weight.shape(), Some(vec![16, 3, 3, 3]));
    assert!(net.0.bias.is_none());
    assert_eq!(net.1.num_features(), Some(16));
    assert_eq!(net.4.in_channels(), Some(16));
    assert_eq!(net.6.weight.shape(), Some(vec![8, 8, 1, 3]));
    // Flatten makes the size unknown: the Linear is lazy
    assert_eq!(net.9.in_features(), None);
    let y = net.forward(&Tensor::rand(&[2, 3, 32, 32]))?;
    assert_eq!(y.shape(), &[2, 10]);
    assert_eq!(net.9.in_features(), Some(8));
    let old = sequential![Conv2d::new(3, 16, 3).padding(1), Conv2d::new(16, 4, 1)];
    assert_eq!(
        old.forward(&Tensor::rand(&[1, 3, 8, 8]))?.shape(),
        &[1, 4, 8, 8]
    );
    let bn = sequential![Conv2d(1 => 8, 3), BatchNorm2d(8)];
    assert_eq!(
        bn.forward(&Tensor::rand(&[2, 1, 8, 8]))?.shape(),
        &[2, 8, 6, 6]
    );
    Ok(())
}

fn same_as_kernel(k: usize) -> usize {
    k / 2
}

#[test]
fn unknown_channels_make_lazy_layers() -> Result<()> {
    let net = sequential![
        Conv2d(_ => 8, 3, padding = same),
        BatchNorm2d(_),
        ReLU,
        block(),
        BatchNorm2d(_),
        Conv1d::lazy(2, 1),
    ];
    assert_eq!(net.0.in_channels(), None);
    // the output channels of a lazy convolution are known
    assert_eq!(net.1.num_features(), Some(8));
    assert!(net.repr().contains("padding=same"));
    // after a value of unknown size, the batch norm is lazy
    assert_eq!(net.4.num_features(), None);
    let y = net
        .3
        .forward(&net.0.forward(&Tensor::rand(&[2, 5, 6, 6]))?)?;
    assert_eq!(y.shape(), &[2, 3, 6, 6]);
    assert_eq!(net.0.in_channels(), Some(5));
    assert_eq!(net.4.forward(&y)?.shape(), &[2, 3, 6, 6]);
    assert_eq!(net.4.num_features(), Some(3));
    // twin of ui/sequential-batchnorm-extra-argument.rs, and BatchNorm1d after a Linear
    let mlp = sequential![Linear(4 => 6), BatchNorm1d(_), ReLU, BatchNorm2d::new(3).eps(1e-3)];
    assert_eq!(mlp.1.num_features(), Some(6));
    Ok(())
}

fn block() -> Conv2d {
    Conv2d::lazy(3, 1)
}

#[test]
fn a_layer_error_inside_names_its_position() {
    let net = sequential![Conv2d(3 => 4, 3), MaxPool2d::new(5)];
    let e = net
        .forward(&Tensor::rand(&[1, 3, 6, 6]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("1 (MaxPool2d(kernel_size=5"), "{e}");
    assert!(e.contains("larger than the padded input [4, 4]"), "{e}");
}
