//! `Linear`: y = x W^T + b.
//!
//! Shapes: x `[*, in]`, W `[out, in]` (PyTorch's layout), b `[out]`, y `[*, out]`.
//! Default init is PyTorch's: W ~ U(-1/sqrt(in), 1/sqrt(in)) (Kaiming uniform, a = sqrt 5),
//! b ~ U(-1/sqrt(in), 1/sqrt(in)). `Linear::lazy(out)` defers `in` to the first forward.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::Linear, module::Forward, Tensor};
//! let fc = Linear::new(20, 256);
//! let y = fc.forward(&Tensor::rand(&[2, 20]))?;
//! assert_eq!(y.shape(), &[2, 256]);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::init::{Fans, Init};
use crate::module::{Forward, FusedActivation, Module, Param, Visitor, VisitorMut};
use crate::{Error, Result, Tensor};

/// A fully connected layer.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Param,
    /// `[out_features]`, absent with [`Linear::no_bias`].
    pub bias: Option<Param>,
    out_features: usize,
}

fn param_or_deferred(shape: &[usize], init: Init, fans: Fans) -> Param {
    // built-in initializers cannot fail; should one ever, the parameter stays deferred
    // and reports itself on first use instead of panicking here
    Param::init_with_fans(shape, init.clone(), fans).unwrap_or_else(|_| {
        Param::deferred(&shape.iter().map(|&d| Some(d)).collect::<Vec<_>>(), init)
    })
}

impl Linear {
    /// `in_features -> out_features` with bias, PyTorch's default init.
    pub fn new(in_features: usize, out_features: usize) -> Linear {
        let fans = Fans {
            fan_in: in_features,
            fan_out: out_features,
        };
        let weight = param_or_deferred(&[out_features, in_features], Init::linear_default(), fans);
        let bias = Some(param_or_deferred(&[out_features], Init::FanInUniform, fans));
        Linear {
            weight,
            bias,
            out_features,
        }
    }

    /// Without bias.
    pub fn no_bias(in_features: usize, out_features: usize) -> Linear {
        let fans = Fans {
            fan_in: in_features,
            fan_out: out_features,
        };
        let weight = param_or_deferred(&[out_features, in_features], Init::linear_default(), fans);
        Linear {
            weight,
            bias: None,
            out_features,
        }
    }

    /// Input size inferred at the first forward (PyTorch's `LazyLinear`, Keras' `Dense`).
    pub fn lazy(out_features: usize) -> Linear {
        let weight = Param::deferred(&[Some(out_features), None], Init::linear_default());
        let bias = Param::deferred(&[Some(out_features)], Init::FanInUniform);
        // local names until a traversal gives the full ones, so reading a deferred
        // parameter of a layer never named by a model still says which one it is
        weight.set_name("weight");
        bias.set_name("bias");
        Linear {
            weight,
            bias: Some(bias),
            out_features,
        }
    }

    /// Builds from existing parameters (weight `[out, in]`).
    pub fn from_params(weight: Param, bias: Option<Param>) -> Result<Linear> {
        let shape = weight.partial_shape();
        let [Some(out), _] = shape[..] else {
            return Err(Error::invalid_config(
                "Linear::from_params",
                "weight shape",
                crate::module::fmt_partial(&shape),
                "must be [out_features, in_features] with out_features known",
            ));
        };
        Ok(Linear {
            weight,
            bias,
            out_features: out,
        })
    }

    /// Re-draws weight and bias with PyTorch's defaults (`reset_parameters`): both from
    /// U(-1/sqrt(in), 1/sqrt(in)). On a lazy layer, resets the initializers its first
    /// forward will use.
    pub fn reset_parameters(&self) -> Result<()> {
        let fans = self.in_features().map(|i| Fans {
            fan_in: i,
            fan_out: self.out_features,
        });
        self.weight
            .reinit_with_fans(&Init::linear_default(), fans)?;
        if let Some(b) = &self.bias {
            b.reinit_with_fans(&Init::FanInUniform, fans)?;
        }
        Ok(())
    }

    /// Output size.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Input size, None while deferred.
    pub fn in_features(&self) -> Option<usize> {
        self.weight.partial_shape().get(1).copied().flatten()
    }

    /// `layers.2 (Linear(in_features=4, out_features=8, bias=True))`: the layer's path
    /// in its model (learned by its weight, see [`Param::name`]) and what it is; just
    /// the description for a layer no model has placed yet.
    fn layer_name(&self) -> String {
        let n = self.weight.name();
        let desc = format!("Linear({})", self.extra_repr());
        match n.strip_suffix(".weight") {
            Some(owner) if !owner.is_empty() => format!("{owner} ({desc})"),
            _ => desc,
        }
    }
}

impl Module for Linear {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.param("weight", &self.weight);
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        v.param("weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
    }
    fn module_name(&self) -> String {
        "Linear".into()
    }
    fn extra_repr(&self) -> String {
        let inf = self
            .in_features()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "?".into());
        format!(
            "in_features={inf}, out_features={}, bias={}",
            self.out_features,
            crate::module::python_bool(self.bias.is_some())
        )
    }
}

