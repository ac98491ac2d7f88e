//! `clamp`, `clamp_min`, `clamp_max`: `min(max(x, lo), hi)` elementwise.
//!
//! Derivative: 1 strictly inside the bounds, 0 outside them AND at them: PyTorch 2.15's
//! `ClampBackward` passes the gradient where `lo < x < hi` (checked against the pinned
//! torch; `x.clamp(0, 1)` at `x = 0` and `x = 1` gets gradient 0), so one bound alone
//! (`clamp_min`) passes it where `x > lo`. With `lo > hi` every output is `hi` and every
//! gradient 0. NaN stays NaN, with gradient 0.
//!
//! NOTE: written as two `where`s, which would route the gradient through `x` at the
//! bounds (the `where` picks `x` there); the backward is therefore its own, a mask of
//! the open interval.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::Tensor;
//! let x = Tensor::from_vec(vec![-1.0f32, 0.5, 2.0], &[3])?.with_requires_grad(true);
//! let y = x.clamp(0.0, 1.0)?;
//! assert_eq!(y.to_vec::<f32>()?, vec![0.0, 0.5, 1.0]);
//! y.sum()?.backward()?;
//! assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![0.0, 1.0, 0.0]);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::autograd::{backward_fn, record};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Every element limited to `[min, max]`: `min(max(x, min), max)` (PyTorch's
    /// `clamp(min, max)`; `max` wins when `min > max`). NaN bounds are an error.
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        self.clamp_impl(Some(min), Some(max), "clamp")
    }

    /// Every element at least `min` (PyTorch's `clamp_min`, `clamp(min=min)`).
    pub fn clamp_min(&self, min: f32) -> Result<Tensor> {
        self.clamp_impl(Some(min), None, "clamp_min")
    }

    /// Every element at most `max` (PyTorch's `clamp_max`, `clamp(max=max)`).
    pub fn clamp_max(&self, max: f32) -> Result<Tensor> {
        self.clamp_impl(None, Some(max), "clamp_max")
    }

    fn clamp_impl(&self, lo: Option<f32>, hi: Option<f32>, name: &'static str) -> Result<Tensor> {
        for (field, b) in [("min", lo), ("max", hi)] {
            if b.is_some_and(f32::is_nan) {
                return Err(Error::invalid_config(
                    name,
                    field,
                    "NaN",
                    "a bound must be a number",
                ));
            }
        }
        if !matches!(self.dtype(), DType::F32 | DType::I64) {
            return Err(Error::DType {
                op: name,
                dtype: self.dtype(),
                expected: Some(DType::F32),
            });
        }
        let x = self.detach();
        let mut y = x.clone();
        // NaN compares false both ways, so it is kept
        if let Some(lo) = lo {
            y = Tensor::where_cond(&y.lt_scalar(lo)?, &x.scalar_of(lo)?, &y)?;
        }
        if let Some(hi) = hi {
            y = Tensor::where_cond(&y.gt_scalar(hi)?, &x.scalar_of(hi)?, &y)?;
        }
        if self.dtype() != DType::F32 {
            return Ok(y);
        }
        Ok(record(
            y.storage().clone(),
            self.shape_dims(),
            &[self],
            name,
            move || {
                backward_fn(move |inp, g| {
                    let x = &inp[0];
                    let mut inside = x.eq(x)?; // false at NaN
                    if let Some(lo) = lo {
                        inside = inside.logical_and(&x.gt_scalar(lo)?)?;
                    }
                    if let Some(hi) = hi {
                        inside = inside.logical_and(&x.lt_scalar(hi)?)?;
                    }
                    let zero = Tensor::zeros(&[]).to_device(&g.device())?;
                    Ok(vec![Some(Tensor::where_cond(&inside, g, &zero)?)])
                })
            },
        ))
    }

    /// `v` as a 0-d tensor of `self`'s dtype and device.
    fn scalar_of(&self, v: f32) -> Result<Tensor> {
        let s = match self.dtype() {
            DType::I64 => Tensor::from_vec(vec![v as i64], &[])?,
            _ => Tensor::scalar(v),
        };
        s.to_device(&self.device())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, fixture_case_in};
    use crate::{DType, Result, Tensor};

    #[test]
    fn grads_finite_difference() -> Result<()> {
        // check_grad draws |x| in [0.1, 1.5): bounds inside that range cut both ways
        // (none of its draws lies within the finite difference's step of a bound)
        check_grad(&[&[3, 4]], |x| x[0].clamp(-0.45, 0.7))?;
        check_grad(&[&[3, 4]], |x| x[0].clamp_min(0.3))?;
        check_grad(&[&[3, 4]], |x| x[0].clamp_max(-0.3))?;
        Ok(())
    }

    #[test]
    fn hand_derived_bounds_nan_and_crossed_bounds() -> Result<()> {
        // d clamp(x, 0, 1)/dx = 1 on (0, 1) only: 0 at the bounds, as torch 2.15 gives
        let x = Tensor::from_vec(vec![-1.0f32, 0.0, 0.5, 1.0, 2.0, f32::NAN], &[6])?
            .with_requires_grad(true);
        let y = x.clamp(0.0, 1.0)?;
        let v = y.to_vec::<f32>()?;
        assert_eq!(&v[..5], &[0.0, 0.0, 0.5, 1.0, 1.0]);
        assert!(v[5].is_nan());
        y.sum()?.backward()?;
        let g = x.grad().map(|g| g.to_vec::<f32>()).transpose()?;
        assert_eq!(g, Some(vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0]));
        // min > max: every output is max
        let c = Tensor::from_vec(vec![-1.0f32, 0.5, 2.0], &[3])?.clamp(1.0, 0.0)?;
        assert_eq!(c.to_vec::<f32>()?, vec![0.0, 0.0, 0.0]);
        // integers stay integers
        let i = Tensor::arange(-2, 3).clamp(-1.0, 1.0)?;
        assert_eq!(i.dtype(), DType::I64);
        assert_eq!(i.to_vec::<i64>()?, vec![-1, -1, 0, 1, 1]);
        assert!(x.clamp(f32::NAN, 1.0).is_err());
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        let f = "trainops/ops.safetensors";
        fixture_case_in(f, "clamp", |x| x[0].clamp(-0.5, 0.5))?;
        fixture_case_in(f, "clamp_min", |x| x[0].clamp_min(0.0))?;
        fixture_case_in(f, "clamp_max", |x| x[0].clamp_max(0.0))?;
        fixture_case_in(f, "clamp_crossed", |x| x[0].clamp(0.5, -0.5))?;
        Ok(())
    }
}
