//! The digits classifier: an MLP 64 -> 128 -> 64 -> 10 with ReLU, its input size
//! inferred at the first forward (or from a loaded state dict).

use nn::{sequential, Forward, Linear, Module, ReLU, Result, Sequential, Tensor};

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
