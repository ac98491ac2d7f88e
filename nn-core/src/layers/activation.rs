//! Parameter-free activation layers: `ReLU` (max(x, 0)), `Sigmoid` (1/(1+e^-x)),
//! `Tanh`, `GELU` (exact or tanh form), `SiLU`, `LeakyReLU`, `Softmax(dim)`,
//! `LogSoftmax(dim)`, `Identity`. Any shape in, the same shape out.
//!
//! `ReLU`, `SiLU` and `LeakyReLU` take PyTorch's `inplace` flag
//! (`ReLU.inplace(true)`, PyTorch's `nn.ReLU(inplace=True)`) so that a model built with
//! it prints as PyTorch prints it (`ReLU(inplace=True)`). The flag changes nothing but
//! the print: nn never overwrites a layer's input (the output is always a new tensor,
//! and autograd keeps what it needs), so results and gradients are the same either way.

use crate::module::{python_bool, python_float_f32, Forward, FusedActivation};
use crate::{Result, Tensor};

/// `max(x, 0)` elementwise.
///
/// `ReLU` is both the type and its default value (a constant), so `ReLU` reads as the
/// layer wherever a layer is expected, as before the `inplace` flag existed.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{layers::ReLU, module::{Forward, ModuleExt}, Tensor};
/// let y = ReLU.forward(&Tensor::from_vec(vec![-1.0f32, 2.0], &[2])?)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![0.0, 2.0]);
/// // PyTorch's nn.ReLU(inplace=True): the same values, printed with the flag
/// assert_eq!(ReLU.inplace(true).repr(), "ReLU(inplace=True)");
/// assert_eq!(ReLU.repr(), "ReLU()");
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReLU {
    inplace: bool,
}

/// The default [`ReLU`](struct@ReLU) (`inplace` off), so `ReLU` is a value too.
#[allow(non_upper_case_globals)]
pub const ReLU: ReLU = ReLU { inplace: false };

/// The logistic function elementwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

/// Hyperbolic tangent elementwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tanh;

crate::__leaf_module!(Sigmoid, "Sigmoid");
crate::__leaf_module!(Tanh, "Tanh");

impl Forward for ReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu()
    }
    /// A chain may fold this ReLU into the layer before it (a `Linear`).
    fn fused_activation(&self) -> Option<FusedActivation> {
        Some(FusedActivation::Relu)
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

/// GELU, `x Phi(x)`; with [`GELU::tanh`] the tanh approximation (PyTorch's
/// `nn.GELU(approximate='tanh')`).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{layers::GELU, module::Forward, Tensor};
/// let y = GELU::default().forward(&Tensor::from_vec(vec![0.0f32, 1.0], &[2])?)?;
/// assert!((y.to_vec::<f32>()?[1] - 0.841_344_7).abs() < 1e-6); // 1 * Phi(1)
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GELU {
    /// Use the tanh approximation instead of the exact erf form.
    pub tanh: bool,
}

impl GELU {
    /// The exact form (PyTorch's default, `approximate='none'`).
    pub fn new() -> GELU {
        GELU { tanh: false }
    }
    /// The tanh approximation.
    pub fn tanh() -> GELU {
        GELU { tanh: true }
    }
}

/// SiLU (swish), `x sigmoid(x)`. Like [`ReLU`](struct@ReLU), `SiLU` is also a constant
/// (the default value), and `.inplace(true)` only changes the print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiLU {
    inplace: bool,
}

/// The default [`SiLU`](struct@SiLU) (`inplace` off), so `SiLU` is a value too.
#[allow(non_upper_case_globals)]
pub const SiLU: SiLU = SiLU { inplace: false };

/// The `inplace` flag of PyTorch's activations: recorded for printing only.
macro_rules! inplace_flag {
    ($t:ident) => {
        impl $t {
            /// The default layer, `inplace` off.
            pub fn new() -> $t {
                $t::default()
            }
            /// PyTorch's `inplace` option. It changes only how the layer prints
            /// (`inplace=True`): nn never overwrites the input, so values and
            /// gradients are the same with or without it.
            pub fn inplace(mut self, inplace: bool) -> $t {
                self.inplace = inplace;
                self
            }
            /// Whether the layer was built with `inplace(true)`.
            pub fn is_inplace(&self) -> bool {
                self.inplace
            }
        }
    };
}

inplace_flag!(ReLU);
inplace_flag!(SiLU);

/// Leaky ReLU: `x` for `x > 0`, `negative_slope * x` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct LeakyReLU {
    /// The slope for negative inputs.
    pub negative_slope: f32,
    inplace: bool,
}

impl LeakyReLU {
    /// With the given slope for negative inputs.
    pub fn new(negative_slope: f32) -> LeakyReLU {
        LeakyReLU {
            negative_slope,
            inplace: false,
        }
    }
    /// PyTorch's `inplace` option: changes only the print (`inplace=True`), as for
    /// [`ReLU::inplace`](struct@ReLU).
    pub fn inplace(mut self, inplace: bool) -> LeakyReLU {
        self.inplace = inplace;
        self
    }
    /// Whether the layer was built with `inplace(true)`.
    pub fn is_inplace(&self) -> bool {
        self.inplace
    }
}

impl Default for LeakyReLU {
    /// `negative_slope = 0.01`, PyTorch's default.
    fn default() -> Self {
        LeakyReLU::new(0.01)
    }
}

/// Softmax along `dim` (negative counts from the end).
#[derive(Debug, Clone, Copy)]
pub struct Softmax {
    /// The dim the probabilities sum to 1 over.
    pub dim: isize,
}

