//! The digits classifier: an MLP 64 -> 128 -> 64 -> 10 with ReLU, its input size
//! inferred at the first forward (or from a loaded state dict).

use crate::module::{Visitor, VisitorMut};
use crate::{Forward, Linear, Module, ReLU, Result, Sequential, Tensor};

/// The layers of [`Mlp`], in order.
pub type MlpLayers = Sequential<(Linear, ReLU, Linear, ReLU, Linear)>;

/// A multilayer perceptron for 8x8 digits: `Linear(_ => 128), ReLU, Linear(128 => 64),
/// ReLU, Linear(64 => 10)`; parameters are named `layers.0.weight`, `layers.0.bias`,
/// `layers.2.weight`, ... (PyTorch's names for the same model).
#[derive(Debug, Clone)]
pub struct Mlp {
    /// The chain of layers.
    pub layers: MlpLayers,
}

impl Mlp {
    /// A fresh model (weights drawn from the generator seeded by [`crate::manual_seed`]).
    pub fn new(hidden: usize, classes: usize) -> Mlp {
        Mlp {
            layers: Sequential::new((
                Linear::lazy(hidden),
                ReLU,
                Linear::new(hidden, hidden / 2),
                ReLU,
                Linear::new(hidden / 2, classes),
            )),
        }
    }
}

impl Module for Mlp {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        self.layers.register("layers", v);
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        self.layers.register_mut("layers", v);
    }
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.forward(x)
    }
}
