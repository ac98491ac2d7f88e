//! examples/07_convnet.rs's logic, small: the narrow ResNet-18 loads PyTorch's weights
//! strictly and matches PyTorch's eval output, one SGD step lowers the loss on its batch,
//! and the full model has torchvision's parameter count.

#[allow(dead_code)]
#[path = "../examples/07_convnet.rs"]
mod convnet;

use convnet::resnet::ResNet;
use nn::optim::Sgd;
use nn::{io, ModuleExt, Result, Tensor};

#[test]
fn narrow_model_loads_pytorch_weights_and_trains_one_step() -> Result<()> {
    nn::manual_seed(7);
    let mut net = ResNet::with_widths([4, 8, 16, 32], 10);
    let sd = io::load_safetensors(convnet::narrow_fixture())?;
    let diff = convnet::load_and_compare(&mut net, &sd, "sd")?;
    assert!(diff.is_some_and(|d| d < 1e-4), "{diff:?}");

    let x = Tensor::randn(&[4, 3, 32, 32]);
    let targets = Tensor::from_vec(vec![1i64, 4, 7, 9], &[4])?;
    let w0 = net.fc.weight.data()?.to_vec::<f32>()?;
    let mut opt = Sgd::with_lr(net.parameters(), 0.01)?;
    let first = convnet::train_step(&net, &mut opt, &x, &targets)?;
    assert!(first.is_finite());
    assert_ne!(
        net.fc.weight.data()?.to_vec::<f32>()?,
        w0,
        "SGD left fc.weight as it was"
    );
    let second = convnet::train_step(&net, &mut opt, &x, &targets)?;
    assert!(second < first, "loss {first} -> {second}");
    Ok(())
}

#[test]
fn full_resnet18_has_torchvisions_parameter_count() {
    // sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters())
    assert_eq!(ResNet::resnet18(10).num_parameters(), 11_181_642);
}
