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
    // the adaptive pool fixes the spatial size: Flatten gives 8 x 1 x 1 features
    assert_eq!(net.9.in_features(), Some(8));
    let y = net.forward(&Tensor::rand(&[2, 3, 32, 32]))?;
    assert_eq!(y.shape(), &[2, 10]);
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

#[test]
fn a_declared_input_shape_sizes_the_linear_after_flatten() -> Result<()> {
    // twin of ui/sequential-flatten-size-mismatch.rs: 4 x 3 x 3 = 36 features
    let net = sequential![
        input = [1, 8, 8];
        Conv2d(1 => 4, 3),
        ReLU,
        MaxPool2d::new(2),
        Flatten::new(),
        Linear(36 => 10),
    ];
    assert_eq!(net.forward(&Tensor::rand(&[2, 1, 8, 8]))?.shape(), &[2, 10]);
    // PyTorch's `inplace` flag changes only the print; sizes flow through it
    let net = sequential![
        input = [1, 8, 8];
        Conv2d(1 => 4, 3),
        ReLU.inplace(true),
        MaxPool2d::new(2),
        Flatten::new(),
        Linear(_ => 10),
    ];
    assert_eq!(net.4.in_features(), Some(36));
    assert!(net.repr().contains("(1): ReLU(inplace=True)"));
    let old = sequential![
        input = [3, 7, 7];
        Conv2d::new(3, 2, 3).stride(2),
        Flatten::new(),
        Linear::new(18, 10),
    ];
    assert_eq!(old.forward(&Tensor::rand(&[2, 3, 7, 7]))?.shape(), &[2, 10]);
    // `_` is filled (not lazy) through strides, padding, dilation, pools and `same`
    let net = sequential![
        input = [3, 32, 31];
        Conv2d(3 => 8, 3, stride = 2, padding = 1),  // 16 x 16
        BatchNorm2d(_),
        MaxPool2d::new(3).stride(2).padding(1),      // 8 x 8
        Conv2d(_ => 6, [3, 1], dilation = [2, 1]),   // 4 x 8
        Conv2d(_ => 6, 3, padding = same),           // 4 x 8
        MaxPool2d::new(3).stride(2).ceil_mode(true), // 2 x 4
        Flatten::new(),
        Linear(_ => 5),
    ];
    assert_eq!(net.7.in_features(), Some(6 * 2 * 4));
    assert_eq!(
        net.forward(&Tensor::rand(&[2, 3, 32, 31]))?.shape(),
        &[2, 5]
    );
    // 1-d: [channels, length]; an adaptive pool fixes the spatial size on its own
    let net = sequential![
        input = [2, 20];
        Conv1d(2 => 4, 5, stride = 3), // 6
        Flatten::new(),
        Linear(_ => 3),
    ];
    assert_eq!(net.2.in_features(), Some(24));
    assert_eq!(net.forward(&Tensor::rand(&[2, 2, 20]))?.shape(), &[2, 3]);
    let net = sequential![Conv2d(3 => 8, 3), AdaptiveAvgPool2d::new([2, 1]), Flatten::new(), Linear(_ => 4)];
    assert_eq!(net.3.in_features(), Some(16));
    // a non-literal hyper-parameter leaves the size to the first forward
    let s = 2;
    let net = sequential![input = [1, 8, 8]; Conv2d(1 => 4, 3, stride = s), Flatten::new(), Linear(_ => 2)];
    assert_eq!(net.2.in_features(), None);
    assert_eq!(net.forward(&Tensor::rand(&[2, 1, 8, 8]))?.shape(), &[2, 2]);
    // features declared for a Linear first
    let mlp = sequential![input = [20]; Linear(_ => 4)];
    assert_eq!(mlp.0.in_features(), Some(20));
    Ok(())
}
