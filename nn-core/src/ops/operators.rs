//! Arithmetic operators on tensors: `+ - * /` between tensors (with broadcasting) and
//! with `f32` scalars on either side, and unary `-`; on masks the logical `& | ^ !`
//! ([`Tensor::logical_and`], [`Tensor::logical_or`], [`Tensor::logical_xor`],
//! [`Tensor::logical_not`]).
//!
//! Every operator returns `Result<Tensor>`, as candle's do, because shapes and devices
//! can disagree: `((&x * 2.5)? + 1.0)?` is PyTorch's `x * 2.5 + 1.0`. They are the
//! methods ([`Tensor::add`], [`Tensor::mul_scalar`] ...) under another name, so their
//! gradients are those of the methods.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::Tensor;
//! let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
//! let y = ((&x * 2.5)? + 1.0)?;
//! assert_eq!(y.to_vec::<f32>()?, vec![3.5, 6.0]);
//! let z = ((1.0 - &y)? / &x)?;
//! assert_eq!(z.to_vec::<f32>()?, vec![-2.5, -2.5]);
//! assert_eq!((-&x)?.to_vec::<f32>()?, vec![-1.0, -2.0]);
//! assert!((&x + &Tensor::zeros(&[3])).is_err()); // shapes that do not broadcast
//! # Ok::<(), nn::Error>(())
//! ```

use crate::{Result, Tensor};
use std::ops::{Add, BitAnd, BitOr, BitXor, Div, Mul, Neg, Not, Sub};

/// `tensor op tensor` for the four owned/borrowed combinations.
macro_rules! tensor_tensor {
    ($trait:ident, $fn:ident, $method:ident) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$method(self, rhs)
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$method(self, &rhs)
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$method(&self, rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$method(&self, &rhs)
            }
        }
    };
}

/// `tensor op f32` and `f32 op tensor`; `$left` computes `s op t`.
macro_rules! tensor_scalar {
    ($trait:ident, $fn:ident, $scalar:ident, $left:expr) => {
        impl $trait<f32> for &Tensor {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: f32) -> Result<Tensor> {
                Tensor::$scalar(self, rhs)
            }
        }
        impl $trait<f32> for Tensor {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: f32) -> Result<Tensor> {
                Tensor::$scalar(&self, rhs)
            }
        }
        impl $trait<&Tensor> for f32 {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: &Tensor) -> Result<Tensor> {
                let left: fn(f32, &Tensor) -> Result<Tensor> = $left;
                left(self, rhs)
            }
        }
        impl $trait<Tensor> for f32 {
            type Output = Result<Tensor>;
            fn $fn(self, rhs: Tensor) -> Result<Tensor> {
                let left: fn(f32, &Tensor) -> Result<Tensor> = $left;
                left(self, &rhs)
            }
        }
    };
}

/// `s` as a 0-d tensor on `t`'s device, for the non-commutative scalar-left forms.
fn scalar_like(s: f32, t: &Tensor) -> Result<Tensor> {
    Tensor::scalar(s).to_device(&t.device())
}

tensor_tensor!(Add, add, add);
tensor_tensor!(Sub, sub, sub);
tensor_tensor!(Mul, mul, mul);
tensor_tensor!(Div, div, div);
tensor_tensor!(BitAnd, bitand, logical_and);
tensor_tensor!(BitOr, bitor, logical_or);
tensor_tensor!(BitXor, bitxor, logical_xor);
tensor_scalar!(Add, add, add_scalar, |s, t| t.add_scalar(s));
tensor_scalar!(Sub, sub, sub_scalar, |s, t| t.affine(-1.0, s));
tensor_scalar!(Mul, mul, mul_scalar, |s, t| t.mul_scalar(s));
tensor_scalar!(Div, div, div_scalar, |s, t| scalar_like(s, t)?.div(t));

impl Neg for &Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(&self)
    }
}

impl Not for &Tensor {
    type Output = Result<Tensor>;
    fn not(self) -> Result<Tensor> {
        Tensor::logical_not(self)
    }
}

impl Not for Tensor {
    type Output = Result<Tensor>;
    fn not(self) -> Result<Tensor> {
        Tensor::logical_not(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use crate::{Result, Tensor};

    #[test]
    fn operators_equal_the_methods() -> Result<()> {
        let a = Tensor::from_vec(vec![1.0f32, -2.0, 4.0, 0.5, 3.0, -1.5], &[2, 3])?;
        let b = Tensor::from_vec(vec![2.0f32, 0.25, -4.0], &[3])?;
        let same = |x: Tensor, y: Tensor| -> Result<()> {
            assert_eq!(x.shape(), y.shape());
            assert_eq!(x.to_vec::<f32>()?, y.to_vec::<f32>()?);
            Ok(())
        };
        same((&a + &b)?, a.add(&b)?)?;
        same((&a - b.clone())?, a.sub(&b)?)?;
        same((a.clone() * &b)?, a.mul(&b)?)?;
        same((a.clone() / b.clone())?, a.div(&b)?)?;
        same((&a + 1.5)?, a.add_scalar(1.5)?)?;
        same((a.clone() - 1.5)?, a.sub_scalar(1.5)?)?;
        same((&a * 3.0)?, a.mul_scalar(3.0)?)?;
        same((&a / 4.0)?, a.div_scalar(4.0)?)?;
        same((1.5 + &a)?, a.add_scalar(1.5)?)?;
        same((1.5 - &a)?, a.neg()?.add_scalar(1.5)?)?;
        same((3.0 * a.clone())?, a.mul_scalar(3.0)?)?;
        same((2.0 / &b)?, Tensor::full(&[3], 2.0).div(&b)?)?;
        same((-&a)?, a.neg()?)?;
        same((-a.clone())?, a.neg()?)?;
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let (a, b) = (Tensor::zeros(&[2, 3]), Tensor::zeros(&[4]));
        assert!((&a + &b).is_err());
        assert!((&a * &b).is_err());
        assert!((&a / b).is_err());
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        // d/dx of (x * 2.5 + 1) / y - x and d/dy, through the operators
        check_grad(&[&[2, 3], &[3]], |x| {
            let t = (((&x[0] * 2.5)? + 1.0)? / &x[1].abs()?.add_scalar(0.5)?)?;
            t - &x[0]
        })?;
        check_grad(&[&[4]], |x| (2.0 / &x[0].abs()?.add_scalar(1.0)?)? - 1.0)?;
        check_grad(&[&[4]], |x| 3.0 - (-&x[0])?)?;
        Ok(())
    }
}
