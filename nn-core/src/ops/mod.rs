//! Tensor ops: one family per file, each with its forward, its backward and its tests.
//!
//! Primitives call the backend; composites (sub via add/neg is NOT used: every
//! primitive here maps to one backend call) such as `mean`, `softmax`, `mse` and
//! `cross_entropy` are written with primitives and need no backward of their own.

mod activations;
mod attention;
mod batch_norm;
mod binary;
mod clamp;
mod conv;
mod im2col;
mod indexing;
mod layer_norm;
mod linear;
mod logical;
mod loss;
mod loss_binary;
mod loss_class;
mod loss_regression;
#[cfg(test)]
mod loss_tests;
mod masking;
mod matmul;
mod operators;
mod pool;
mod reduce;
mod reduction;
mod shape_ops;
#[cfg(test)]
mod size_checks;
mod softmax;
mod softplus;
mod unary;
pub use attention::scaled_dot_product_attention;
pub(crate) use attention::{packed_self_attention, packed_self_attention_train};
pub(crate) use batch_norm::BatchNormArgs;
pub use conv::Conv2dOptions;
pub use loss_binary::{binary_cross_entropy, binary_cross_entropy_with_logits};
pub use loss_class::{cross_entropy, nll_loss};
pub use loss_regression::{
    cosine_embedding_loss, huber_loss, kl_div, l1_loss, mse_loss, smooth_l1_loss,
};
pub use pool::Pool2dOptions;
pub use reduction::Reduction;

#[cfg(test)]
pub(crate) mod testing;

use crate::{Error, Result, Tensor};

/// Fails with a device-mismatch error naming `op` when `a` and `b` live apart.
pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    let (da, db) = (a.device(), b.device());
    if da != db {
        return Err(Error::DeviceMismatch {
            op,
            lhs: da.to_string(),
            rhs: db.to_string(),
        });
    }
    Ok(())
}

impl Tensor {
    /// Sums `self` down to `shape` (the adjoint of broadcasting `shape` up to `self`).
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self
            .rank()
            .checked_sub(shape.len())
            .ok_or_else(|| Error::mismatch("sum_to", self.shape(), shape))?;
        let mut axes: Vec<usize> = (0..lead).collect();
        for (i, &d) in shape.iter().enumerate() {
            if d == 1 && self.shape()[lead + i] != 1 {
                axes.push(lead + i);
            } else if d != self.shape()[lead + i] {
                return Err(Error::mismatch("sum_to", self.shape(), shape));
            }
        }
        let s = self.sum_axes_keepdim(&axes)?;
        s.reshape(shape)
    }
}
