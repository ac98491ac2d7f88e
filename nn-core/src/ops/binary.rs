//! Elementwise binary ops with NumPy broadcasting, and their scalar forms.
//!
//! d(a+b) = da + db; d(a-b) = da - db; d(ab) = b da + a db; d(a/b) = da/b - a db/b^2;
//! maximum/minimum route the gradient to the selected operand (ties go to `a`).
//! Gradients of broadcast operands are summed back to the operand's shape.
//! Mixed dtypes promote i64 to f32, as PyTorch does for int-float arithmetic.

use super::same_device;
use crate::autograd::{backward_fn, record};
use crate::backend::{BinaryOp, UnaryOp};
use crate::shape::broadcast_shapes;
use crate::{DType, Result, Tensor};

impl Tensor {
    pub(crate) fn binary_op(
        &self,
        rhs: &Tensor,
        op: BinaryOp,
        name: &'static str,
    ) -> Result<Tensor> {
        if op.is_comparison() {
            return self.compare_op(rhs, op, name);
        }
        same_device(name, self, rhs)?;
        if self.dtype() != rhs.dtype() {
            let (a, b) = (self.to_dtype(DType::F32)?, rhs.to_dtype(DType::F32)?);
            return a.binary_op(&b, op, name);
        }
        let out = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let storage =
            self.storage()
                .binary(op, self.shape(), rhs.storage().as_ref(), rhs.shape(), &out)?;
        if self.dtype() != DType::F32 {
            return Ok(Tensor::leaf(storage, out));
        }
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(record(storage, out, &[self, rhs], name, move || {
            backward_fn(move |inp, g| {
                let (a, b) = (&inp[0], &inp[1]);
                let (ga, gb) = match op {
                    BinaryOp::Add => (g.clone(), g.clone()),
                    BinaryOp::Sub => (g.clone(), g.neg()?),
                    BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
                    BinaryOp::Div => {
                        let ga = g.div(b)?;
                        // d(a/b)/db = -a/b^2 = -(a/b)/b
                        let gb = ga.mul(a)?.div(b)?.neg()?;
                        (ga, gb)
                    }
                    BinaryOp::Maximum | BinaryOp::Minimum => {
                        let pick_a = if op == BinaryOp::Maximum {
                            a.ge(b)?
                        } else {
                            a.le(b)?
                        };
                        let zero = Tensor::zeros(&[]).to_device(&g.device())?;
                        (
                            Tensor::where_cond(&pick_a, g, &zero)?,
                            Tensor::where_cond(&pick_a, &zero, g)?,
                        )
                    }
                    _ => unreachable_grad(),
                };
                Ok(vec![
                    if a.requires_grad() {
                        Some(ga.sum_to(&sa)?)
                    } else {
                        None
                    },
                    if b.requires_grad() {
                        Some(gb.sum_to(&sb)?)
                    } else {
                        None
                    },
                ])
            })
        }))
    }

    /// `self + rhs` with broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Add, "add")
    }
    /// `self - rhs` with broadcasting.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Sub, "sub")
    }
    /// `self * rhs` (elementwise) with broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Mul, "mul")
    }
    /// `self / rhs` (elementwise) with broadcasting.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Div, "div")
    }
    /// Elementwise maximum with broadcasting.
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Maximum, "maximum")
    }
    /// Elementwise minimum with broadcasting.
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Minimum, "minimum")
    }
    /// `self == rhs` as a `Bool` mask (an i64 0/1 one on a backend without
    /// bool storage); mixed dtypes compare as f32, integers and bools as i64.
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Eq, "eq")
    }
    /// `self != rhs` as a `Bool` mask (an i64 0/1 one on a backend without
    /// bool storage); mixed dtypes compare as f32, integers and bools as i64.
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Ne, "ne")
    }
    /// `self < rhs` as a `Bool` mask (an i64 0/1 one on a backend without
    /// bool storage); mixed dtypes compare as f32, integers and bools as i64.
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Lt, "lt")
    }
    /// `self <= rhs` as a `Bool` mask (an i64 0/1 one on a backend without
    /// bool storage); mixed dtypes compare as f32, integers and bools as i64.
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Le, "le")
    }
    /// `self > rhs` as a `Bool` mask (an i64 0/1 one on a backend without
    /// bool storage); mixed dtypes compare as f32, integers and bools as i64.
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Gt, "gt")
    }
    /// `self >= rhs` as a `Bool` mask (an i64 0/1 one on a backend without
    /// bool storage); mixed dtypes compare as f32, integers and bools as i64.
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_op(rhs, BinaryOp::Ge, "ge")
    }

    fn scalar_like(&self, v: f32) -> Result<Tensor> {
        let s = match self.dtype() {
            DType::F32 => Tensor::scalar(v),
            DType::I64 => Tensor::from_vec(vec![v as i64], &[])?,
            other => Tensor::scalar(v).to_dtype(other)?,
        };
        s.to_device(&self.device())
    }

    /// `self + v`.
    pub fn add_scalar(&self, v: f32) -> Result<Tensor> {
        if self.dtype() == DType::F32 {
            return self.affine(1.0, v);
        }
        self.add(&self.scalar_like(v)?)
    }
    /// `self - v`.
    pub fn sub_scalar(&self, v: f32) -> Result<Tensor> {
        self.add_scalar(-v)
    }
    /// `self * v`.
    pub fn mul_scalar(&self, v: f32) -> Result<Tensor> {
        if self.dtype() == DType::F32 {
            return self.affine(v, 0.0);
        }
        self.mul(&self.scalar_like(v)?)
    }
    /// `self / v`.
    pub fn div_scalar(&self, v: f32) -> Result<Tensor> {
        self.mul_scalar(1.0 / v)
    }
    /// `self > v` as a `Bool` mask.
    pub fn gt_scalar(&self, v: f32) -> Result<Tensor> {
        self.gt(&self.scalar_like(v)?)
    }
    /// `self < v` as a `Bool` mask.
    pub fn lt_scalar(&self, v: f32) -> Result<Tensor> {
        self.lt(&self.scalar_like(v)?)
    }
    /// `self == v` as a `Bool` mask.
    pub fn eq_scalar(&self, v: f32) -> Result<Tensor> {
        self.eq(&self.scalar_like(v)?)
    }
    /// `self != v` as a `Bool` mask.
    pub fn ne_scalar(&self, v: f32) -> Result<Tensor> {
        self.ne(&self.scalar_like(v)?)
    }
    /// `self >= v` as a `Bool` mask.
    pub fn ge_scalar(&self, v: f32) -> Result<Tensor> {
        self.ge(&self.scalar_like(v)?)
    }
    /// `self <= v` as a `Bool` mask.
    pub fn le_scalar(&self, v: f32) -> Result<Tensor> {
        self.le(&self.scalar_like(v)?)
    }

    /// `self * mul + add` in one pass (f32).
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        self.unary_op(UnaryOp::Affine { mul, add }, "affine")
    }
}

