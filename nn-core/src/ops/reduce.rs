//! Reductions: sum, mean, max, min (all elements or over axes, with keepdim), argmax.
//!
//! d sum = broadcast of the upstream gradient; d mean = that / count; d max routes the
//! gradient to the positions equal to the max, split evenly between ties (PyTorch's
//! `amax` convention).

use crate::autograd::{backward_fn, record};
use crate::backend::ReduceOp;
use crate::shape::{axis as resolve_axis, Dims};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    fn reduce_op(&self, op: ReduceOp, axes: &[usize], name: &'static str) -> Result<Tensor> {
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        if let Some(&a) = axes.iter().find(|&&a| a >= self.rank()) {
            return Err(Error::bad_shape(
                name,
                self.shape(),
                format!("axis {a} out of range"),
            ));
        }
        if matches!(op, ReduceOp::Max | ReduceOp::Min) && axes.iter().any(|&a| self.shape()[a] == 0)
        {
            return Err(Error::bad_shape(
                name,
                self.shape(),
                "reduction over an empty axis",
            ));
        }
        let storage = self.storage().reduce(op, self.shape(), &axes)?;
        let mut out: Dims = self.shape_dims();
        for &a in &axes {
            out[a] = 1;
        }
        if op == ReduceOp::ArgMax || self.dtype() != DType::F32 {
            return Ok(Tensor::leaf(storage, out));
        }
        let result = Tensor::leaf(storage.clone(), out.clone());
        Ok(record(storage, out, &[self], name, move || {
            let y = result;
            backward_fn(move |inp, g| {
                let x = &inp[0];
                let d = match op {
                    ReduceOp::Sum => g.broadcast_as(x.shape())?,
                    _ => {
                        // gradient to the arg-extremes, split between ties
                        let mask = x.eq(&y)?.to_dtype(DType::F32)?;
                        let count = mask.sum_axes_keepdim(&axes)?;
                        mask.mul(&g.div(&count)?)?
                    }
                };
                Ok(vec![Some(d)])
            })
        }))
    }

    /// Sum over `axes`, keeping them as size-1 dims.
    pub fn sum_axes_keepdim(&self, axes: &[usize]) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Sum, axes, "sum")
    }

    /// Sum of all elements (a 0-d tensor).
    pub fn sum_all(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum_axes_keepdim(&axes)?.reshape(&[])
    }

    /// Sum over one axis (negative counts from the end).
    pub fn sum(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = resolve_axis("sum", self.shape(), axis)?;
        self.sum_axes_keepdim(&[a])?.drop_dim(a, keepdim)
    }

    /// Mean of all elements.
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.numel().max(1) as f32;
        self.sum_all()?.mul_scalar(1.0 / n)
    }

    /// Mean over one axis.
    pub fn mean(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = resolve_axis("mean", self.shape(), axis)?;
        let n = self.shape()[a].max(1) as f32;
        self.sum(axis, keepdim)?.mul_scalar(1.0 / n)
    }

    /// Maximum over one axis.
    pub fn max(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = resolve_axis("max", self.shape(), axis)?;
        self.reduce_op(ReduceOp::Max, &[a], "max")?
            .drop_dim(a, keepdim)
    }

    /// Maximum over `axes`, kept as size-1 dims.
    pub fn max_axes_keepdim(&self, axes: &[usize]) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Max, axes, "max")
    }

    /// Maximum of all elements.
    pub fn max_all(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.reduce_op(ReduceOp::Max, &axes, "max")?.reshape(&[])
    }

    /// Minimum over one axis.
    pub fn min(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = resolve_axis("min", self.shape(), axis)?;
        self.reduce_op(ReduceOp::Min, &[a], "min")?
            .drop_dim(a, keepdim)
    }

    /// Minimum of all elements.
    pub fn min_all(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.reduce_op(ReduceOp::Min, &axes, "min")?.reshape(&[])
    }

    /// Index of the maximum along one axis (i64; no gradient).
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = resolve_axis("argmax", self.shape(), axis)?;
        if self.shape()[a] == 0 {
            return Err(Error::bad_shape("argmax", self.shape(), "empty axis"));
        }
        self.reduce_op(ReduceOp::ArgMax, &[a], "argmax")?
            .drop_dim(a, keepdim)
    }

    fn drop_dim(self, a: usize, keepdim: bool) -> Result<Tensor> {
        if keepdim {
            return Ok(self);
        }
        let mut s = self.shape().to_vec();
        s.remove(a);
        self.reshape(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, fixture_case};
    use crate::{Result, Tensor};

    #[test]
    fn values() -> Result<()> {
        let x = Tensor::from_vec(vec![1.0f32, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3])?;
        assert_eq!(x.sum(1, false)?.to_vec::<f32>()?, vec![9.0, 12.0]);
        assert_eq!(x.sum(0, true)?.shape(), &[1, 3]);
        assert_eq!(x.max(1, false)?.to_vec::<f32>()?, vec![5.0, 6.0]);
        assert_eq!(x.min(0, false)?.to_vec::<f32>()?, vec![1.0, 2.0, 3.0]);
        assert_eq!(x.argmax(-1, false)?.to_vec::<i64>()?, vec![1, 2]);
        assert_eq!(x.mean_all()?.item()?, 3.5);
        assert!(x.sum(2, false).is_err());
        Ok(())
    }

    #[test]
    fn int_sum_wraps_instead_of_panicking() -> Result<()> {
        let x = Tensor::from_vec(vec![i64::MAX, 1], &[2])?;
        assert_eq!(x.sum_all()?.to_vec::<i64>()?, vec![i64::MIN]);
        Ok(())
    }

    #[test]
    fn mean_hand_derived() -> Result<()> {
        // d mean(x) / dx_i = 1/n
        let x = Tensor::ones(&[4]).set_requires_grad(true);
        x.mean_all()?.backward()?;
        assert_eq!(
            x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![0.25; 4])
        );
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        check_grad(&[&[3, 4, 2]], |x| x[0].sum_all())?;
        check_grad(&[&[3, 4, 2]], |x| x[0].sum(1, true))?;
        check_grad(&[&[3, 4, 2]], |x| x[0].sum_axes_keepdim(&[0, 2]))?;
        check_grad(&[&[3, 4, 2]], |x| x[0].mean(-1, false))?;
        check_grad(&[&[3, 4]], |x| x[0].mean_all())?;
        check_grad(&[&[3, 4]], |x| x[0].max(1, false))?;
        check_grad(&[&[3, 4]], |x| x[0].min(0, true))?;
        check_grad(&[&[3, 4]], |x| x[0].max_all())?;
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        fixture_case("sum_all", |x| x[0].sum_all())?;
        fixture_case("sum_axis1_keepdim", |x| x[0].sum(1, true))?;
        fixture_case("mean_axis0", |x| x[0].mean(0, false))?;
        fixture_case("mean_all", |x| x[0].mean_all())?;
        fixture_case("max_axis1", |x| x[0].max(1, false))?;
        Ok(())
    }
}
