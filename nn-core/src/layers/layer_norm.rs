//! `LayerNorm`: normalization over the trailing dims of each sample.
//!
//! With `normalized_shape` the last k dims of x and mu, var the mean and the biased
//! variance over them: y = (x - mu) / sqrt(var + eps) * gamma + beta, gamma (ones) and
//! beta (zeros) of shape `normalized_shape` when `elementwise_affine`. Any `[*, ...shape]`
//! in, the same shape out. It runs [`Tensor::layer_norm`]: one fused op forward and
//! backward where the backend has one, the primitives' composite elsewhere.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::LayerNorm, module::Forward, Tensor};
//! let ln = LayerNorm::new(&[4])?;
//! let y = ln.forward(&Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 4])?)?;
//! assert!(y.mean()?.item()?.abs() < 1e-6);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::init::Init;
use crate::module::{
    python_bool, python_float, python_tuple, Forward, Module, Param, Visitor, VisitorMut,
};
use crate::{Error, Result, Tensor};

/// Layer normalization over the last `normalized_shape.len()` dims.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// gamma, `normalized_shape`, ones (absent without `elementwise_affine`).
    pub weight: Option<Param>,
    /// beta, `normalized_shape`, zeros (absent without `elementwise_affine`).
    pub bias: Option<Param>,
    normalized_shape: Vec<usize>,
    eps: f64,
}

/// The dims to normalize over (the last `shape.len()`), after checking the input ends
/// with `shape`.
pub(crate) fn trailing_axes(
    layer: impl FnOnce() -> String,
    x: &Tensor,
    shape: &[usize],
) -> Result<Vec<usize>> {
    let r = x.rank();
    if r < shape.len() || x.shape()[r - shape.len()..] != *shape {
        return Err(Error::InputMismatch {
            layer: layer(),
            expected: format!("trailing dims {shape:?}"),
            actual: x.shape().to_vec(),
        });
    }
    Ok((r - shape.len()..r).collect())
}

/// `norm1 (LayerNorm((64,), ...))`: a layer's path, learned by `p`, and its description.
pub(crate) fn named(p: Option<&Param>, desc: String) -> String {
    match p.map(|p| p.name()) {
        Some(n) => match n.strip_suffix(".weight") {
            Some(owner) if !owner.is_empty() => format!("{owner} ({desc})"),
            _ => desc,
        },
        None => desc,
    }
}

impl LayerNorm {
    /// Over the trailing dims `normalized_shape`, eps 1e-5, with gamma and beta.
    pub fn new(normalized_shape: &[usize]) -> Result<LayerNorm> {
        LayerNorm::with_options(normalized_shape, 1e-5, true)
    }

    /// With every option of PyTorch's constructor (`bias` follows `elementwise_affine`).
    pub fn with_options(
        normalized_shape: &[usize],
        eps: f64,
        elementwise_affine: bool,
    ) -> Result<LayerNorm> {
        if eps.is_nan() || eps < 0.0 {
            return Err(Error::invalid_config(
                "LayerNorm",
                "eps",
                eps,
                "must be >= 0",
            ));
        }
        let (weight, bias) = if elementwise_affine {
            let w = Param::init(normalized_shape, Init::Ones)?;
            let b = Param::init(normalized_shape, Init::Zeros)?;
            w.set_name("weight");
            b.set_name("bias");
            (Some(w), Some(b))
        } else {
            (None, None)
        };
        Ok(LayerNorm {
            weight,
            bias,
            normalized_shape: normalized_shape.to_vec(),
            eps,
        })
    }

    /// The trailing dims normalized over.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }
    /// The value added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    fn layer_name(&self) -> String {
        named(
            self.weight.as_ref(),
            format!("LayerNorm({})", self.extra_repr()),
        )
    }
}

impl Module for LayerNorm {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        if let (Some(w), Some(b)) = (&self.weight, &self.bias) {
            v.param("weight", w);
            v.param("bias", b);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        if let (Some(w), Some(b)) = (&mut self.weight, &mut self.bias) {
            v.param("weight", w);
            v.param("bias", b);
        }
    }
    fn module_name(&self) -> String {
        "LayerNorm".into()
    }
    fn extra_repr(&self) -> String {
        format!(
            "{}, eps={}, elementwise_affine={}, bias={}",
            python_tuple(&self.normalized_shape),
            python_float(self.eps),
            python_bool(self.weight.is_some()),
            python_bool(self.bias.is_some())
        )
    }
}

impl Forward for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        trailing_axes(|| self.layer_name(), x, &self.normalized_shape)?;
        let (w, b) = match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => (Some(w.tensor()?), Some(b.tensor()?)),
            _ => (None, None),
        };
        x.layer_norm(&self.normalized_shape, w.as_ref(), b.as_ref(), self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_grad;

    #[test]
    fn finite_difference_and_hand_derived() -> Result<()> {
        let ln = LayerNorm::new(&[5])?;
        if let (Some(w), Some(b)) = (&ln.weight, &ln.bias) {
            w.set_data(&Tensor::randn(&[5]))?;
            b.set_data(&Tensor::randn(&[5]))?;
        }
        check_grad(&[&[3, 5]], |x| ln.forward(&x[0]))?;
        let x = Tensor::randn(&[3, 5]);
        crate::layers::grad_check::check_param_grads(&ln, 5, || ln.forward(&x))?;
        check_grad(&[&[2, 2, 3]], |x| {
            LayerNorm::with_options(&[2, 3], 1e-5, false)?.forward(&x[0])
        })?;
        // x = [1, 3]: mu = 2, var = 1, y = [-1, 1] / sqrt(1 + eps)
        let y = LayerNorm::with_options(&[2], 0.0, false)?
            .forward(&Tensor::from_vec(vec![1.0f32, 3.0], &[2])?)?;
        assert_eq!(y.to_vec::<f32>()?, vec![-1.0, 1.0]);
        Ok(())
    }

    #[test]
    fn prints_and_fails_as_expected() -> Result<()> {
        let ln = LayerNorm::new(&[64])?;
        assert_eq!(
            crate::module::repr(&ln),
            "LayerNorm((64,), eps=1e-05, elementwise_affine=True, bias=True)"
        );
        let e = ln
            .forward(&Tensor::zeros(&[2, 63]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("LayerNorm((64,), eps=1e-05, elementwise_affine=True, bias=True): expected input with trailing dims [64], got shape [2, 63]")
        );
        Ok(())
    }
}
