//! Reductions, named as in PyTorch: `sum()`, `mean()`, `max()`, `min()` reduce every
//! element; `sum_dim(dim, keepdim)`, `mean_dim`, `max_dim`, `min_dim` one dim; `amax` /
//! `amin` a set of dims; `argmax`.
//!
//! d sum = broadcast of the upstream gradient; d mean = that / count. For the extremes,
//! as in PyTorch: `max_dim` / `min_dim` (PyTorch's `max(dim).values`, which pick one index
//! per slice, the first extreme, as `argmax` does) route the gradient to that index only;
//! `amax` / `amin` and the full `max()` / `min()` split it evenly between ties.

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
        let mut out: Dims = self.shape_dims();
        for &a in &axes {
            out[a] = 1;
        }
        // [0, usize::MAX] holds nothing, but its sum over dim 0 would hold usize::MAX
        crate::shape::checked_numel(name, &out)?;
        let storage = self.storage().reduce(op, self.shape(), &axes)?;
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
    pub fn sum(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum_axes_keepdim(&axes)?.reshape(&[])
    }

    /// Sum over one axis (negative counts from the end).
    pub fn sum_dim(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let a = resolve_axis("sum", self.shape(), axis)?;
        self.sum_axes_keepdim(&[a])?.drop_dim(a, keepdim)
    }

    fn check_float(&self, op: &'static str) -> Result<()> {
        if self.dtype() != DType::F32 {
            return Err(Error::DType {
                op,
                dtype: self.dtype(),
                expected: Some(DType::F32),
            });
        }
        Ok(())
    }

    /// Mean of all elements (f32; NaN for an empty tensor, as in PyTorch). An i64 tensor
    /// is an error, as in PyTorch: convert with `to_dtype(DType::F32)` first.
    pub fn mean(&self) -> Result<Tensor> {
        self.check_float("mean")?;
        // 0 elements: 0 * (1/0) = NaN
        self.sum()?.mul_scalar(1.0 / self.numel() as f32)
    }

    /// Mean over one axis (f32; NaN over an empty axis).
    pub fn mean_dim(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.check_float("mean")?;
        let a = resolve_axis("mean", self.shape(), axis)?;
        let n = self.shape()[a] as f32;
        self.sum_dim(axis, keepdim)?.mul_scalar(1.0 / n)
    }

    /// Maximum over one axis: the values of PyTorch's `max(dim)`. The gradient goes to
    /// the one index [`Tensor::argmax`] returns (the first maximum of each slice), as
    /// PyTorch routes `max(dim).values`; [`Tensor::amax`] splits it between ties instead.
    pub fn max_dim(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.extreme_at_index(axis, keepdim, ReduceOp::Max, "max")
    }

    /// Maximum over `axes` (negative counts from the end), PyTorch's `amax`: the gradient
    /// is split evenly between the positions that tie for the maximum.
    pub fn amax(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme_even(axes, keepdim, ReduceOp::Max, "amax")
    }

    /// Minimum over `axes`, PyTorch's `amin` (gradient split between ties).
    pub fn amin(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extreme_even(axes, keepdim, ReduceOp::Min, "amin")
    }

    fn extreme_even(
        &self,
        axes: &[isize],
        keepdim: bool,
        op: ReduceOp,
        name: &'static str,
    ) -> Result<Tensor> {
        let mut resolved = axes
            .iter()
            .map(|&a| resolve_axis(name, self.shape(), a))
            .collect::<Result<Vec<_>>>()?;
        resolved.sort_unstable();
        resolved.dedup();
        let r = self.reduce_op(op, &resolved, name)?;
        if keepdim {
            return Ok(r);
        }
        let kept: Vec<usize> = (0..self.rank())
            .filter(|a| !resolved.contains(a))
            .map(|a| self.shape()[a])
            .collect();
        r.reshape(&kept)
    }

    /// `max(dim)` / `min(dim)`: values whose gradient flows to the argmax/argmin index.
    fn extreme_at_index(
        &self,
        axis: isize,
        keepdim: bool,
        op: ReduceOp,
        name: &'static str,
    ) -> Result<Tensor> {
        let a = resolve_axis(name, self.shape(), axis)?;
        if self.dtype() != DType::F32 || !self.requires_grad() || !crate::is_grad_enabled() {
            return self.reduce_op(op, &[a], name)?.drop_dim(a, keepdim);
        }
        if self.shape()[a] == 0 {
            return Err(Error::bad_shape(
                name,
                self.shape(),
                "reduction over an empty axis",
            ));
        }
        // values = x gathered at the index (flat positions `(o * red + picked) * inner +
        // i`), so d values / d x is index_select's adjoint: one 1 per slice. A gather, not
        // a one-hot mask times x: no full-size mask and no 0 * inf NaN (max pooling's
        // padding is -inf).
        let picked = match op {
            ReduceOp::Min => self.neg()?.argmax(a as isize, true)?,
            _ => self.argmax(a as isize, true)?,
        };
        let shape = self.shape();
        let (outer, inner) = crate::shape::outer_inner(shape, a);
        let red = shape[a];
        let base: Vec<i64> = (0..outer)
            .flat_map(|o| (0..inner).map(move |i| (o * red * inner + i) as i64))
            .collect();
        let base = Tensor::from_vec(base, picked.shape())?.to_device(&self.device())?;
        let stride = Tensor::from_vec(vec![inner as i64], &[])?.to_device(&self.device())?;
        let flat = picked.mul(&stride)?.add(&base)?;
        let len = flat.numel();
        self.reshape(&[self.numel()])?
            .index_select(0, &flat.reshape(&[len])?)?
            .reshape(picked.shape())?
            .drop_dim(a, keepdim)
    }

    /// Maximum over `axes`, kept as size-1 dims.
    pub fn max_axes_keepdim(&self, axes: &[usize]) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Max, axes, "max")
    }

    /// Maximum of all elements (the gradient is split evenly between ties, as for
    /// PyTorch's full `x.max()`).
    pub fn max(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.reduce_op(ReduceOp::Max, &axes, "max")?.reshape(&[])
    }

    /// Minimum over one axis: PyTorch's `min(dim).values`, the gradient going to the
    /// first minimum of each slice (see [`Tensor::max_dim`]).
    pub fn min_dim(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.extreme_at_index(axis, keepdim, ReduceOp::Min, "min")
    }

    /// Minimum of all elements (gradient split between ties).
    pub fn min(&self) -> Result<Tensor> {
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
        assert_eq!(x.sum_dim(1, false)?.to_vec::<f32>()?, vec![9.0, 12.0]);
        assert_eq!(x.sum_dim(0, true)?.shape(), &[1, 3]);
        assert_eq!(x.max_dim(1, false)?.to_vec::<f32>()?, vec![5.0, 6.0]);
        assert_eq!(x.min_dim(0, false)?.to_vec::<f32>()?, vec![1.0, 2.0, 3.0]);
        assert_eq!(x.argmax(-1, false)?.to_vec::<i64>()?, vec![1, 2]);
        assert_eq!(x.mean()?.item()?, 3.5);
        assert!(x.sum_dim(2, false).is_err());
        Ok(())
    }

    #[test]
    fn max_dim_routes_to_the_index_and_amax_splits_ties() -> Result<()> {
        // PyTorch 2.15: x = [[1, 3, 3], [2, 2, 1]]
        //   x.max(1).values.sum().backward() -> [[0, 1, 0], [1, 0, 0]]
        //   x.amax(1).sum().backward()       -> [[0, .5, .5], [.5, .5, 0]]
        //   x.min(0).values.sum().backward() -> [[1, 0, 0], [0, 1, 1]]
        let data = vec![1.0f32, 3.0, 3.0, 2.0, 2.0, 1.0];
        let grad_of = |f: &dyn Fn(&Tensor) -> Result<Tensor>| -> Result<Vec<f32>> {
            let x = Tensor::from_vec(data.clone(), &[2, 3])?.with_requires_grad(true);
            f(&x)?.sum()?.backward()?;
            x.grad()
                .map(|g| g.to_vec::<f32>())
                .transpose()?
                .ok_or_else(|| crate::Error::custom("x has no gradient"))
        };
        assert_eq!(grad_of(&|x| x.max_dim(1, false))?, [0., 1., 0., 1., 0., 0.]);
        assert_eq!(
            grad_of(&|x| x.amax(&[1], false))?,
            [0., 0.5, 0.5, 0.5, 0.5, 0.]
        );
        assert_eq!(grad_of(&|x| x.min_dim(0, false))?, [1., 0., 0., 0., 1., 1.]);
        assert_eq!(
            grad_of(&|x| x.amin(&[-1, 0], true))?,
            [0.5, 0., 0., 0., 0., 0.5]
        );
        let x = Tensor::from_vec(data, &[2, 3])?;
        assert_eq!(x.max_dim(1, false)?.to_vec::<f32>()?, [3., 2.]);
        assert_eq!(x.amax(&[0, 1], false)?.shape(), &[] as &[usize]);
        assert_eq!(x.amax(&[-1], true)?.shape(), &[2, 1]);
        assert!(x.amax(&[2], false).is_err());
        Ok(())
    }

    #[test]
    fn mean_of_empty_is_nan_and_of_ints_is_an_error() -> Result<()> {
        assert!(Tensor::zeros(&[0]).mean()?.item()?.is_nan());
        let m = Tensor::zeros(&[2, 0]).mean_dim(1, false)?;
        assert_eq!(m.shape(), &[2]);
        assert!(m.to_vec::<f32>()?.iter().all(|v| v.is_nan()));
        assert!(matches!(
            Tensor::arange(0, 4).mean(),
            Err(crate::Error::DType { op: "mean", .. })
        ));
        assert!(Tensor::arange(0, 4).mean_dim(0, false).is_err());
        Ok(())
    }

    #[test]
    fn int_sum_wraps_instead_of_panicking() -> Result<()> {
        let x = Tensor::from_vec(vec![i64::MAX, 1], &[2])?;
        assert_eq!(x.sum()?.to_vec::<i64>()?, vec![i64::MIN]);
        Ok(())
    }

    #[test]
    fn mean_hand_derived() -> Result<()> {
        // d mean(x) / dx_i = 1/n
        let x = Tensor::ones(&[4]).with_requires_grad(true);
        x.mean()?.backward()?;
        assert_eq!(
            x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![0.25; 4])
        );
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        check_grad(&[&[3, 4, 2]], |x| x[0].sum())?;
        check_grad(&[&[3, 4, 2]], |x| x[0].sum_dim(1, true))?;
        check_grad(&[&[3, 4, 2]], |x| x[0].sum_axes_keepdim(&[0, 2]))?;
        check_grad(&[&[3, 4, 2]], |x| x[0].mean_dim(-1, false))?;
        check_grad(&[&[3, 4]], |x| x[0].mean())?;
        check_grad(&[&[3, 4]], |x| x[0].max_dim(1, false))?;
        check_grad(&[&[3, 4]], |x| x[0].min_dim(0, true))?;
        check_grad(&[&[3, 4]], |x| x[0].max())?;
        check_grad(&[&[3, 4, 2]], |x| x[0].amax(&[0, 2], true))?;
        check_grad(&[&[3, 4]], |x| x[0].amin(&[-1], false))?;
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        fixture_case("sum_all", |x| x[0].sum())?;
        fixture_case("sum_axis1_keepdim", |x| x[0].sum_dim(1, true))?;
        fixture_case("mean_axis0", |x| x[0].mean_dim(0, false))?;
        fixture_case("mean_all", |x| x[0].mean())?;
        fixture_case("max_axis1", |x| x[0].max_dim(1, false))?;
        Ok(())
    }
}