fn unreachable_grad() -> (Tensor, Tensor) {
    // comparisons return before recording a node, so this arm is never taken
    (Tensor::scalar(0.0), Tensor::scalar(0.0))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, fixture_case};
    use crate::{Result, Tensor};

    #[test]
    fn broadcast_add_values() -> Result<()> {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
        let b = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3])?;
        assert_eq!(
            a.add(&b)?.to_vec::<f32>()?,
            vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
        );
        let c = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1])?;
        assert_eq!(
            a.sub(&c)?.to_vec::<f32>()?,
            vec![0.0, 1.0, 2.0, 2.0, 3.0, 4.0]
        );
        Ok(())
    }

    #[test]
    fn shape_mismatch_is_an_error_naming_both_shapes() {
        let a = Tensor::zeros(&[2, 3]);
        let b = Tensor::zeros(&[4]);
        let e = a.add(&b).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains("[2, 3]") && e.contains("[4]") && e.contains("add"),
            "{e}"
        );
    }

    #[test]
    fn mul_hand_derived() -> Result<()> {
        // d(sum(a*b))/da = b, /db = a
        let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?.with_requires_grad(true);
        let b = Tensor::from_vec(vec![3.0f32, 4.0], &[2])?.with_requires_grad(true);
        a.mul(&b)?.sum()?.backward()?;
        assert_eq!(
            a.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![3.0, 4.0])
        );
        assert_eq!(
            b.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![1.0, 2.0])
        );
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        let shapes: [(&[usize], &[usize]); 3] =
            [(&[3, 4], &[4]), (&[2, 1, 4], &[3, 1]), (&[3], &[3])];
        for (sa, sb) in shapes {
            check_grad(&[sa, sb], |x| x[0].add(&x[1]))?;
            check_grad(&[sa, sb], |x| x[0].sub(&x[1]))?;
            check_grad(&[sa, sb], |x| x[0].mul(&x[1]))?;
            check_grad(&[sa, sb], |x| x[0].div(&x[1].abs()?.add_scalar(0.5)?))?;
            check_grad(&[sa, sb], |x| x[0].maximum(&x[1]))?;
            check_grad(&[sa, sb], |x| x[0].minimum(&x[1]))?;
        }
        check_grad(&[&[3, 4]], |x| x[0].affine(2.5, -1.0))?;
        check_grad(&[&[3, 4]], |x| x[0].mul_scalar(3.0)?.add_scalar(1.0))?;
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        fixture_case("add_broadcast", |x| x[0].add(&x[1]))?;
        fixture_case("sub_broadcast", |x| x[0].sub(&x[1]))?;
        fixture_case("mul_broadcast", |x| x[0].mul(&x[1]))?;
        fixture_case("div", |x| x[0].div(&x[1]))?;
        Ok(())
    }

    #[test]
    fn comparisons_give_bool_masks() -> Result<()> {
        let a = Tensor::from_vec(vec![1.0f32, 5.0, 3.0], &[3])?;
        let m = a.gt_scalar(2.0)?;
        assert_eq!(m.dtype(), crate::DType::Bool);
        assert_eq!(m.to_vec::<bool>()?, vec![false, true, true]);
        // bool * float promotes
        assert_eq!(m.mul(&a)?.to_vec::<f32>()?, vec![0.0, 5.0, 3.0]);
        Ok(())
    }
}
