//! `Conv1d`, `Conv2d`: PyTorch's convolution layers, and their lazy forms.
//!
//! Shapes (2-d): x `[n, c_in, h, w]` (or `[c_in, h, w]`), weight `[c_out, c_in / groups,
//! kh, kw]` (PyTorch's layout), bias `[c_out]`, y `[n, c_out, h_out, w_out]` with
//! `h_out = floor((h + 2 p - d (k - 1) - 1) / s) + 1`; 1-d drops `h`. The math is
//! [`Tensor::conv2d`]'s. Default init is PyTorch's: weight ~ U(-1/sqrt(fan_in),
//! 1/sqrt(fan_in)) (Kaiming uniform, a = sqrt 5) with fan_in = c_in / groups * kh * kw,
//! bias from the same bound. `Conv2d::lazy(out, k)` learns `c_in` at the first forward
//! (PyTorch's `LazyConv2d`).
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::Conv2d, Forward, Tensor};
//! let conv = Conv2d::new(3, 8, 3).stride(2).padding(1);
//! let y = conv.forward(&Tensor::rand(&[2, 3, 16, 16]))?;
//! assert_eq!(y.shape(), &[2, 8, 8, 8]);
//! let lazy = Conv2d::lazy(8, 3).padding_same();
//! assert_eq!(lazy.forward(&Tensor::rand(&[1, 5, 6, 6]))?.shape(), &[1, 8, 6, 6]);
//! assert_eq!(lazy.in_channels(), Some(5));
//! # Ok::<(), nn::Error>(())
//! ```

use crate::init::Init;
use crate::module::{python_tuple, Forward, Module, Param, Visitor, VisitorMut};
use crate::{Conv2dOptions, Error, Result, Tensor};

/// A size given for every spatial dim at once (`3`) or per dim (`[3, 5]`).
pub trait IntoDims<const D: usize> {
    /// The per-dim sizes.
    fn into_dims(self) -> [usize; D];
}

impl<const D: usize> IntoDims<D> for usize {
    fn into_dims(self) -> [usize; D] {
        [self; D]
    }
}

impl<const D: usize> IntoDims<D> for [usize; D] {
    fn into_dims(self) -> [usize; D] {
        self
    }
}

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding<const D: usize> {
    /// The same number of zeros before and after each dim.
    Explicit([usize; D]),
    /// PyTorch's `padding="same"`: the output keeps the input's size (stride 1 only).
    Same,
}

/// A convolution over `D` spatial dims; use [`Conv1d`] and [`Conv2d`].
#[derive(Debug, Clone)]
pub struct Conv<const D: usize> {
    /// `[out_channels, in_channels / groups, *kernel_size]`.
    pub weight: Param,
    /// `[out_channels]`, absent with [`Conv::no_bias`].
    pub bias: Option<Param>,
    out_channels: usize,
    kernel_size: [usize; D],
    stride: [usize; D],
    padding: Padding<D>,
    dilation: [usize; D],
    groups: usize,
}

/// 1-d convolution over `[n, c, l]` (PyTorch's `nn.Conv1d`).
pub type Conv1d = Conv<1>;
/// 2-d convolution over `[n, c, h, w]` (PyTorch's `nn.Conv2d`).
pub type Conv2d = Conv<2>;

impl<const D: usize> Conv<D> {
    fn build(in_channels: Option<usize>, out_channels: usize, kernel: [usize; D]) -> Self {
        let mut shape = vec![Some(out_channels), in_channels];
        shape.extend(kernel.iter().map(|&k| Some(k)));
        let weight = match shape.iter().copied().collect::<Option<Vec<usize>>>() {
            Some(full) => Param::init(&full, Init::linear_default())
                .unwrap_or_else(|_| Param::deferred(&shape, Init::linear_default())),
            None => Param::deferred(&shape, Init::linear_default()),
        };
        let bias = match in_channels {
            Some(i) => {
                let fans = crate::init::Fans::of(&[out_channels, i, kernel.iter().product()]);
                Param::init_with_fans(&[out_channels], Init::FanInUniform, fans)
                    .unwrap_or_else(|_| Param::deferred(&[Some(out_channels)], Init::FanInUniform))
            }
            None => Param::deferred(&[Some(out_channels)], Init::FanInUniform),
        };
        weight.set_name("weight");
        bias.set_name("bias");
        Conv {
            weight,
            bias: Some(bias),
            out_channels,
            kernel_size: kernel,
            stride: [1; D],
            padding: Padding::Explicit([0; D]),
            dilation: [1; D],
            groups: 1,
        }
    }

