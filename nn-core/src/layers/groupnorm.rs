//! `GroupNorm`: normalization over groups of channels, per sample (PyTorch's).
//!
//! Shapes: x `[n, c, *]`, y like x; `c` split into `g` groups of `c / g` channels.
//! For each sample and group, over its m = (c / g) * (spatial size) values:
//!
//! ```text
//! mean = sum(x) / m,   var = sum((x - mean)^2) / m
//! y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]
//! ```
//!
//! The same in training and evaluation (no running statistics); the gradient is
//! autograd's through mean and var.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::GroupNorm, Forward, Tensor};
//! let gn = GroupNorm::new(2, 6);
//! assert_eq!(gn.forward(&Tensor::randn(&[3, 6, 4, 4]))?.shape(), &[3, 6, 4, 4]);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::init::Init;
use crate::module::{python_bool, python_float};
use crate::module::{Forward, Module, Param, Visitor, VisitorMut};
use crate::{Error, Result, Tensor};

/// Group normalization (PyTorch's `nn.GroupNorm`).
#[derive(Debug, Clone)]
pub struct GroupNorm {
    /// Scale `[c]` (absent without affine).
    pub weight: Option<Param>,
    /// Shift `[c]` (absent without affine).
    pub bias: Option<Param>,
    num_groups: usize,
    num_channels: usize,
    eps: f64,
}

impl GroupNorm {
    /// `num_channels` in `num_groups` groups, eps 1e-5, affine (PyTorch's defaults).
    /// A group count that does not divide the channels is reported by the first forward.
    pub fn new(num_groups: usize, num_channels: usize) -> GroupNorm {
        let param = |init: Init, name: &str| {
            let p = Param::init(&[num_channels], init.clone())
                .unwrap_or_else(|_| Param::deferred(&[Some(num_channels)], init));
            p.set_name(name);
            p
        };
        GroupNorm {
            weight: Some(param(Init::Ones, "weight")),
            bias: Some(param(Init::Zeros, "bias")),
            num_groups,
            num_channels,
            eps: 1e-5,
        }
    }

    /// Sets `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Without `weight` and `bias`.
    pub fn no_affine(mut self) -> Self {
        self.weight = None;
        self.bias = None;
        self
    }

    fn layer_name(&self) -> String {
        let desc = format!("GroupNorm({})", self.extra_repr());
        let owner = self
            .weight
            .as_ref()
            .map(|w| w.name())
            .and_then(|n| n.strip_suffix(".weight").map(str::to_string));
        match owner {
            Some(o) if !o.is_empty() => format!("{o} ({desc})"),
            _ => desc,
        }
    }
}

impl Module for GroupNorm {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        if let Some(w) = &self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        if let Some(w) = &mut self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
    }
    fn module_name(&self) -> String {
        "GroupNorm".into()
    }
    fn extra_repr(&self) -> String {
        format!(
            "{}, {}, eps={}, affine={}, bias={}",
            self.num_groups,
            self.num_channels,
            python_float(self.eps),
            python_bool(self.weight.is_some()),
            python_bool(self.bias.is_some())
        )
    }
}

impl Forward for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (g, c) = (self.num_groups, self.num_channels);
        if g == 0 || c % g != 0 {
            return Err(Error::InLayer {
                layer: self.layer_name(),
                source: Box::new(Error::invalid_config(
                    "group_norm",
                    "num_groups",
                    g,
                    format!("must divide num_channels ({c})"),
                )),
            });
        }
        if x.rank() < 2 || x.shape()[1] != c {
            return Err(Error::InputMismatch {
                layer: self.layer_name(),
                expected: format!("at least 2 dims with {c} channels (dim 1)"),
                actual: x.shape().to_vec(),
            });
        }
        let n = x.shape()[0];
        let per = x.numel() / (n * g).max(1);
        let grouped = x.reshape(&[n, g, per])?;
        let inv = 1.0 / per.max(1) as f32;
        let mean = grouped.sum_axes_keepdim(&[2])?.mul_scalar(inv)?;
        let xc = grouped.sub(&mean)?;
        let var = xc.square()?.sum_axes_keepdim(&[2])?.mul_scalar(inv)?;
        let y = xc
            .mul(&var.add_scalar(self.eps as f32)?.powf(-0.5)?)?
            .reshape(x.shape())?;
        let mut bshape = vec![1; x.rank()];
        bshape[1] = c;
        super::batchnorm::channel_affine(y, self.weight.as_ref(), self.bias.as_ref(), &bshape)
    }
}

#[cfg(test)]
mod tests {
    use super::GroupNorm;
    use crate::module::{Forward, ModuleExt};
    use crate::ops::testing::check_grad;
    use crate::{Result, Tensor};

    #[test]
    fn hand_derived_and_errors() -> Result<()> {
        // one group of [1, 3]: mean 2, var 1 -> [-1, 1] (eps 0)
        let gn = GroupNorm::new(1, 2).eps(0.0);
        let y = gn.forward(&Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2])?)?;
        assert_eq!(y.to_vec::<f32>()?, vec![-1.0, 1.0]);
        assert_eq!(
            gn.repr(),
            "GroupNorm(1, 2, eps=0.0, affine=True, bias=True)"
        );
        assert!(GroupNorm::new(4, 6)
            .forward(&Tensor::zeros(&[1, 6, 2]))
            .is_err());
        let e = GroupNorm::new(2, 6)
            .forward(&Tensor::zeros(&[1, 4, 2]))
            .err();
        assert!(e.is_some_and(|e| e.to_string().contains("6 channels")));
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        let gn = GroupNorm::new(2, 4);
        check_grad(&[&[2, 4, 3]], |t| gn.forward(&t[0]))
    }
}
