//! Fused softmax along the last axis: one op with its own backward, one pass per row
//! where the backend has a fused kernel (the CPU), instead of the composite's max, sub,
//! exp, sum and div and their temporaries.
//!
//! y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j (the shift cancels);
//! dy_i/dx_k = y_i (delta_ik - y_k), so dx_k = sum_i g_i y_i (delta_ik - y_k)
//! = y_k (g_k - sum_i g_i y_i).

use crate::autograd::{backward_fn, record};
use crate::{DType, Result, Tensor};

impl Tensor {
    /// Softmax along the last axis as one fused op, `None` when the backend has no fused
    /// form or the tensor is not f32 of rank >= 1 (callers then compose it:
    /// [`Tensor::softmax`] does both).
    pub(crate) fn softmax_last(&self) -> Result<Option<Tensor>> {
        let Some(&cols) = self.shape().last() else {
            return Ok(None);
        };
        if self.dtype() != DType::F32 {
            return Ok(None);
        }
        let rows = self.numel() / cols.max(1);
        let Some(y) = self.storage().softmax_last(rows, cols)? else {
            return Ok(None);
        };
        let saved = y.clone();
        Ok(Some(record(
            y,
            self.shape_dims(),
            &[self],
            "softmax",
            move || {
                backward_fn(move |inp, g| {
                    let shape = inp[0].shape();
                    let fused = saved.softmax_last_backward(g.storage().as_ref(), rows, cols)?;
                    let gx = match fused {
                        Some(s) => Tensor::from_storage(s, shape)?,
                        None => {
                            let y = Tensor::from_storage(saved.clone(), shape)?;
                            let dot = g.mul(&y)?.sum_axes_keepdim(&[shape.len() - 1])?;
                            y.mul(&g.sub(&dot)?)?
                        }
                    };
                    Ok(vec![Some(gx)])
                })
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use crate::{Result, Tensor};

    fn close(a: &Tensor, b: &Tensor, tol: f32) -> Result<()> {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.to_vec::<f32>()?.iter().zip(b.to_vec::<f32>()?) {
            assert!(
                (x - y).abs() <= tol || (x.is_nan() && y.is_nan()),
                "{x} vs {y}"
            );
        }
        Ok(())
    }

    #[test]
    fn fused_matches_the_composite_forward_and_backward() -> Result<()> {
        // odd row lengths (vector tails), one row, many rows (the parallel split)
        for shape in [&[3, 7][..], &[1, 1], &[5], &[2, 3, 17], &[300, 129]] {
            let x = Tensor::randn(shape)
                .mul_scalar(3.0)?
                .with_requires_grad(true);
            let u = Tensor::randn(shape);
            let fused = x.softmax(-1)?;
            let comp = x.softmax_composite(shape.len() - 1)?;
            close(&fused, &comp, 1e-6)?;
            fused.mul(&u)?.sum()?.backward()?;
            let gf = x.grad().ok_or_else(|| crate::Error::custom("no grad"))?;
            x.zero_grad();
            comp.mul(&u)?.sum()?.backward()?;
            let gc = x.grad().ok_or_else(|| crate::Error::custom("no grad"))?;
            close(&gf, &gc, 1e-5)?;
        }
        Ok(())
    }

    #[test]
    fn masked_rows_give_nan_as_pytorch_and_huge_logits_stay_finite() -> Result<()> {
        let inf = f32::NEG_INFINITY;
        let x = Tensor::from_vec(vec![inf, inf, inf, 0.0, inf, 1000.0], &[2, 3])?;
        let y = x.softmax(-1)?.to_vec::<f32>()?;
        assert!(y[..3].iter().all(|v| v.is_nan()), "{y:?}");
        assert_eq!(&y[3..], &[0.0, 0.0, 1.0]);
        Ok(())
    }

    #[test]
    fn finite_differences_and_hand_derived() -> Result<()> {
        check_grad(&[&[3, 5]], |x| x[0].softmax(-1))?;
        check_grad(&[&[2, 1, 4]], |x| x[0].softmax(-1))?;
        // x = [0, 0]: y = [1/2, 1/2]; with g = [1, 0], sum(g y) = 1/2, so
        // dx = y (g - 1/2) = [1/4, -1/4]
        let x = Tensor::zeros(&[2]).with_requires_grad(true);
        let y = x.softmax(-1)?;
        y.mul(&Tensor::from_vec(vec![1.0f32, 0.0], &[2])?)?
            .sum()?
            .backward()?;
        let g = x.grad().ok_or_else(|| crate::Error::custom("no grad"))?;
        assert_eq!(g.to_vec::<f32>()?, vec![0.25, -0.25]);
        Ok(())
    }
}