impl Linear {
    /// The weight's and the bias's graph tensors, or `Uninitialized` while either is
    /// still deferred.
    fn ready_tensors(&self) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.weight.tensor()?;
        let b = self.bias.as_ref().map(Param::tensor).transpose()?;
        Ok((w, b))
    }

    /// The first forward of a lazy layer: sizes the pending parameters from the input
    /// (each on its own: see [`super::lazy::materialize_pending`]).
    fn materialize(&self, x: &Tensor, last: usize) -> Result<()> {
        if let Some(inf) = self.in_features() {
            if inf != last {
                return Err(Error::InputMismatch {
                    layer: self.layer_name(),
                    expected: format!("last dim {inf}"),
                    actual: x.shape().to_vec(),
                });
            }
        }
        let fans = Fans {
            fan_in: last,
            fan_out: self.out_features,
        };
        let (w_shape, b_shape) = ([self.out_features, last], [self.out_features]);
        super::lazy::materialize_pending(
            std::iter::once((&self.weight, &w_shape[..], Some(fans)))
                .chain(self.bias.iter().map(|b| (b, &b_shape[..], Some(fans)))),
        )
    }
}

impl Forward for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, false)
    }
    /// A following ReLU runs inside this layer's op ([`Linear::forward_relu`]).
    fn forward_fused(&self, x: &Tensor, act: FusedActivation) -> Option<Result<Tensor>> {
        match act {
            FusedActivation::Relu => Some(self.forward_relu(x)),
        }
    }
}

impl Linear {
    /// `relu(self.forward(x))` as one fused op ([`Tensor::linear_relu`]): what
    /// [`crate::Sequential`] and [`crate::DynSequential`] run for a `Linear` followed by a
    /// `ReLU`.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, true)
    }

    fn apply(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let Some(&last) = x.shape().last() else {
            return Err(Error::InputMismatch {
                layer: self.layer_name(),
                expected: "at least 1 dim".into(),
                actual: x.shape().to_vec(),
            });
        };
        // Hot path: both parameters ready, two lock reads and no allocation.
        let (w, b) = match self.ready_tensors() {
            Err(Error::Uninitialized { .. }) => {
                self.materialize(x, last)?;
                self.ready_tensors()?
            }
            r => r?,
        };
        let run = |x: &Tensor| match relu {
            true => x.linear_relu(&w, b.as_ref()),
            false => x.linear(&w, b.as_ref()),
        };
        match w.shape() {
            [_, inf] if *inf == last => run(x),
            [_, inf] => Err(Error::InputMismatch {
                layer: self.layer_name(),
                expected: format!("last dim {inf}"),
                actual: x.shape().to_vec(),
            }),
            // from_params accepts any 2-d weight; linear() names anything else
            _ => run(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Linear;
    use crate::module::Forward;
    use crate::{Result, Tensor};

    #[test]
    fn zero_input_features_give_rows_of_bias() -> Result<()> {
        // PyTorch: nn.Linear(0, 3)(torch.zeros(2, 0)) is [2, 3], each row the bias
        for fc in [Linear::new(0, 3), Linear::lazy(3)] {
            let y = fc.forward(&Tensor::zeros(&[2, 0]))?;
            assert_eq!(y.shape(), &[2, 3]);
            assert_eq!(y.numel(), y.to_vec::<f32>()?.len());
            let b = fc.bias.as_ref().map(|b| b.data()).transpose()?;
            let b = b
                .map(|b| b.to_vec::<f32>())
                .transpose()?
                .unwrap_or_default();
            assert_eq!(y.to_vec::<f32>()?, [b.clone(), b].concat());
            // the same six numbers summed in another order: equal up to rounding (the
            // bias is random, its values depend on which seed the test thread started from)
            let want = 2.0
                * fc.bias
                    .as_ref()
                    .map(|b| b.data())
                    .transpose()?
                    .map(|b| b.sum())
                    .transpose()?
                    .map(|s| s.item())
                    .transpose()?
                    .unwrap_or(0.0);
            let got = y.sum()?.item()?;
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
            let _ = format!("{y}");
        }
        let y = Linear::no_bias(0, 3).forward(&Tensor::zeros(&[4, 2, 0]))?;
        assert_eq!(
            (y.shape(), y.to_vec::<f32>()?),
            (&[4, 2, 3][..], vec![0.0; 24])
        );
        let y = Tensor::zeros(&[2, 0]).linear(&Tensor::zeros(&[3, 0]), None)?;
        assert_eq!(y.to_vec::<f32>()?, vec![0.0; 6]);
        Ok(())
    }

    #[test]
    fn reset_parameters_uses_the_weight_fan_in_for_the_bias() -> Result<()> {
        // in = 4 -> bound 1/2 for both; out = 400 would give a bias bound of 1/20
        let fc = Linear::new(4, 400);
        fc.reset_parameters()?;
        let b = fc.bias.as_ref().map(|b| b.data()).transpose()?;
        let b = b
            .map(|t| t.to_vec::<f32>())
            .transpose()?
            .unwrap_or_default();
        let max = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.4 && max <= 0.5, "bias bound {max}");
        let w = fc.weight.data()?.to_vec::<f32>()?;
        assert!(w.iter().all(|v| v.abs() <= 0.5));
        Ok(())
    }
}
