//! Shape ops: reshape, squeeze/unsqueeze, permute/transpose, broadcast, narrow, cat,
//! stack, dtype casts.
//!
//! reshape's adjoint is reshape back; permute's is the inverse permutation; narrow's is
//! zero padding back to the input (written as a cat with zeros); cat's is narrow per
//! input; broadcast's is sum_to.

use super::same_device;
use crate::autograd::{backward_fn, record};
use crate::shape::{axis as resolve_axis, broadcast_shapes, checked_numel, Dims};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Same data, new shape (no copy). See [`Tensor::reshape_infer`] for a `-1`-style
    /// inferred dim.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if checked_numel("reshape", shape)? != self.numel() {
            return Err(Error::mismatch("reshape", self.shape(), shape));
        }
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let from = self.shape_dims();
        Ok(record(
            self.storage().clone(),
            Dims::from_slice(shape),
            &[self],
            "reshape",
            move || backward_fn(move |_, g| Ok(vec![Some(g.reshape(&from)?)])),
        ))
    }

    /// Reshape where one entry may be `-1` (inferred), as in PyTorch.
    pub fn reshape_infer(&self, shape: &[isize]) -> Result<Tensor> {
        let bad = || {
            Error::bad_shape(
                "reshape",
                self.shape(),
                format!("cannot reshape to {shape:?}"),
            )
        };
        let known = shape
            .iter()
            .filter(|&&d| d >= 0)
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
            .ok_or_else(bad)?;
        let infer = shape.iter().filter(|&&d| d < 0).count();
        if infer > 1 || (infer == 1 && (known == 0 || !self.numel().is_multiple_of(known))) {
            return Err(bad());
        }
        let dims: Vec<usize> = shape
            .iter()
            .map(|&d| {
                if d < 0 {
                    self.numel() / known.max(1)
                } else {
                    d as usize
                }
            })
            .collect();
        self.reshape(&dims)
    }

    /// Collapses dims `start..` into one (PyTorch's `flatten(start_dim)`; negative
    /// counts from the end).
    pub fn flatten_from(&self, start: isize) -> Result<Tensor> {
        let start = resolve_axis("flatten", self.shape(), start)?;
        let mut s = self.shape()[..start].to_vec();
        s.push(crate::shape::numel(&self.shape()[start..]));
        self.reshape(&s)
    }

    /// Inserts a size-1 dim at `axis`, which may equal the rank; negative counts from the
    /// end of the result (`-1` appends), as in PyTorch.
    pub fn unsqueeze(&self, axis: isize) -> Result<Tensor> {
        let mut s = self.shape().to_vec();
        s.push(1);
        let axis = resolve_axis("unsqueeze", &s, axis)?;
        s.pop();
        s.insert(axis, 1);
        self.reshape(&s)
    }

    /// Removes a size-1 dim at `axis` (negative counts from the end).
    pub fn squeeze(&self, axis: isize) -> Result<Tensor> {
        let axis = resolve_axis("squeeze", self.shape(), axis)?;
        if self.shape()[axis] != 1 {
            return Err(Error::bad_shape(
                "squeeze",
                self.shape(),
                format!("dim {axis} is not of size 1"),
            ));
        }
        let mut s = self.shape().to_vec();
        s.remove(axis);
        self.reshape(&s)
    }

    /// Copy with dims reordered: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::bad_shape(
                "permute",
                self.shape(),
                format!("invalid permutation {perm:?}"),
            ));
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(self.clone());
        }
        let storage = self.storage().permute(self.shape(), perm)?;
        let out: Dims = perm.iter().map(|&p| self.shape()[p]).collect();
        let mut inv = vec![0; r];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(record(storage, out, &[self], "permute", move || {
            backward_fn(move |_, g| Ok(vec![Some(g.permute(&inv)?)]))
        }))
    }

    /// Swaps two dims (negative counts from the end).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let a = resolve_axis("transpose", self.shape(), a)?;
        let b = resolve_axis("transpose", self.shape(), b)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of a 2-d tensor (swaps the last two dims of any tensor of rank >= 2).
    pub fn t(&self) -> Result<Tensor> {
        self.transpose(-2, -1)
    }

    /// Broadcasts to `shape` (a copy).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let out = broadcast_shapes("broadcast_as", self.shape(), shape)?;
        if out.as_slice() != shape {
            return Err(Error::mismatch("broadcast_as", self.shape(), shape));
        }
        checked_numel("broadcast_as", shape)?;
        let zeros = Tensor::try_zeros_dtype(shape, self.dtype())?.to_device(&self.device())?;
        self.add(&zeros)
    }

    /// Conversion to another dtype (f32 <-> i64). Gradients flow through f32 -> f32 only.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if self.dtype() == dtype {
            return Ok(self.clone());
        }
        Ok(Tensor::leaf(self.storage().cast(dtype)?, self.shape_dims()))
    }

    /// `len` entries starting at `start` along `axis` (PyTorch's `narrow`, `x[.., a:b]`).
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let a = resolve_axis("narrow", self.shape(), axis)?;
        let d = self.shape()[a];
        if start.checked_add(len).is_none_or(|e| e > d) {
            return Err(Error::bad_shape(
                "narrow",
                self.shape(),
                format!(
                    "range {start}..{} exceeds dim {a} of size {d}",
                    start.saturating_add(len)
                ),
            ));
        }
        if start == 0 && len == d {
            return Ok(self.clone());
        }
        let storage = self.storage().narrow(self.shape(), a, start, len)?;
        let mut out = self.shape_dims();
        out[a] = len;
        let full = self.shape_dims();
        Ok(record(storage, out, &[self], "narrow", move || {
            backward_fn(move |_, g| {
                let mut parts = Vec::new();
                let mut before = full.to_vec();
                before[a] = start;
                let mut after = full.to_vec();
                after[a] = d - start - len;
                let dev = g.device();
                if start > 0 {
                    parts.push(Tensor::zeros(&before).to_device(&dev)?);
                }
                parts.push(g.clone());
                if after[a] > 0 {
                    parts.push(Tensor::zeros(&after).to_device(&dev)?);
                }
                Ok(vec![Some(Tensor::cat(&parts, a as isize)?)])
            })
        }))
    }

    /// Concatenation along `axis`; all other dims must agree.
    pub fn cat(tensors: &[Tensor], axis: isize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return Err(Error::EmptyInput {
                op: "cat",
                what: "the list of tensors".into(),
            });
        };
        let a = resolve_axis("cat", first.shape(), axis)?;
        let mut out = first.shape_dims();
        out[a] = 0;
        for t in tensors {
            same_device("cat", first, t)?;
            let ok = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (x, y))| i == a || x == y);
            if !ok {
                return Err(Error::mismatch("cat", first.shape(), t.shape()));
            }
            out[a] = out[a]
                .checked_add(t.shape()[a])
                .ok_or_else(|| Error::bad_shape("cat", t.shape(), "concatenated size overflows"))?;
        }
        checked_numel("cat", &out)?;
        if tensors.len() == 1 {
            return Ok(first.clone());
        }
        let others: Vec<(&dyn crate::backend::BackendStorage, &[usize])> = tensors[1..]
            .iter()
            .map(|t| (t.storage().as_ref(), t.shape()))
            .collect();
        let storage = first.storage().cat(first.shape(), &others, a)?;
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[a]).collect();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        Ok(record(storage, out, &refs, "cat", move || {
            backward_fn(move |inp, g| {
                let mut off = 0;
                let mut gs = Vec::with_capacity(sizes.len());
                for (t, &s) in inp.iter().zip(&sizes) {
                    gs.push(if t.requires_grad() {
                        Some(g.narrow(a as isize, off, s)?)
                    } else {
                        None
                    });
                    off += s;
                }
                Ok(gs)
            })
        }))
    }

    /// Stacks equally shaped tensors along a new dim `axis` (negative counts from the
    /// end of the result: `-1` appends a last dim).
    pub fn stack(tensors: &[Tensor], axis: isize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return Err(Error::EmptyInput {
                op: "stack",
                what: "the list of tensors".into(),
            });
        };
        // the axis counts in the result, which has one dim more than each input
        let stacked = [first.shape(), &[1]].concat();
        let axis = resolve_axis("stack", &stacked, axis)?;
        let parts = tensors
            .iter()
            .map(|t| t.unsqueeze(axis as isize))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, axis as isize)
    }

    /// Splits into `n` equal chunks along `axis` (the last may be shorter).
    pub fn chunk(&self, n: usize, axis: isize) -> Result<Vec<Tensor>> {
        let a = resolve_axis("chunk", self.shape(), axis)?;
        if n == 0 {
            return Err(Error::bad_shape(
                "chunk",
                self.shape(),
                "cannot split into 0 chunks",
            ));
        }
        let d = self.shape()[a];
        let size = d.div_ceil(n.max(1)).max(1);
        (0..d)
            .step_by(size)
            .map(|s| self.narrow(a as isize, s, size.min(d - s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, fixture_case};
    use crate::{Result, Tensor};

    #[test]
    fn values() -> Result<()> {
        let x = Tensor::arange(0, 6).reshape(&[2, 3])?;
        assert_eq!(x.t()?.to_vec::<i64>()?, vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(x.narrow(1, 1, 2)?.to_vec::<i64>()?, vec![1, 2, 4, 5]);
        let c = Tensor::cat(&[x.clone(), x.clone()], 0)?;
        assert_eq!(c.shape(), &[4, 3]);
        assert_eq!(
            Tensor::stack(&[x.clone(), x.clone()], 1)?.shape(),
            &[2, 2, 3]
        );
        assert!(x.reshape(&[4, 2]).is_err());
        assert_eq!(x.reshape_infer(&[-1, 2])?.shape(), &[3, 2]);
        assert!(x.narrow(1, 2, 2).is_err());
        assert!(x.permute(&[0, 0]).is_err());
        Ok(())
    }

    #[test]
    fn narrow_hand_derived() -> Result<()> {
        // the gradient of a slice is the upstream gradient padded with zeros
        let x = Tensor::zeros(&[4]).with_requires_grad(true);
        x.narrow(0, 1, 2)?.sum()?.backward()?;
        assert_eq!(
            x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![0.0, 1.0, 1.0, 0.0])
        );
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        check_grad(&[&[3, 4]], |x| x[0].reshape(&[2, 6]))?;
        check_grad(&[&[2, 3, 4]], |x| x[0].permute(&[2, 0, 1]))?;
        check_grad(&[&[3, 4]], |x| x[0].t())?;
        check_grad(&[&[3, 1]], |x| x[0].broadcast_as(&[2, 3, 4]))?;
        check_grad(&[&[4, 5]], |x| x[0].narrow(1, 1, 3))?;
        check_grad(&[&[2, 3], &[2, 5]], |x| {
            Tensor::cat(&[x[0].clone(), x[1].clone()], 1)
        })?;
        check_grad(&[&[2, 3], &[2, 3]], |x| {
            Tensor::stack(&[x[0].clone(), x[1].clone()], 0)
        })?;
        check_grad(&[&[2, 3]], |x| x[0].unsqueeze(1)?.squeeze(1))?;
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        fixture_case("transpose", |x| x[0].t())?;
        fixture_case("permute", |x| x[0].permute(&[2, 0, 1]))?;
        fixture_case("reshape", |x| x[0].reshape(&[2, 6]))?;
        fixture_case("cat_axis1", |x| {
            Tensor::cat(&[x[0].clone(), x[1].clone()], 1)
        })?;
        fixture_case("stack_axis0", |x| {
            Tensor::stack(&[x[0].clone(), x[1].clone()], 0)
        })?;
        fixture_case("narrow", |x| x[0].narrow(1, 2, 3))?;
        Ok(())
    }
}
