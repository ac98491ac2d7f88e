//! Loss functions (and attention) as functions of tensors, PyTorch's `torch.nn.functional`
//! losses and `scaled_dot_product_attention`
//! (import as `F`, as PyTorch code does). The same losses as layers with their options
//! in builders: [`crate::layers::CrossEntropyLoss`] and its siblings.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{functional as F, Reduction, Tensor};
//! let logits = Tensor::randn(&[4, 3]).with_requires_grad(true);
//! let y = Tensor::from_vec(vec![0i64, 2, 1, -100], &[4])?;
//! let loss = F::cross_entropy(&logits, &y, None, -100, Reduction::Mean, 0.1)?;
//! loss.backward()?;
//! # Ok::<(), nn::Error>(())
//! ```

pub use crate::ops::{
    binary_cross_entropy, binary_cross_entropy_with_logits, cosine_embedding_loss, cross_entropy,
    huber_loss, kl_div, l1_loss, mse_loss, nll_loss, scaled_dot_product_attention, smooth_l1_loss,
};
