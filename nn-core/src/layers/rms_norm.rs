//! `RMSNorm`: y = x / sqrt(mean(x^2) + eps) * gamma over the trailing dims.
//!
//! The mean runs over the last `normalized_shape.len()` dims; gamma (ones) has shape
//! `normalized_shape` when `elementwise_affine`. `eps` None means f32's machine epsilon
//! (PyTorch's `torch.finfo(x.dtype).eps`). Backward: from the primitives.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::RMSNorm, module::Forward, Tensor};
//! let y = RMSNorm::new(&[2])?.forward(&Tensor::from_vec(vec![3.0f32, 4.0], &[1, 2])?)?;
//! // rms = sqrt((9 + 16) / 2)
//! assert!((y.to_vec::<f32>()?[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-5);
//! # Ok::<(), nn::Error>(())
//! ```

use super::layer_norm::{named, trailing_axes};
use crate::init::Init;
use crate::module::{python_bool, python_float, python_tuple};
use crate::module::{Forward, Module, Param, Visitor, VisitorMut};
use crate::{Error, Result, Tensor};

/// Root-mean-square normalization over the trailing dims.
#[derive(Debug, Clone)]
pub struct RMSNorm {
    /// gamma, `normalized_shape`, ones (absent without `elementwise_affine`).
    pub weight: Option<Param>,
    normalized_shape: Vec<usize>,
    eps: Option<f64>,
}

impl RMSNorm {
    /// Over `normalized_shape`, eps None (f32's epsilon), with gamma.
    pub fn new(normalized_shape: &[usize]) -> Result<RMSNorm> {
        RMSNorm::with_options(normalized_shape, None, true)
    }

    /// With every option of PyTorch's constructor.
    pub fn with_options(
        normalized_shape: &[usize],
        eps: Option<f64>,
        elementwise_affine: bool,
    ) -> Result<RMSNorm> {
        if let Some(e) = eps.filter(|e| e.is_nan() || *e < 0.0) {
            return Err(Error::invalid_config("RMSNorm", "eps", e, "must be >= 0"));
        }
        let weight = if elementwise_affine {
            let w = Param::init(normalized_shape, Init::Ones)?;
            w.set_name("weight");
            Some(w)
        } else {
            None
        };
        Ok(RMSNorm {
            weight,
            normalized_shape: normalized_shape.to_vec(),
            eps,
        })
    }
}

impl Module for RMSNorm {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        if let Some(w) = &self.weight {
            v.param("weight", w);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        if let Some(w) = &mut self.weight {
            v.param("weight", w);
        }
    }
    fn module_name(&self) -> String {
        "RMSNorm".into()
    }
    fn extra_repr(&self) -> String {
        format!(
            "{}, eps={}, elementwise_affine={}",
            python_tuple(&self.normalized_shape),
            self.eps.map_or("None".into(), python_float),
            python_bool(self.weight.is_some())
        )
    }
}

impl Forward for RMSNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let axes = trailing_axes(
            || {
                named(
                    self.weight.as_ref(),
                    format!("RMSNorm({})", self.extra_repr()),
                )
            },
            x,
            &self.normalized_shape,
        )?;
        let count = self.normalized_shape.iter().product::<usize>().max(1) as f32;
        let eps = self.eps.map_or(f32::EPSILON, |e| e as f32);
        let ms = x.square()?.sum_axes_keepdim(&axes)?.div_scalar(count)?;
        let y = x.div(&ms.add_scalar(eps)?.sqrt()?)?;
        match &self.weight {
            Some(w) => y.mul(&w.tensor()?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_grad;

    #[test]
    fn finite_difference_and_repr() -> Result<()> {
        check_grad(&[&[3, 4]], |x| {
            RMSNorm::with_options(&[4], Some(1e-6), false)?.forward(&x[0])
        })?;
        let rms = RMSNorm::new(&[2, 3])?;
        rms.weight
            .as_ref()
            .map(|w| w.set_data(&Tensor::randn(&[2, 3])))
            .transpose()?;
        check_grad(&[&[2, 2, 3]], |x| rms.forward(&x[0]))?;
        let x = Tensor::randn(&[2, 2, 3]);
        crate::layers::grad_check::check_param_grads(&rms, 6, || rms.forward(&x))?;
        assert_eq!(
            crate::module::repr(&RMSNorm::new(&[8])?),
            "RMSNorm((8,), eps=None, elementwise_affine=True)"
        );
        assert!(RMSNorm::new(&[8])?
            .forward(&Tensor::zeros(&[8, 2]))
            .is_err());
        Ok(())
    }
}
