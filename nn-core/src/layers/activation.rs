//! Parameter-free activation layers: `ReLU` (max(x, 0)), `Sigmoid` (1/(1+e^-x)),
//! `Tanh`. Any shape in, the same shape out.

use crate::module::Forward;
use crate::{Result, Tensor};

/// `max(x, 0)` elementwise.
///
/// ```
/// use nn_core::{layers::ReLU, module::Forward, Tensor};
/// let y = ReLU.forward(&Tensor::from_vec(vec![-1.0f32, 2.0], &[2])?)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![0.0, 2.0]);
/// # Ok::<(), nn_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ReLU;

/// The logistic function elementwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

/// Hyperbolic tangent elementwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tanh;

crate::__leaf_module!(ReLU, "ReLU");
crate::__leaf_module!(Sigmoid, "Sigmoid");
crate::__leaf_module!(Tanh, "Tanh");

impl Forward for ReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu()
    }
}
impl Forward for Sigmoid {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.sigmoid()
    }
}
impl Forward for Tanh {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.tanh()
    }
}
