//! Masks and views for attention: `masked_fill`, `triu` / `tril`, `expand`, `split`,
//! `contiguous`.
//!
//! All are composites: `masked_fill` and the triangles are a `where` against a constant,
//! so the gradient is the upstream gradient where the input is kept and 0 where it is
//! replaced; `expand` is a broadcast (adjoint: sum back); `split` is narrows (adjoint:
//! zero padding). Storage is always contiguous here, so `contiguous` is the tensor itself.

use crate::shape::axis as resolve_axis;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// `value` where `mask` is true, `self` elsewhere; `mask` (`Bool` as comparisons
    /// return, `U8` or i64 with nonzero as true, or f32) broadcasts to `self`'s shape
    /// (PyTorch's `masked_fill`).
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        let out = crate::shape::broadcast_shapes("masked_fill", mask.shape(), self.shape())?;
        if out.as_slice() != self.shape() {
            return Err(Error::mismatch("masked_fill", mask.shape(), self.shape()));
        }
        let fill = Tensor::try_full(&[], value)?.to_device(&self.device())?;
        Tensor::where_cond(mask, &fill, self)
    }

    /// The upper triangle of the last two dims: entries `(i, j)` with `j - i >= k` kept,
    /// the rest 0 (PyTorch's `triu(diagonal=k)`).
    pub fn triu(&self, k: i64) -> Result<Tensor> {
        self.triangle("triu", k, true)
    }

    /// The lower triangle of the last two dims: entries with `j - i <= k` kept, the rest
    /// 0 (PyTorch's `tril(diagonal=k)`).
    pub fn tril(&self, k: i64) -> Result<Tensor> {
        self.triangle("tril", k, false)
    }

    fn triangle(&self, op: &'static str, k: i64, upper: bool) -> Result<Tensor> {
        let [.., r, c] = *self.shape() else {
            return Err(Error::bad_shape(op, self.shape(), "needs at least 2 dims"));
        };
        let drop = Tensor::triangle_mask(r, c, k, upper)?.to_device(&self.device())?;
        let zero = Tensor::try_zeros_dtype(&[], self.dtype())?.to_device(&self.device())?;
        Tensor::where_cond(&drop, &zero, self)
    }

    /// i64 `[r, c]`: 1 at the entries a triangle drops, 0 at those it keeps.
    pub(crate) fn triangle_mask(r: usize, c: usize, k: i64, upper: bool) -> Result<Tensor> {
        let n = crate::shape::checked_numel("triangle", &[r, c])?;
        let mut v = crate::host::try_with_capacity::<i64>(n, "triangle")?;
        if n == 0 {
            // `r` may be huge beside `c == 0`: no empty turns
            return Tensor::from_vec(v, &[r, c]);
        }
        for i in 0..r as i64 {
            for j in 0..c as i64 {
                let keep = if upper { j - i >= k } else { j - i <= k };
                v.push(i64::from(!keep));
            }
        }
        Tensor::from_vec(v, &[r, c])
    }

    /// Broadcasts to `shape`, `-1` keeping a dim's size (PyTorch's `expand`; a copy here,
    /// as storage is always contiguous).
    pub fn expand(&self, shape: &[isize]) -> Result<Tensor> {
        let lead = shape.len().checked_sub(self.rank()).ok_or_else(|| {
            Error::bad_shape(
                "expand",
                self.shape(),
                format!("cannot expand to {} dims", shape.len()),
            )
        })?;
        let target = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| match d {
                -1 if i >= lead => Ok(self.shape()[i - lead]),
                d if d >= 0 => Ok(d as usize),
                _ => Err(Error::bad_shape(
                    "expand",
                    self.shape(),
                    format!("size {d} at dim {i} (only -1 is allowed, on an existing dim)"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        self.broadcast_as(&target)
    }

    /// Splits along `axis` into pieces of `size` (the last may be shorter), PyTorch's
    /// `split(size, dim)`.
    pub fn split(&self, size: usize, axis: isize) -> Result<Vec<Tensor>> {
        let a = resolve_axis("split", self.shape(), axis)?;
        if size == 0 {
            return Err(Error::bad_shape("split", self.shape(), "split size 0"));
        }
        let d = self.shape()[a];
        // one tensor per piece: `[2^60, 0]` split by 2 asks for 2^59 of them
        let mut pieces = crate::host::try_with_capacity(d.div_ceil(size), "split")?;
        for s in (0..d).step_by(size) {
            pieces.push(self.narrow(a as isize, s, size.min(d - s))?);
        }
        Ok(pieces)
    }

    /// Splits along `axis` into pieces of the given sizes, which must add up to the dim
    /// (PyTorch's `split([sizes], dim)`).
    pub fn split_sizes(&self, sizes: &[usize], axis: isize) -> Result<Vec<Tensor>> {
        let a = resolve_axis("split", self.shape(), axis)?;
        let total = sizes.iter().try_fold(0usize, |s, &x| s.checked_add(x));
        if total != Some(self.shape()[a]) {
            return Err(Error::bad_shape(
                "split",
                self.shape(),
                format!("sizes {sizes:?} do not add up to dim {a}"),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                let t = self.narrow(a as isize, start, n);
                start += n;
                t
            })
            .collect()
    }

    /// The tensor itself: storage is always contiguous, so there is nothing to copy
    /// (kept for code ported from PyTorch).
    pub fn contiguous(&self) -> Result<Tensor> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use crate::{Result, Tensor};

    #[test]
    fn grads_finite_difference() -> Result<()> {
        let mask = Tensor::from_vec(vec![1i64, 0, 0, 1], &[4])?;
        check_grad(&[&[3, 4]], |x| x[0].masked_fill(&mask, -3.0))?;
        check_grad(&[&[2, 3, 4]], |x| x[0].triu(1))?;
        check_grad(&[&[3, 4]], |x| x[0].tril(-1))?;
        check_grad(&[&[3, 1]], |x| x[0].expand(&[2, -1, 4]))?;
        check_grad(&[&[5, 2]], |x| {
            let p = x[0].split(2, 0)?;
            p[0].sum()?.mul(&p[2].sum()?)
        })?;
        check_grad(&[&[2, 5]], |x| {
            let p = x[0].split_sizes(&[1, 4], 1)?;
            p[1].mul_scalar(2.0)?.sum()?.add(&p[0].sum()?)
        })?;
        Ok(())
    }

    #[test]
    fn hand_derived() -> Result<()> {
        // triu(0) of ones(2, 3) keeps (0,0..2) and (1,1..2); its gradient is that pattern
        let x = Tensor::ones(&[2, 3]).with_requires_grad(true);
        let y = x.triu(0)?;
        assert_eq!(y.to_vec::<f32>()?, vec![1., 1., 1., 0., 1., 1.]);
        y.sum()?.backward()?;
        let g = x.grad().map(|g| g.to_vec::<f32>()).transpose()?;
        assert_eq!(g, Some(vec![1., 1., 1., 0., 1., 1.]));
        assert_eq!(
            Tensor::ones(&[2, 3]).tril(0)?.to_vec::<f32>()?,
            vec![1., 0., 0., 1., 1., 0.]
        );
        // -inf stays -inf where kept and becomes 0 (no NaN from -inf * 0)
        let m = Tensor::full(&[2, 2], f32::NEG_INFINITY).triu(1)?;
        assert_eq!(m.to_vec::<f32>()?, vec![0.0, f32::NEG_INFINITY, 0.0, 0.0]);
        let f = Tensor::zeros(&[2, 2]).masked_fill(&Tensor::from_vec(vec![0i64, 1], &[2])?, 5.0)?;
        assert_eq!(f.to_vec::<f32>()?, vec![0.0, 5.0, 0.0, 5.0]);
        assert_eq!(Tensor::zeros(&[3]).expand(&[2, -1])?.shape(), &[2, 3]);
        let parts = Tensor::arange(0, 5).split(2, 0)?;
        assert_eq!(
            parts.iter().map(|p| p.numel()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        let x = Tensor::zeros(&[2, 3]);
        assert!(x.masked_fill(&Tensor::zeros(&[4]), 0.0).is_err());
        assert!(x.masked_fill(&Tensor::zeros(&[2, 2, 3]), 0.0).is_err());
        assert!(Tensor::zeros(&[3]).triu(0).is_err());
        assert!(x.expand(&[3]).is_err());
        assert!(x.expand(&[-1, 2, 3]).is_err());
        assert!(x.expand(&[2, 4]).is_err());
        assert!(x.split(0, 0).is_err());
        assert!(x.split_sizes(&[1, 1], 1).is_err());
        assert!(x.split(1, 5).is_err());
    }
}
