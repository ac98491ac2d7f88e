//! im2col as a differentiable op: the windows of an image laid out as columns
//! ([`BackendStorage::im2col`](crate::backend::BackendStorage::im2col)), the backward
//! being its adjoint col2im.
//!
//! For x `[n, c, h, w]` and window geometry `win`, `cols[.., c, p, q, .., i, j] =
//! xpad[n, c, i*sh + p*dh, j*sw + q*dw]`, a linear map that copies each input element to
//! the columns of the windows that contain it; so `dx[n, c, r, s]` is the sum of `dcols`
//! over every (window, tap) that read `(r, s)`, and reads of the padding get no gradient
//! (the padding is a constant).

use super::conv::Windows;
use crate::autograd::{backward_fn, record};
use crate::shape::Dims;
use crate::{Result, Tensor};

/// The columns of `x` `[n, c, h, w]` (f32, checked by the caller) under `win`: shaped
/// `[c * kh * kw, n * oh * ow]` when `batch_inner`, else `[n, c * kh * kw, oh * ow]`; the
/// padding reads `pad_value`.
pub(crate) fn im2col(
    x: &Tensor,
    win: &Windows,
    batch_inner: bool,
    pad_value: f32,
) -> Result<Tensor> {
    let [n, c] = [x.shape()[0], x.shape()[1]];
    let spec = win.im2col_spec([n, c], batch_inner, pad_value);
    // each factor checked on its own: with a zero elsewhere the total may be 0 while a
    // part overflows (`c` beside an empty batch, `n * l` beside no channel)
    let taps = crate::shape::checked_numel("im2col", &[c, win.kernel[0], win.kernel[1]])?;
    let l = win.positions();
    let n_l = crate::shape::checked_numel("im2col", &[n, l])?;
    crate::shape::checked_numel("im2col", &[n, taps, l])?;
    let shape: Dims = if batch_inner {
        Dims::from_slice(&[taps, n_l])
    } else {
        Dims::from_slice(&[n, taps, l])
    };
    let storage = x.storage().im2col(&spec)?;
    Ok(record(storage, shape, &[x], "im2col", move || {
        backward_fn(move |inp, g| {
            let dx = g.storage().col2im(&spec)?;
            Ok(vec![Some(Tensor::from_storage(dx, inp[0].shape())?)])
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::super::conv::Windows;
    use super::super::testing::check_grad;
    use super::im2col;
    use crate::backend::{
        BackendStorage, BinaryOp, Im2ColSpec, MatmulSpec, ReduceOp, Storage, UnaryOp,
    };
    use crate::{Result, Tensor};

    fn win(
        input: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        p: [[usize; 2]; 2],
        d: [usize; 2],
    ) -> Result<Windows> {
        Windows::new(
            "test",
            &[1, 1, input[0], input[1]],
            input,
            k,
            s,
            p,
            d,
            false,
        )
    }

    /// Geometries covering stride, dilation, asymmetric padding and a kernel of one tap.
    fn geometries() -> Result<Vec<Windows>> {
        Ok(vec![
            win([5, 6], [3, 3], [1, 1], [[1, 1], [1, 1]], [1, 1])?,
            win([7, 5], [3, 2], [2, 3], [[0, 2], [1, 0]], [1, 2])?,
            win([4, 4], [1, 1], [2, 2], [[0, 0], [0, 0]], [1, 1])?,
            win([6, 7], [2, 3], [1, 2], [[2, 1], [0, 3]], [2, 1])?,
        ])
    }

    /// The storage as f32s.
    fn host(s: &Storage) -> Result<Vec<f32>> {
        Ok(s.to_host()?.f32s("test")?.to_vec())
    }

    /// The storage methods of a backend that keeps the trait's defaults (an
    /// index_select / index_add gather), to compare the CPU's direct copy with.
    #[derive(Debug)]
    struct Defaults(Storage);

    impl BackendStorage for Defaults {
        fn device(&self) -> crate::Device {
            self.0.device()
        }
        fn dtype(&self) -> crate::DType {
            self.0.dtype()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn to_host(&self) -> Result<crate::HostData> {
            self.0.to_host()
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
        fn write_at(&mut self, _: usize, _: &crate::HostData) -> Result<()> {
            Err(crate::Error::custom("Defaults: read only"))
        }
        fn unary(&self, op: UnaryOp) -> Result<Storage> {
            self.0.unary(op)
        }
        fn binary(
            &self,
            op: BinaryOp,
            ls: &[usize],
            rhs: &dyn BackendStorage,
            rs: &[usize],
            os: &[usize],
        ) -> Result<Storage> {
            self.0.binary(op, ls, rhs, rs, os)
        }
        fn where_cond(
            &self,
            cs: &[usize],
            a: &dyn BackendStorage,
            as_: &[usize],
            b: &dyn BackendStorage,
            bs: &[usize],
            os: &[usize],
        ) -> Result<Storage> {
            self.0.where_cond(cs, a, as_, b, bs, os)
        }
        fn matmul(&self, rhs: &dyn BackendStorage, spec: &MatmulSpec) -> Result<Storage> {
            self.0.matmul(rhs, spec)
        }
        fn reduce(&self, op: ReduceOp, shape: &[usize], axes: &[usize]) -> Result<Storage> {
            self.0.reduce(op, shape, axes)
        }
        fn permute(&self, shape: &[usize], perm: &[usize]) -> Result<Storage> {
            self.0.permute(shape, perm)
        }
        fn narrow(
            &self,
            shape: &[usize],
            axis: usize,
            start: usize,
            len: usize,
        ) -> Result<Storage> {
            self.0.narrow(shape, axis, start, len)
        }
        fn cat(
            &self,
            shape: &[usize],
            others: &[(&dyn BackendStorage, &[usize])],
            axis: usize,
        ) -> Result<Storage> {
            self.0.cat(shape, others, axis)
        }
        fn index_select(
            &self,
            shape: &[usize],
            axis: usize,
            idx: &dyn BackendStorage,
        ) -> Result<Storage> {
            self.0.index_select(shape, axis, idx)
        }
        fn index_add(
            &self,
            shape: &[usize],
            axis: usize,
            idx: &dyn BackendStorage,
            out: &[usize],
        ) -> Result<Storage> {
            self.0.index_add(shape, axis, idx, out)
        }
        fn cast(&self, dtype: crate::DType) -> Result<Storage> {
            self.0.cast(dtype)
        }
    }

    fn spec(w: &Windows, n: usize, c: usize, batch_inner: bool, pad_value: f32) -> Im2ColSpec {
        Im2ColSpec {
            batch: n,
            channels: c,
            input: w.input,
            kernel: w.kernel,
            stride: w.stride,
            padding: w.padding,
            dilation: w.dilation,
            output: w.output,
            batch_inner,
            pad_value,
        }
    }

    /// The default (gather) implementations of the trait, run on CPU storage.
    fn by_default(x: &Storage, s: &Im2ColSpec, adjoint: bool) -> Result<Vec<f32>> {
        let d = Defaults(x.clone());
        host(&if adjoint { d.col2im(s)? } else { d.im2col(s)? })
    }

    #[test]
    fn direct_copy_matches_the_default_gather() -> Result<()> {
        for w in geometries()? {
            for batch_inner in [true, false] {
                let s = spec(&w, 2, 3, batch_inner, -1.5);
                let x = Tensor::randn(&[2, 3, w.input[0], w.input[1]]);
                let got = host(&x.storage().im2col(&s)?)?;
                assert_eq!(
                    got,
                    by_default(x.storage(), &s, false)?,
                    "{w:?} {batch_inner}"
                );
                let cols = Tensor::randn(&[s.cols_len()]);
                let got = host(&cols.storage().col2im(&s)?)?;
                let want = by_default(cols.storage(), &s, true)?;
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "{w:?} {batch_inner}: {a} vs {b}");
                }
                assert_eq!(got.len(), want.len());
            }
        }
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        for w in geometries()? {
            for batch_inner in [true, false] {
                let xs = [2, 2, w.input[0], w.input[1]];
                check_grad(&[&xs], |t| im2col(&t[0], &w, batch_inner, 0.5))?;
            }
        }
        Ok(())
    }

    #[test]
    fn hand_derived() -> Result<()> {
        // x = [[1, 2], [3, 4]], a 2x2 window with padding 1 at stride 1 gives 3x3
        // positions; tap (0, 0) reads x[i-1, j-1]: [[p, p, p], [p, 1, 2], [p, 3, 4]].
        // Each x element lies in 4 windows, one per tap, so d sum(cols) / dx = 4.
        let w = win([2, 2], [2, 2], [1, 1], [[1, 1], [1, 1]], [1, 1])?;
        let x =
            Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2])?.with_requires_grad(true);
        let cols = im2col(&x, &w, false, 9.0)?;
        assert_eq!(cols.shape(), &[1, 4, 9]);
        let v = cols.to_vec::<f32>()?;
        assert_eq!(&v[..9], &[9.0, 9.0, 9.0, 9.0, 1.0, 2.0, 9.0, 3.0, 4.0]);
        cols.sum()?.backward()?;
        assert_eq!(
            x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![4.0; 4])
        );
        Ok(())
    }

    #[test]
    fn a_spec_that_does_not_fit_the_storage_is_an_error() -> Result<()> {
        let w = win([4, 4], [2, 2], [1, 1], [[0, 0], [0, 0]], [1, 1])?;
        let x = Tensor::zeros(&[1, 1, 4, 4]);
        assert!(x.storage().im2col(&spec(&w, 2, 1, true, 0.0)).is_err());
        assert!(x.storage().col2im(&spec(&w, 1, 1, true, 0.0)).is_err());
        let mut zero = spec(&w, 1, 1, true, 0.0);
        zero.stride = [0, 1];
        assert!(x.storage().im2col(&zero).is_err());
        let mut far = spec(&w, 1, 1, true, 0.0);
        far.dilation = [usize::MAX, 1];
        assert!(x.storage().im2col(&far).is_err());
        Ok(())
    }
}
