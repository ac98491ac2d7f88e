//! Pooling layers: `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d` (PyTorch's).
//!
//! Shapes: x `[n, c, h, w]` (or `[c, h, w]`), y `[n, c, h_out, w_out]` with
//! `h_out = floor((h + 2 p - d (k - 1) - 1) / s) + 1` (ceil with `ceil_mode`); the
//! adaptive pool's output size is given. The math is [`Tensor::max_pool2d`]'s,
//! [`Tensor::avg_pool2d`]'s and [`Tensor::adaptive_avg_pool2d`]'s.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::{AdaptiveAvgPool2d, MaxPool2d}, Forward, Tensor};
//! let y = MaxPool2d::new(3).stride(2).padding(1).forward(&Tensor::rand(&[1, 4, 16, 16]))?;
//! assert_eq!(y.shape(), &[1, 4, 8, 8]);
//! let z = AdaptiveAvgPool2d::new([1, 1]).forward(&y)?;
//! assert_eq!(z.shape(), &[1, 4, 1, 1]);
//! # Ok::<(), nn::Error>(())
//! ```

use super::conv::IntoDims;
use crate::module::{Forward, Module, Visitor, VisitorMut};
use crate::{Error, Pool2dOptions, Result, Tensor};

/// `3` when both dims agree, `(3, 2)` otherwise (how PyTorch prints what it was given
/// in the common cases).
fn py_size(v: [usize; 2]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("({}, {})", v[0], v[1])
    }
}

fn in_layer(name: String, e: Error) -> Error {
    match e {
        e @ (Error::BadShape { .. } | Error::InvalidConfig { .. }) => Error::InLayer {
            layer: name,
            source: Box::new(e),
        },
        e => e,
    }
}

/// `Module` for a parameter-free layer whose `extra_repr` is `$repr(self)`.
macro_rules! leaf_module {
    ($t:ty, $name:expr, $repr:expr) => {
        impl Module for $t {
            fn visit<'a>(&'a self, _v: &mut dyn Visitor<'a>) {}
            fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
            fn module_name(&self) -> String {
                $name.into()
            }
            fn extra_repr(&self) -> String {
                let f: fn(&$t) -> String = $repr;
                f(self)
            }
        }
    };
}

macro_rules! window_builders {
    () => {
        /// Sets the stride (default: the kernel size).
        pub fn stride(mut self, stride: impl IntoDims<2>) -> Self {
            self.opts.stride = stride.into_dims();
            self
        }
        /// Sets the implicit padding (at most half the kernel).
        pub fn padding(mut self, padding: impl IntoDims<2>) -> Self {
            self.opts.padding = padding.into_dims();
            self
        }
        /// Rounds the output size up.
        pub fn ceil_mode(mut self, on: bool) -> Self {
            self.opts.ceil_mode = on;
            self
        }
        /// The window options.
        pub fn options(&self) -> Pool2dOptions {
            self.opts
        }
    };
}

/// Maximum over each window (PyTorch's `nn.MaxPool2d`).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    opts: Pool2dOptions,
}

impl MaxPool2d {
    /// A `kernel_size` window with stride `kernel_size`.
    pub fn new(kernel_size: impl IntoDims<2>) -> MaxPool2d {
        MaxPool2d {
            opts: Pool2dOptions::new(kernel_size.into_dims()),
        }
    }
    window_builders!();
    /// Sets the dilation.
    pub fn dilation(mut self, dilation: impl IntoDims<2>) -> Self {
        self.opts.dilation = dilation.into_dims();
        self
    }
}

leaf_module!(MaxPool2d, "MaxPool2d", |s: &MaxPool2d| format!(
    "kernel_size={}, stride={}, padding={}, dilation={}, ceil_mode={}",
    py_size(s.opts.kernel),
    py_size(s.opts.stride),
    py_size(s.opts.padding),
    py_size(s.opts.dilation),
    crate::module::python_bool(s.opts.ceil_mode)
));

