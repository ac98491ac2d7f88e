//! Built-in layers. Each file opens with its math and shapes.

mod activation;
mod batchnorm;
mod conv;
mod dropout;
mod dyn_sequential;
mod flatten;
mod groupnorm;
mod linear;
mod pool;
mod sequential;

pub use activation::{ReLU, Sigmoid, Tanh};
pub use batchnorm::{BatchNorm, BatchNorm1d, BatchNorm2d};
pub use conv::{Conv, Conv1d, Conv2d, IntoDims, Padding};
pub use dropout::Dropout;
pub use dyn_sequential::DynSequential;
pub use flatten::Flatten;
pub use groupnorm::GroupNorm;
pub use linear::Linear;
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use sequential::Sequential;

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
