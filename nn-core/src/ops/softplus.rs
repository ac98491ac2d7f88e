//! `softplus(x) = ln(1 + e^x)`, computed stably as `max(x, 0) + ln(1 + e^-|x|)`.
//!
//! Derivative: `e^x / (1 + e^x) = sigmoid(x)`.
//! NOTE: the stable form's pieces (`max`, `|x|`) have kinks at 0 whose one-sided
//! derivatives do not add up to sigmoid(0) = 1/2 there, so the backward is its own
//! (sigmoid of the input), not the composite's.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::Tensor;
//! let x = Tensor::from_vec(vec![0.0f32, 100.0, -100.0], &[3])?;
//! let y = x.softplus()?.to_vec::<f32>()?;
//! assert!((y[0] - 2f32.ln()).abs() < 1e-6 && y[1] == 100.0 && y[2] < 1e-30);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::autograd::{backward_fn, record};
use crate::{no_grad, Result, Tensor};

impl Tensor {
    /// `ln(1 + e^self)` elementwise, without overflow (PyTorch's `F.softplus` with
    /// `beta = 1`; its `threshold = 20` shortcut gives the same f32 values).
    pub fn softplus(&self) -> Result<Tensor> {
        let y = no_grad(|| {
            let x = self.detach();
            x.relu()?
                .add(&x.abs()?.neg()?.exp()?.add_scalar(1.0)?.log()?)
        })?;
        Ok(record(
            y.storage().clone(),
            self.shape_dims(),
            &[self],
            "softplus",
            || backward_fn(|inp, g| Ok(vec![Some(g.mul(&inp[0].sigmoid()?)?)])),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use crate::{Result, Tensor};

    #[test]
    fn grads_finite_difference() -> Result<()> {
        check_grad(&[&[3, 4]], |x| x[0].softplus())?;
        Ok(())
    }

    #[test]
    fn hand_derived_at_the_kink() -> Result<()> {
        // softplus(0) = ln 2, softplus'(0) = sigmoid(0) = 1/2
        let x = Tensor::zeros(&[1]).with_requires_grad(true);
        let y = x.softplus()?;
        assert!((y.item()? - 2f32.ln()).abs() < 1e-7);
        y.sum()?.backward()?;
        assert_eq!(x.grad().map(|g| g.item()).transpose()?, Some(0.5));
        Ok(())
    }
}
