//! The digits classifiers: an MLP 64 -> 128 -> 64 -> 10 with ReLU (`--model mlp`, the
//! default) and a small CNN over the 1x8x8 images (`--model cnn`), their input sizes and
//! channels inferred at the first forward (or from a loaded state dict).

use nn::layers::{BatchNorm2d, Conv2d, MaxPool2d};
use nn::{sequential, Flatten, Forward, Linear, Module, ReLU, Result, Sequential, Tensor};
use std::fmt;

/// The layers of [`Mlp`], in order.
pub type MlpLayers = Sequential<(Linear, ReLU, Linear, ReLU, Linear)>;

/// A multilayer perceptron for 8x8 digits: `Linear(_ => 128), ReLU, Linear(128 => 64),
/// ReLU, Linear(64 => 10)`; parameters are named `layers.0.weight`, `layers.0.bias`,
/// `layers.2.weight`, ...
#[derive(Debug, Clone, Module)]
pub struct Mlp {
    /// The chain of layers.
    pub layers: MlpLayers,
}

impl Mlp {
    /// A fresh model (weights drawn from the generator seeded by [`nn::manual_seed`]).
    pub fn new() -> Mlp {
        Mlp {
            layers: sequential![
                Linear(_ => 128),
                ReLU,
                Linear(128 => 64),
                ReLU,
                Linear(64 => 10)
            ],
        }
    }
}

impl Default for Mlp {
    fn default() -> Self {
        Self::new()
    }
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.forward(x)
    }
}

/// The layers of [`Cnn`], in order.
pub type CnnLayers = Sequential<(
    Conv2d,
    BatchNorm2d,
    ReLU,
    Conv2d,
    BatchNorm2d,
    ReLU,
    MaxPool2d,
    Flatten,
    Linear,
    ReLU,
    Linear,
)>;

/// A small convolutional network for the digits as 1x8x8 images: two 3x3 convolutions
/// (16 and 32 channels, each with a batch norm and ReLU), a 2x2 max pool, then
/// `Linear(_ => 64), ReLU, Linear(64 => 10)`. The first convolution learns its input
/// channels at the first forward, `sequential!` fills each `BatchNorm2d(_)` and the
/// second convolution's input from the channels before them, and the first `Linear`,
/// after `Flatten`, is lazy.
#[derive(Debug, Clone, Module)]
pub struct Cnn {
    /// The chain of layers.
    pub layers: CnnLayers,
}

impl Cnn {
    /// A fresh model (weights drawn from the generator seeded by [`nn::manual_seed`]).
    pub fn new() -> Cnn {
        Cnn {
            layers: sequential![
                Conv2d(_ => 16, 3, padding = 1),
                BatchNorm2d(_),
                ReLU,
                Conv2d(_ => 32, 3, padding = 1),
                BatchNorm2d(_),
                ReLU,
                MaxPool2d::new(2),
                Flatten::new(),
                Linear(_ => 64),
                ReLU,
                Linear(64 => 10)
            ],
        }
    }
}

impl Default for Cnn {
    fn default() -> Self {
        Self::new()
    }
}

impl Forward for Cnn {
    /// `x` is `[n, 64]` (the flattened images, as the data set hands them out) or
    /// `[n, 1, 8, 8]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match x.rank() {
            2 => x.reshape(&[x.shape()[0], 1, 8, 8])?,
            _ => x.clone(),
        };
        self.layers.forward(&x)
    }
}

/// Which classifier the job trains (`--model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelKind {
    /// [`Mlp`].
    #[default]
    Mlp,
    /// [`Cnn`].
    Cnn,
}

impl std::str::FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ModelKind, String> {
        match s {
            "mlp" => Ok(ModelKind::Mlp),
            "cnn" => Ok(ModelKind::Cnn),
            _ => Err(format!("`{s}` is not a model (mlp or cnn)")),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        })
    }
}

/// One of the classifiers; its parameters are named as the model's own (`layers.0.weight`).
// one model per run: the size difference between the variants costs nothing
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Module)]
pub enum Net {
    /// The MLP.
    Mlp(Mlp),
    /// The CNN.
    Cnn(Cnn),
}

impl Net {
    /// A fresh model of `kind`.
    pub fn new(kind: ModelKind) -> Net {
        match kind {
            ModelKind::Mlp => Net::Mlp(Mlp::new()),
            ModelKind::Cnn => Net::Cnn(Cnn::new()),
        }
    }
}

impl Forward for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Net::Mlp(m) => m.forward(x),
            Net::Cnn(c) => c.forward(x),
        }
    }
}