    /// `in_channels -> out_channels` with a `kernel_size` window, stride 1, no padding,
    /// with bias, PyTorch's default init. Configure with the builder methods.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl IntoDims<D>) -> Self {
        Self::build(Some(in_channels), out_channels, kernel_size.into_dims())
    }

    /// `in_channels` inferred at the first forward (PyTorch's `LazyConv2d`).
    pub fn lazy(out_channels: usize, kernel_size: impl IntoDims<D>) -> Self {
        Self::build(None, out_channels, kernel_size.into_dims())
    }

    /// Without bias.
    pub fn no_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: impl IntoDims<D>) -> Self {
        self.stride = stride.into_dims();
        self
    }

    /// Sets zero padding on both sides of each dim.
    pub fn padding(mut self, padding: impl IntoDims<D>) -> Self {
        self.padding = Padding::Explicit(padding.into_dims());
        self
    }

    /// PyTorch's `padding="same"` (the first forward rejects a stride other than 1).
    pub fn padding_same(mut self) -> Self {
        self.padding = Padding::Same;
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: impl IntoDims<D>) -> Self {
        self.dilation = dilation.into_dims();
        self
    }

    /// Splits channels into `groups` blocks (`groups = in_channels` is depthwise). The
    /// weight is re-created for the new shape `[out, in / groups, *k]` with the default
    /// init; a groups value that does not divide both channel counts is reported by the
    /// first forward.
    pub fn groups(mut self, groups: usize) -> Self {
        let in_channels = self.in_channels();
        self.groups = groups;
        if let Some(c) = in_channels.filter(|&c| groups > 1 && c % groups == 0) {
            let mut shape = vec![self.out_channels, c / groups];
            shape.extend_from_slice(&self.kernel_size);
            if let Ok(w) = Param::init(&shape, Init::linear_default()) {
                w.set_name("weight");
                self.weight = w;
            }
            if let Some(b) = &self.bias {
                // the bound follows the new fan-in; built-in initializers cannot fail
                b.reinit_with_fans(&Init::FanInUniform, Some(crate::init::Fans::of(&shape)))
                    .ok();
            }
        }
        self
    }

    /// Builds from existing parameters (weight `[out, in / groups, *k]`), stride 1, no
    /// padding, one group.
    pub fn from_params(weight: Param, bias: Option<Param>) -> Result<Self> {
        let shape = weight.partial_shape();
        let kernel: Option<Vec<usize>> = shape.iter().skip(2).copied().collect();
        match (shape.first().copied().flatten(), kernel) {
            (Some(out), Some(k)) if shape.len() == D + 2 => {
                let mut kernel_size = [0; D];
                kernel_size.copy_from_slice(&k);
                Ok(Conv {
                    weight,
                    bias,
                    out_channels: out,
                    kernel_size,
                    stride: [1; D],
                    padding: Padding::Explicit([0; D]),
                    dilation: [1; D],
                    groups: 1,
                })
            }
            _ => Err(Error::invalid_config(
                "Conv::from_params",
                "weight shape",
                crate::module::fmt_partial(&shape),
                format!("must be [out_channels, in_channels / groups, {D} kernel dims] with out_channels and the kernel known"),
            )),
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Input channels, `None` while deferred.
    pub fn in_channels(&self) -> Option<usize> {
        self.weight
            .partial_shape()
            .get(1)
            .copied()
            .flatten()
            .map(|c| c * self.groups)
    }

    /// The window size.
    pub fn kernel_size(&self) -> [usize; D] {
        self.kernel_size
    }

    /// The 2-d options of the convolution run (1-d as height 1).
    fn options(&self) -> Conv2dOptions {
        let lift = |v: [usize; D], fill: usize| -> [usize; 2] {
            match v[..] {
                [a] => [fill, a],
                [a, b] => [a, b],
                _ => [fill; 2],
            }
        };
        let opts = Conv2dOptions {
            stride: lift(self.stride, 1),
            padding: [[0, 0], [0, 0]],
            dilation: lift(self.dilation, 1),
            groups: self.groups,
        };
        match self.padding {
            Padding::Explicit(p) => {
                let p = lift(p, 0);
                opts.padding(p)
            }
            Padding::Same => opts.same_padding(lift(self.kernel_size, 1)),
        }
    }

    /// `layer1.0.conv1 (Conv2d(64, 64, ...))`: the path in its model and what it is.
    fn layer_name(&self) -> String {
        let desc = format!("{}({})", self.module_name(), self.extra_repr());
        match self.weight.name().strip_suffix(".weight") {
            Some(owner) if !owner.is_empty() => format!("{owner} ({desc})"),
            _ => desc,
        }
    }

    fn mismatch(&self, x: &Tensor, expected: String) -> Error {
        Error::InputMismatch {
            layer: self.layer_name(),
            expected,
            actual: x.shape().to_vec(),
        }
    }

    /// Checks the configuration and the input against the layer, sizing a lazy weight.
    fn prepare(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let rank = x.rank();
        if rank != D + 1 && rank != D + 2 {
            return Err(self.mismatch(
                x,
                format!(
                    "{} or {} dims ([batch,] channels, {D} spatial)",
                    D + 1,
                    D + 2
                ),
            ));
        }
        let c = x.shape()[rank - D - 1];
        let g = self.groups;
        if g == 0 || !c.is_multiple_of(g) || !self.out_channels.is_multiple_of(g) {
            return Err(Error::InLayer {
                layer: self.layer_name(),
                source: Box::new(Error::invalid_config(
                    "conv",
                    "groups",
                    g,
                    format!(
                        "must divide in_channels ({c}) and out_channels ({})",
                        self.out_channels
                    ),
                )),
            });
        }
        if self.padding == Padding::Same && self.stride.iter().any(|&s| s != 1) {
            return Err(Error::InLayer {
                layer: self.layer_name(),
                source: Box::new(Error::invalid_config(
                    "conv",
                    "stride",
                    python_tuple(&self.stride),
                    "padding=same needs stride 1 (as in PyTorch)",
                )),
            });
        }
        match self.in_channels() {
            Some(have) if have != c => {
                return Err(self.mismatch(x, format!("{have} channels (dim {})", rank - D - 1)))
            }
            _ => {}
        }
        if super::lazy::any_pending(std::iter::once(&self.weight).chain(&self.bias)) {
            let mut shape = vec![self.out_channels, c / g];
            shape.extend_from_slice(&self.kernel_size);
            let fans = crate::init::Fans::of(&shape);
            let bias_shape = [self.out_channels];
            super::lazy::materialize_pending(
                std::iter::once((&self.weight, &shape[..], None))
                    .chain(self.bias.iter().map(|b| (b, &bias_shape[..], Some(fans)))),
            )?;
        }
        let w = self.weight.tensor()?;
        let b = self.bias.as_ref().map(Param::tensor).transpose()?;
        Ok((w, b))
    }
}

impl<const D: usize> Module for Conv<D> {
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
        format!("Conv{D}d")
    }
    /// PyTorch's: `3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False`
    /// (padding, dilation, groups and bias only where not the default).
    fn extra_repr(&self) -> String {
        let inc = self
            .in_channels()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "?".into());
        let mut s = format!(
            "{inc}, {}, kernel_size={}, stride={}",
            self.out_channels,
            python_tuple(&self.kernel_size),
            python_tuple(&self.stride)
        );
        match self.padding {
            Padding::Same => s.push_str(", padding=same"),
            Padding::Explicit(p) if p != [0; D] => {
                s.push_str(&format!(", padding={}", python_tuple(&p)))
            }
            Padding::Explicit(_) => {}
        }
        if self.dilation != [1; D] {
            s.push_str(&format!(", dilation={}", python_tuple(&self.dilation)));
        }
        if self.groups != 1 {
            s.push_str(&format!(", groups={}", self.groups));
        }
        if self.bias.is_none() {
            s.push_str(", bias=False");
        }
        s
    }
}

