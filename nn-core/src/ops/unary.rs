//! Elementwise unary ops.
//!
//! Derivatives: -x -> -1; e^x -> e^x; ln x -> 1/x; |x| -> sign(x); sqrt x -> 1/(2 sqrt x);
//! relu -> step(x); sigmoid s -> s(1-s); tanh t -> 1-t^2; x^e -> e x^(e-1);
//! a x + b -> a.
//! NOTE: relu's derivative at exactly 0 is taken as 0 (PyTorch's convention); abs' as 0.

use crate::autograd::{backward_fn, record};
use crate::backend::UnaryOp;
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    pub(crate) fn unary_op(&self, op: UnaryOp, name: &'static str) -> Result<Tensor> {
        if self.dtype() != DType::F32 {
            return Err(Error::DType {
                op: name,
                dtype: self.dtype(),
                expected: Some(DType::F32),
            });
        }
        let storage = self.storage().unary(op)?;
        let (saved, shape) = (storage.clone(), self.shape_dims());
        Ok(record(
            storage,
            self.shape_dims(),
            &[self],
            name,
            move || {
                // The output, detached: saved for ops whose derivative is written with it.
                let y = Tensor::leaf(saved, shape);
                backward_fn(move |inp, g| {
                    let x = &inp[0];
                    let d = match op {
                        UnaryOp::Neg => g.neg()?,
                        UnaryOp::Exp => g.mul(&y)?,
                        UnaryOp::Log => g.div(x)?,
                        UnaryOp::Abs => g.mul(&x.unary_op(UnaryOp::Sign, "sign")?)?,
                        UnaryOp::Sqrt => g.div(&y.mul_scalar(2.0)?)?,
                        UnaryOp::Relu => {
                            let gs = x.storage().relu_backward(g.storage().as_ref())?;
                            Tensor::leaf(gs, g.shape_dims())
                        }
                        UnaryOp::Sigmoid => g.mul(&y.mul(&y.affine(-1.0, 1.0)?)?)?,
                        UnaryOp::Tanh => g.mul(&y.mul(&y)?.affine(-1.0, 1.0)?)?,
                        // d x^2 = 2x: one pass, not a powf and a scale
                        UnaryOp::Powf(2.0) => g.mul(&x.mul_scalar(2.0)?)?,
                        UnaryOp::Powf(e) => g.mul(&x.powf(e - 1.0)?.mul_scalar(e)?)?,
                        UnaryOp::Affine { mul, .. } => g.mul_scalar(mul)?,
                        // piecewise constant: zero gradient
                        UnaryOp::Sign | UnaryOp::Step => g.mul_scalar(0.0)?,
                        // 2/sqrt(pi) e^(-x^2)
                        UnaryOp::Erf => g.mul(
                            &x.square()?
                                .neg()?
                                .exp()?
                                .mul_scalar(std::f32::consts::FRAC_2_SQRT_PI)?,
                        )?,
                    };
                    Ok(vec![Some(d)])
                })
            },
        ))
    }

    /// `-self`.
    pub fn neg(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Neg, "neg")
    }
    /// `e^self`.
    pub fn exp(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Exp, "exp")
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Log, "log")
    }
    /// Absolute value.
    pub fn abs(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Abs, "abs")
    }
    /// Square root.
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Sqrt, "sqrt")
    }
    /// `max(self, 0)`.
    pub fn relu(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Relu, "relu")
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Sigmoid, "sigmoid")
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Tanh, "tanh")
    }
    /// Sign in {-1, 0, 1} (zero gradient).
    pub fn sign(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Sign, "sign")
    }
    /// `self^e` for a scalar exponent.
    pub fn powf(&self, e: f32) -> Result<Tensor> {
        self.unary_op(UnaryOp::Powf(e), "pow")
    }
    /// `self^e` for a tensor exponent (broadcast), as `exp(e ln self)`; `self` must be positive.
    pub fn pow(&self, e: &Tensor) -> Result<Tensor> {
        self.log()?.mul(e)?.exp()
    }
    /// `self^2`.
    pub fn square(&self) -> Result<Tensor> {
        self.powf(2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, check_grad_positive, fixture_case};
    use crate::{Result, Tensor};

    #[test]
    fn grads_finite_difference() -> Result<()> {
        let s: &[usize] = &[3, 4];
        check_grad(&[s], |x| x[0].neg())?;
        check_grad(&[s], |x| x[0].exp())?;
        check_grad(&[s], |x| x[0].abs())?;
        check_grad(&[s], |x| x[0].relu())?;
        check_grad(&[s], |x| x[0].sigmoid())?;
        check_grad(&[s], |x| x[0].tanh())?;
        check_grad(&[s], |x| x[0].powf(3.0))?;
        check_grad(&[s], |x| x[0].square())?;
        check_grad_positive(&[s], |x| x[0].log())?;
        check_grad_positive(&[s], |x| x[0].sqrt())?;
        check_grad_positive(&[s], |x| x[0].powf(1.5))?;
        check_grad_positive(&[s, s], |x| x[0].pow(&x[1]))?;
        Ok(())
    }

    #[test]
    fn sigmoid_hand_derived() -> Result<()> {
        // sigmoid(0) = 1/2, sigmoid'(0) = 1/2 * (1 - 1/2) = 1/4
        let x = Tensor::zeros(&[1]).with_requires_grad(true);
        x.sigmoid()?.sum()?.backward()?;
        let g = x.grad().map(|g| g.to_vec::<f32>()).transpose()?;
        assert_eq!(g, Some(vec![0.25]));
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        fixture_case("neg", |x| x[0].neg())?;
        fixture_case("relu", |x| x[0].relu())?;
        fixture_case("sigmoid", |x| x[0].sigmoid())?;
        fixture_case("tanh", |x| x[0].tanh())?;
        fixture_case("exp", |x| x[0].exp())?;
        fixture_case("log", |x| x[0].log())?;
        fixture_case("abs", |x| x[0].abs())?;
        fixture_case("pow3", |x| x[0].powf(3.0))?;
        fixture_case("sqrt", |x| x[0].sqrt())?;
        fixture_case("scalar_affine", |x| x[0].mul_scalar(2.5)?.add_scalar(1.0))?;
        Ok(())
    }
}