impl Forward for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(&self.opts)
            .map_err(|e| in_layer(format!("MaxPool2d({})", self.extra_repr()), e))
    }
}

/// Mean over each window (PyTorch's `nn.AvgPool2d`).
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    opts: Pool2dOptions,
    count_include_pad: bool,
}

impl AvgPool2d {
    /// A `kernel_size` window with stride `kernel_size`, padding counted in the divisor.
    pub fn new(kernel_size: impl IntoDims<2>) -> AvgPool2d {
        AvgPool2d {
            opts: Pool2dOptions::new(kernel_size.into_dims()),
            count_include_pad: true,
        }
    }
    window_builders!();
    /// Whether padded zeros count in the divisor (default true).
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }
}

leaf_module!(AvgPool2d, "AvgPool2d", |s: &AvgPool2d| format!(
    "kernel_size={}, stride={}, padding={}",
    py_size(s.opts.kernel),
    py_size(s.opts.stride),
    py_size(s.opts.padding)
));

impl Forward for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d(&self.opts, self.count_include_pad)
            .map_err(|e| in_layer(format!("AvgPool2d({})", self.extra_repr()), e))
    }
}

/// Mean over windows that tile the input into a given output size (PyTorch's
/// `nn.AdaptiveAvgPool2d`).
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveAvgPool2d {
    output_size: [usize; 2],
}

impl AdaptiveAvgPool2d {
    /// Output `[oh, ow]` (or one size for both).
    pub fn new(output_size: impl IntoDims<2>) -> AdaptiveAvgPool2d {
        AdaptiveAvgPool2d {
            output_size: output_size.into_dims(),
        }
    }
}

leaf_module!(
    AdaptiveAvgPool2d,
    "AdaptiveAvgPool2d",
    |s: &AdaptiveAvgPool2d| { format!("output_size=({}, {})", s.output_size[0], s.output_size[1]) }
);

impl Forward for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.output_size)
            .map_err(|e| in_layer(format!("AdaptiveAvgPool2d({})", self.extra_repr()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
    use crate::module::{Forward, ModuleExt};
    use crate::{Result, Tensor};
    use proptest::prelude::*;

    #[test]
    fn repr_and_shapes() -> Result<()> {
        let m = MaxPool2d::new(3).stride(2).padding(1);
        assert_eq!(
            m.repr(),
            "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)"
        );
        assert_eq!(
            m.forward(&Tensor::zeros(&[2, 3, 7, 7]))?.shape(),
            &[2, 3, 4, 4]
        );
        let a = AvgPool2d::new([2, 3]).ceil_mode(true);
        assert_eq!(
            a.repr(),
            "AvgPool2d(kernel_size=(2, 3), stride=(2, 3), padding=0)"
        );
        assert_eq!(a.forward(&Tensor::zeros(&[3, 5, 7]))?.shape(), &[3, 3, 3]);
        let p = AdaptiveAvgPool2d::new([1, 1]);
        assert_eq!(p.repr(), "AdaptiveAvgPool2d(output_size=(1, 1))");
        let e = m
            .forward(&Tensor::zeros(&[2, 3]))
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("MaxPool2d(kernel_size=3")));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics(
            n in 0usize..3, c in 0usize..3, h in 0usize..6, w in 0usize..6,
            k in 0usize..4, s in 0usize..3, p in 0usize..3, d in 0usize..3,
            ceil in any::<bool>(), o in 0usize..4, rank in 2usize..6,
        ) {
            let shape: Vec<usize> = [n, c, h, w, 2][..rank].to_vec();
            let x = Tensor::zeros(&shape);
            let _ = MaxPool2d::new(k).stride(s).padding(p).dilation(d).ceil_mode(ceil).forward(&x);
            let _ = AvgPool2d::new(k).stride(s).padding(p).ceil_mode(ceil).count_include_pad(ceil).forward(&x);
            let _ = AdaptiveAvgPool2d::new([o, o + 1]).forward(&x);
        }
    }
}