impl<const D: usize> Forward for Conv<D> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = self.prepare(x)?;
        let o = self.options();
        let y = match D {
            1 => x.conv1d(
                &w,
                b.as_ref(),
                o.stride[1],
                o.padding[1],
                o.dilation[1],
                o.groups,
            ),
            _ => x.conv2d(&w, b.as_ref(), &o),
        };
        y.map_err(|e| match e {
            e @ (Error::BadShape { .. }
            | Error::InvalidConfig { .. }
            | Error::ShapeMismatch { .. }) => Error::InLayer {
                layer: self.layer_name(),
                source: Box::new(e),
            },
            e => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Conv1d, Conv2d};
    use crate::module::{Forward, ModuleExt};
    use crate::{Result, Tensor};
    use proptest::prelude::*;

    #[test]
    fn shapes_init_and_repr() -> Result<()> {
        let c = Conv2d::new(3, 64, 7).stride(2).padding(3).no_bias();
        assert_eq!(
            c.repr(),
            "Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)"
        );
        assert_eq!(
            c.forward(&Tensor::rand(&[1, 3, 32, 32]))?.shape(),
            &[1, 64, 16, 16]
        );
        // U(-1/sqrt(3*49), 1/sqrt(3*49))
        let w = c.weight.data()?.to_vec::<f32>()?;
        let bound = 1.0 / (147f32).sqrt();
        let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max <= bound && max > 0.9 * bound, "{max} vs {bound}");
        let d = Conv2d::new(6, 6, 3).groups(6).padding(1).dilation(2);
        assert_eq!(d.weight.shape(), Some(vec![6, 1, 3, 3]));
        assert_eq!(
            d.repr(),
            "Conv2d(6, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(2, 2), groups=6)"
        );
        let e = Conv1d::new(4, 2, 3).padding_same();
        assert_eq!(e.forward(&Tensor::rand(&[2, 4, 9]))?.shape(), &[2, 2, 9]);
        assert_eq!(
            e.repr(),
            "Conv1d(4, 2, kernel_size=(3,), stride=(1,), padding=same)"
        );
        Ok(())
    }

    #[test]
    fn lazy_learns_in_channels() -> Result<()> {
        let c = Conv2d::lazy(4, [3, 2]).groups(2);
        assert_eq!(c.in_channels(), None);
        assert!(c.repr().starts_with("Conv2d(?, 4"));
        assert_eq!(
            c.forward(&Tensor::rand(&[1, 6, 5, 5]))?.shape(),
            &[1, 4, 3, 4]
        );
        assert_eq!(c.weight.shape(), Some(vec![4, 3, 3, 2]));
        assert_eq!(c.in_channels(), Some(6));
        let err = c
            .forward(&Tensor::rand(&[1, 4, 5, 5]))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("6 channels")));
        Ok(())
    }

    #[test]
    fn errors_name_the_layer_and_shapes() {
        let msg = |c: &Conv2d, s: &[usize]| {
            c.forward(&Tensor::zeros(s))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let c = Conv2d::new(3, 8, 3);
        let e = msg(&c, &[1, 4, 8, 8]);
        assert!(
            e.contains("Conv2d(3, 8") && e.contains("3 channels") && e.contains("[1, 4, 8, 8]"),
            "{e}"
        );
        let e = msg(&c, &[8, 8]);
        assert!(e.contains("3 or 4 dims") && e.contains("[8, 8]"), "{e}");
        let e = msg(&c, &[1, 3, 2, 2]);
        assert!(
            e.contains("Conv2d(3, 8") && e.contains("larger than the padded input"),
            "{e}"
        );
        let e = msg(&Conv2d::new(3, 8, 3).stride(0), &[1, 3, 8, 8]);
        assert!(e.contains("stride 0"), "{e}");
        let e = msg(&Conv2d::new(3, 8, 3).groups(2), &[1, 3, 8, 8]);
        assert!(
            e.contains("groups 2") && e.contains("in_channels (3)"),
            "{e}"
        );
        let e = msg(
            &Conv2d::new(3, 8, 3).stride(2).padding_same(),
            &[1, 3, 8, 8],
        );
        assert!(e.contains("padding=same needs stride 1"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics(
            n in 0usize..3, c in 0usize..5, h in 0usize..7, w in 0usize..7,
            o in 1usize..5, k in 0usize..5, s in 0usize..3, p in 0usize..3, d in 0usize..3,
            g in 0usize..4, rank in 2usize..6, lazy in any::<bool>(),
        ) {
            let conv = if lazy { Conv2d::lazy(o, k) } else { Conv2d::new(c, o, k) };
            let conv = conv.stride(s).padding(p).dilation(d).groups(g);
            let shape: Vec<usize> = [n, c, h, w, 2][..rank].to_vec();
            if let Ok(y) = conv.forward(&Tensor::zeros(&shape)) {
                prop_assert_eq!(y.rank(), shape.len().min(4));
            }
        }
    }
}
