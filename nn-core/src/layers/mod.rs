//! Built-in layers. Each file opens with its math and shapes.

mod activation;
mod attention;
mod batchnorm;
mod conv;
mod dropout;
mod dyn_sequential;
mod embedding;
mod flatten;
#[cfg(test)]
pub(crate) mod grad_check;
mod groupnorm;
mod layer_norm;
mod lazy;
mod linear;
mod loss;
mod pool;
mod rms_norm;
#[cfg(test)]
mod sequence_layer_input_errors;
mod sequential;
mod transformer;

pub use activation::{Identity, LeakyReLU, LogSoftmax, SiLU, Softmax, GELU};
pub use activation::{ReLU, Sigmoid, Tanh};
pub use attention::{causal_mask, AttnMasks, MultiheadAttention, NonDynamicallyQuantizableLinear};
pub use batchnorm::{BatchNorm, BatchNorm1d, BatchNorm2d};
pub use conv::{Conv, Conv1d, Conv2d, IntoDims, Padding};
pub use dropout::Dropout;
pub use dyn_sequential::DynSequential;
pub use embedding::Embedding;
pub use flatten::Flatten;
pub use groupnorm::GroupNorm;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use loss::{
    BceLoss, BceWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, HuberLoss, KlDivLoss,
    L1Loss, MseLoss, NllLoss, SmoothL1Loss,
};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use rms_norm::RMSNorm;
pub use sequential::Sequential;
pub use transformer::{
    Activation, EncoderLayerConfig, TransformerEncoder, TransformerEncoderLayer,
};

/// Implements `Module` for a layer without parameters or children.
#[macro_export]
#[doc(hidden)]
macro_rules! __leaf_module {
    ($t:ty, $name:expr) => {
        impl $crate::module::Module for $t {
            fn visit<'a>(&'a self, _v: &mut dyn $crate::module::Visitor<'a>) {}
            fn visit_mut(&mut self, _v: &mut dyn $crate::module::VisitorMut) {}
            fn module_name(&self) -> String {
                $name.into()
            }
        }
    };
}