impl Softmax {
    /// Along `dim`.
    pub fn new(dim: isize) -> Softmax {
        Softmax { dim }
    }
}

/// Log-softmax along `dim`, computed stably.
#[derive(Debug, Clone, Copy)]
pub struct LogSoftmax {
    /// The dim normalized over.
    pub dim: isize,
}

impl LogSoftmax {
    /// Along `dim`.
    pub fn new(dim: isize) -> LogSoftmax {
        LogSoftmax { dim }
    }
}

/// The identity: returns its input (a placeholder, PyTorch's `nn.Identity`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

crate::__leaf_module!(Identity, "Identity");

macro_rules! leaf_with_repr {
    ($t:ty, $name:expr, |$s:ident| $repr:expr) => {
        impl crate::module::Module for $t {
            fn visit<'a>(&'a self, _v: &mut dyn crate::module::Visitor<'a>) {}
            fn visit_mut(&mut self, _v: &mut dyn crate::module::VisitorMut) {}
            fn module_name(&self) -> String {
                $name.into()
            }
            fn extra_repr(&self) -> String {
                let $s = self;
                $repr
            }
        }
    };
}

leaf_with_repr!(GELU, "GELU", |s| format!(
    "approximate='{}'",
    if s.tanh { "tanh" } else { "none" }
));
/// `inplace=True` as PyTorch's activations print it: only when set.
fn inplace_repr(inplace: bool) -> &'static str {
    if inplace {
        "inplace=True"
    } else {
        ""
    }
}

leaf_with_repr!(ReLU, "ReLU", |s| inplace_repr(s.inplace).to_string());
leaf_with_repr!(SiLU, "SiLU", |s| inplace_repr(s.inplace).to_string());
leaf_with_repr!(LeakyReLU, "LeakyReLU", |s| {
    let mut r = format!("negative_slope={}", python_float_f32(s.negative_slope));
    if s.inplace {
        r.push_str(&format!(", inplace={}", python_bool(true)));
    }
    r
});
leaf_with_repr!(Softmax, "Softmax", |s| format!("dim={}", s.dim));
leaf_with_repr!(LogSoftmax, "LogSoftmax", |s| format!("dim={}", s.dim));

impl Forward for GELU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.tanh {
            x.gelu_tanh()
        } else {
            x.gelu()
        }
    }
}
impl Forward for SiLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.silu()
    }
}
impl Forward for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.leaky_relu(self.negative_slope)
    }
}
impl Forward for Softmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.softmax(self.dim)
    }
}
impl Forward for LogSoftmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.log_softmax(self.dim)
    }
}
impl Forward for Identity {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Module;
    use crate::ops::testing::check_grad;

    #[test]
    fn layers_are_their_ops_and_print_as_in_pytorch() -> Result<()> {
        let s: &[usize] = &[2, 5];
        check_grad(&[s], |x| GELU::new().forward(&x[0]))?;
        check_grad(&[s], |x| GELU::tanh().forward(&x[0]))?;
        check_grad(&[s], |x| SiLU.forward(&x[0]))?;
        check_grad(&[s], |x| LeakyReLU::default().forward(&x[0]))?;
        check_grad(&[s], |x| Softmax::new(-1).forward(&x[0]))?;
        check_grad(&[s], |x| LogSoftmax::new(0).forward(&x[0]))?;
        check_grad(&[s], |x| Identity.forward(&x[0]))?;
        // `inplace` changes only the print
        let x = Tensor::from_vec(vec![-1.0f32, 0.5, 2.0], &[3])?;
        for (a, b) in [
            (ReLU.forward(&x)?, ReLU.inplace(true).forward(&x)?),
            (SiLU.forward(&x)?, SiLU.inplace(true).forward(&x)?),
            (
                LeakyReLU::default().forward(&x)?,
                LeakyReLU::default().inplace(true).forward(&x)?,
            ),
        ] {
            assert_eq!(a.to_vec::<f32>()?, b.to_vec::<f32>()?);
        }
        assert_eq!(x.to_vec::<f32>()?, vec![-1.0, 0.5, 2.0]);
        assert!(ReLU.inplace(true).is_inplace() && !ReLU.is_inplace());
        let reprs = [
            crate::module::repr(&GELU::new()),
            crate::module::repr(&GELU::tanh()),
            crate::module::repr(&SiLU),
            crate::module::repr(&LeakyReLU::default()),
            crate::module::repr(&Softmax::new(-1)),
            crate::module::repr(&LogSoftmax::new(1)),
            crate::module::repr(&Identity),
            crate::module::repr(&ReLU),
            crate::module::repr(&ReLU::new().inplace(true)),
            crate::module::repr(&SiLU.inplace(true)),
            crate::module::repr(&LeakyReLU::new(0.2).inplace(true)),
        ];
        // str(nn.GELU()), str(nn.GELU('tanh')), ... in PyTorch 2.15
        let torch = [
            "GELU(approximate='none')",
            "GELU(approximate='tanh')",
            "SiLU()",
            "LeakyReLU(negative_slope=0.01)",
            "Softmax(dim=-1)",
            "LogSoftmax(dim=1)",
            "Identity()",
            "ReLU()",
            "ReLU(inplace=True)",
            "SiLU(inplace=True)",
            "LeakyReLU(negative_slope=0.2, inplace=True)",
        ];
        assert_eq!(reprs, torch);
        assert_eq!(Identity.module_name(), "Identity");
        Ok(())
    }
}
