//! `Flatten`: collapses dims `start_dim..=end_dim` into one (by default all but the batch dim).
//!
//! Shapes: x `[n, d1, d2, ...]` -> y `[n, d1 * d2 * ...]` with the default `start_dim = 1`,
//! `end_dim = -1`. No copy: the data is reshaped, and the gradient is reshaped back.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::Flatten, Forward, Tensor};
//! let y = Flatten::new().forward(&Tensor::zeros(&[2, 3, 4, 5]))?;
//! assert_eq!(y.shape(), &[2, 60]);
//! let y = Flatten::range(1, 2).forward(&Tensor::zeros(&[2, 3, 4, 5]))?;
//! assert_eq!(y.shape(), &[2, 12, 5]);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::module::{Forward, Module, Visitor, VisitorMut};
use crate::{Error, Result, Tensor};

/// Flattens a contiguous range of dims (PyTorch's `nn.Flatten`).
#[derive(Debug, Clone, Copy)]
pub struct Flatten {
    start_dim: isize,
    end_dim: isize,
}

impl Flatten {
    /// Flattens every dim after the first (batch) one.
    pub fn new() -> Flatten {
        Flatten::range(1, -1)
    }

    /// Flattens dims `start_dim..=end_dim` (negative counts from the end).
    pub fn range(start_dim: isize, end_dim: isize) -> Flatten {
        Flatten { start_dim, end_dim }
    }

    fn resolve(&self, d: isize, rank: usize, shape: &[usize]) -> Result<usize> {
        let r = rank as isize;
        let a = if d < 0 { d + r } else { d };
        if a < 0 || a >= r.max(1) {
            return Err(Error::InputMismatch {
                layer: format!("Flatten({})", self.extra_repr()),
                expected: format!("a tensor with dim {d}"),
                actual: shape.to_vec(),
            });
        }
        Ok(a as usize)
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten::new()
    }
}

impl Module for Flatten {
    fn visit<'a>(&'a self, _v: &mut dyn Visitor<'a>) {}
    fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
    fn module_name(&self) -> String {
        "Flatten".into()
    }
    fn extra_repr(&self) -> String {
        format!("start_dim={}, end_dim={}", self.start_dim, self.end_dim)
    }
}

impl Forward for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 0 {
            return x.reshape(&[1]);
        }
        let s = self.resolve(self.start_dim, x.rank(), x.shape())?;
        let e = self.resolve(self.end_dim, x.rank(), x.shape())?;
        if s > e {
            return Err(Error::InputMismatch {
                layer: format!("Flatten({})", self.extra_repr()),
                expected: "start_dim <= end_dim".into(),
                actual: x.shape().to_vec(),
            });
        }
        let mut out = x.shape()[..s].to_vec();
        // a zero dim elsewhere lets the other dims be anything: checked, never wrapped
        let flat = &x.shape()[s..=e];
        out.push(crate::shape::checked_numel("flatten", flat)?);
        out.extend_from_slice(&x.shape()[e + 1..]);
        x.reshape(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_grad;
    use crate::ModuleExt;

    #[test]
    fn shapes() -> Result<()> {
        let x = Tensor::zeros(&[2, 3, 4]);
        assert_eq!(Flatten::new().forward(&x)?.shape(), &[2, 12]);
        assert_eq!(Flatten::range(0, -1).forward(&x)?.shape(), &[24]);
        assert_eq!(Flatten::range(-2, -1).forward(&x)?.shape(), &[2, 12]);
        assert_eq!(Flatten::range(0, 1).forward(&x)?.shape(), &[6, 4]);
        assert_eq!(
            Flatten::new().forward(&Tensor::zeros(&[5, 7]))?.shape(),
            &[5, 7]
        );
        assert_eq!(Flatten::new().forward(&Tensor::scalar(1.0))?.shape(), &[1]);
        let err = Flatten::new().forward(&Tensor::zeros(&[5])).err();
        assert!(err.is_some_and(|e| e.to_string().contains("Flatten(start_dim=1")));
        let err = Flatten::range(2, 1).forward(&x).err();
        assert!(err.is_some());
        assert_eq!(Flatten::new().repr(), "Flatten(start_dim=1, end_dim=-1)");
        Ok(())
    }

    #[test]
    fn gradient_reshapes_back() -> Result<()> {
        check_grad(&[&[2, 3, 2]], |xs| Flatten::new().forward(&xs[0]))
    }
}
