//! ResNet-18 as torchvision writes it (`torchvision/models/resnet.py`), with
//! `#[derive(Module)]`: the field names are PyTorch's attribute names, so a state dict
//! exported by PyTorch loads with no renaming (`layer2.0.downsample.1.running_var`).
//! Shared by examples/07_convnet.rs, benches/bench_convnet.rs and tests/resnet.rs.

use nn::layers::{AdaptiveAvgPool2d, BatchNorm2d, Conv2d, MaxPool2d};
use nn::{Forward, Linear, Module, ReLU, Result, Sequential, Tensor};

/// torchvision's `BasicBlock`: two 3x3 convolutions and a shortcut.
#[derive(Module)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub relu: ReLU,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    /// A 1x1 strided convolution and a batch norm where the shape changes.
    pub downsample: Option<Sequential<(Conv2d, BatchNorm2d)>>,
}

impl BasicBlock {
    pub fn new(inplanes: usize, planes: usize, stride: usize) -> BasicBlock {
        let downsample = (stride != 1 || inplanes != planes).then(|| {
            Sequential::new((
                Conv2d::new(inplanes, planes, 1).stride(stride).no_bias(),
                BatchNorm2d::new(planes),
            ))
        });
        BasicBlock {
            conv1: Conv2d::new(inplanes, planes, 3)
                .stride(stride)
                .padding(1)
                .no_bias(),
            bn1: BatchNorm2d::new(planes),
            relu: ReLU.inplace(true), // torchvision's nn.ReLU(inplace=True): print only
            conv2: Conv2d::new(planes, planes, 3).padding(1).no_bias(),
            bn2: BatchNorm2d::new(planes),
            downsample,
        }
    }
}

impl Forward for BasicBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // `bn.forward_relu(x)` is `relu(bn(x))`, one pass in eval mode under no_grad
        let out = self.bn1.forward_relu(&self.conv1.forward(x)?)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        self.bn2
            .forward_add_relu(&self.conv2.forward(&out)?, &identity)
    }
}

/// Two blocks, the first one changing width and stride (`_make_layer` with 2 blocks).
pub type Stage = Sequential<(BasicBlock, BasicBlock)>;

fn stage(inplanes: usize, planes: usize, stride: usize) -> Stage {
    Sequential::new((
        BasicBlock::new(inplanes, planes, stride),
        BasicBlock::new(planes, planes, 1),
    ))
}

/// torchvision's `ResNet` with `BasicBlock` and `[2, 2, 2, 2]` blocks: ResNet-18.
#[derive(Module)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub relu: ReLU,
    pub maxpool: MaxPool2d,
    pub layer1: Stage,
    pub layer2: Stage,
    pub layer3: Stage,
    pub layer4: Stage,
    pub avgpool: AdaptiveAvgPool2d,
    pub fc: Linear,
}

impl ResNet {
    /// `torchvision.models.resnet18(num_classes=...)`.
    pub fn resnet18(num_classes: usize) -> ResNet {
        ResNet::with_widths([64, 128, 256, 512], num_classes)
    }

    /// The same network with other stage widths (the narrow test model).
    pub fn with_widths(w: [usize; 4], num_classes: usize) -> ResNet {
        ResNet {
            conv1: Conv2d::new(3, w[0], 7).stride(2).padding(3).no_bias(),
            bn1: BatchNorm2d::new(w[0]),
            relu: ReLU.inplace(true), // torchvision's nn.ReLU(inplace=True): print only
            maxpool: MaxPool2d::new(3).stride(2).padding(1),
            layer1: stage(w[0], w[0], 1),
            layer2: stage(w[0], w[1], 2),
            layer3: stage(w[1], w[2], 2),
            layer4: stage(w[2], w[3], 2),
            avgpool: AdaptiveAvgPool2d::new([1, 1]),
            fc: Linear::new(w[3], num_classes),
        }
    }
}

impl Forward for ResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward(x)?;
        let x = self.maxpool.forward(&self.bn1.forward_relu(&x)?)?;
        let x = self.layer1.forward(&x)?;
        let x = self.layer2.forward(&x)?;
        let x = self.layer3.forward(&x)?;
        let x = self.layer4.forward(&x)?;
        let x = self.avgpool.forward(&x)?.flatten_from(1)?;
        self.fc.forward(&x)
    }
}
