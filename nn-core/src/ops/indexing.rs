//! Gathers and selection: `index_select` and `where_cond`.
//!
//! index_select's adjoint scatters the upstream gradient back, adding where an index
//! repeats (`index_add`). where's gradient goes to the chosen operand per element,
//! summed back to each operand's broadcast shape.

use super::same_device;
use crate::autograd::{backward_fn, record};
use crate::shape::{axis as resolve_axis, broadcast_shapes, checked_numel};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Picks entries along `axis` at the i64 `indices` (1-d; negative counts from the end).
    pub fn index_select(&self, axis: isize, indices: &Tensor) -> Result<Tensor> {
        let a = resolve_axis("index_select", self.shape(), axis)?;
        same_device("index_select", self, indices)?;
        if indices.dtype() != DType::I64 || indices.rank() != 1 {
            return Err(Error::bad_shape(
                "index_select",
                indices.shape(),
                format!(
                    "indices must be a 1-d int64 tensor, got {}",
                    indices.dtype()
                ),
            ));
        }
        let mut out = self.shape_dims();
        out[a] = indices.numel();
        checked_numel("index_select", &out)?;
        let storage = self
            .storage()
            .index_select(self.shape(), a, indices.storage().as_ref())?;
        let (idx, full) = (indices.clone(), self.shape_dims());
        Ok(record(storage, out, &[self], "index_select", move || {
            backward_fn(move |_, g| {
                let s = g
                    .storage()
                    .index_add(g.shape(), a, idx.storage().as_ref(), &full)?;
                Ok(vec![Some(Tensor::from_storage(s, &full)?)])
            })
        }))
    }

    /// `cond ? on_true : on_false` elementwise, with broadcasting (PyTorch's
    /// `torch.where`); `cond` is a `Bool` mask as the comparisons return, or a `U8` or
    /// i64 one (nonzero = true); a float `cond` counts nonzero as true.
    pub fn where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        same_device("where", cond, on_true)?;
        same_device("where", on_true, on_false)?;
        // masks go to the backend as they are; numbers become "nonzero" masks
        let cond = match cond.dtype() {
            DType::I64 | DType::Bool | DType::U8 => cond.clone(),
            _ => cond.ne_scalar(0.0)?,
        };
        if on_true.dtype() != on_false.dtype() {
            return Tensor::where_cond(
                &cond,
                &on_true.to_dtype(DType::F32)?,
                &on_false.to_dtype(DType::F32)?,
            );
        }
        let ab = broadcast_shapes("where", on_true.shape(), on_false.shape())?;
        let out = broadcast_shapes("where", cond.shape(), &ab)?;
        let storage = cond.storage().where_cond(
            cond.shape(),
            on_true.storage().as_ref(),
            on_true.shape(),
            on_false.storage().as_ref(),
            on_false.shape(),
            &out,
        )?;
        if on_true.dtype() != DType::F32 {
            return Ok(Tensor::leaf(storage, out));
        }
        let (sa, sb) = (on_true.shape().to_vec(), on_false.shape().to_vec());
        Ok(record(
            storage,
            out,
            &[on_true, on_false],
            "where",
            move || {
                backward_fn(move |inp, g| {
                    let zero = Tensor::zeros(&[]).to_device(&g.device())?;
                    let ga = if inp[0].requires_grad() {
                        Some(Tensor::where_cond(&cond, g, &zero)?.sum_to(&sa)?)
                    } else {
                        None
                    };
                    let gb = if inp[1].requires_grad() {
                        Some(Tensor::where_cond(&cond, &zero, g)?.sum_to(&sb)?)
                    } else {
                        None
                    };
                    Ok(vec![ga, gb])
                })
            },
        ))
    }

    /// Row `i` along the first dim (PyTorch's `x[i]`), negative counts from the end.
    pub fn get(&self, i: i64) -> Result<Tensor> {
        let idx = Tensor::from_vec(vec![i], &[1])?.to_device(&self.device())?;
        self.index_select(0, &idx)?.squeeze(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use crate::{Result, Tensor};

    #[test]
    fn values_and_errors() -> Result<()> {
        let x = Tensor::arange(0, 6).reshape(&[3, 2])?;
        let idx = Tensor::from_vec(vec![2i64, 0, 2], &[3])?;
        assert_eq!(
            x.index_select(0, &idx)?.to_vec::<i64>()?,
            vec![4, 5, 0, 1, 4, 5]
        );
        let bad = Tensor::from_vec(vec![3i64], &[1])?;
        let e = x
            .index_select(0, &bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("index 3 out of range for size 3"), "{e}");
        assert_eq!(x.get(-1)?.to_vec::<i64>()?, vec![4, 5]);
        Ok(())
    }

    #[test]
    fn index_select_hand_derived() -> Result<()> {
        // picking row 0 twice gives it gradient 2
        let x = Tensor::zeros(&[2, 2]).with_requires_grad(true);
        let idx = Tensor::from_vec(vec![0i64, 0], &[2])?;
        x.index_select(0, &idx)?.sum()?.backward()?;
        assert_eq!(
            x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![2.0, 2.0, 0.0, 0.0])
        );
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        let idx = Tensor::from_vec(vec![1i64, 3, 1], &[3])?;
        check_grad(&[&[4, 3]], |x| x[0].index_select(0, &idx))?;
        check_grad(&[&[2, 4]], |x| x[0].index_select(1, &idx))?;
        check_grad(&[&[3, 4], &[4]], |x| {
            let m = x[0].gt_scalar(0.0)?;
            Tensor::where_cond(&m, &x[0], &x[1])
        })?;
        Ok(())
    }
}
