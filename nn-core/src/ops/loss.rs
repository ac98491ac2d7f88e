//! Composite ops built from primitives: softmax, log_softmax, cross-entropy, MSE.
//! None has a backward of its own, except cross-entropy on a backend with a fused form
//! (the CPU): one pass for the loss, one for its gradient
//! dL/dx = g (softmax(x) - onehot(t)) / batch, instead of a dozen recorded ops.
//!
//! NOTE: softmax subtracts the (detached) row max before exponentiating; the shift
//! cancels in the ratio, so detaching it changes no gradient and avoids overflow.

use crate::autograd::{backward_fn, record};
use crate::shape::{axis as resolve_axis, Dims};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Softmax along `axis` (the last axis runs as one fused op, one pass per row, where
    /// the backend has one).
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        let a = resolve_axis("softmax", self.shape(), axis)?;
        if a + 1 == self.rank() {
            if let Some(y) = self.softmax_last()? {
                return Ok(y);
            }
        }
        self.softmax_composite(a)
    }

    /// Softmax along axis `a` from primitives (max, sub, exp, sum, div).
    pub(crate) fn softmax_composite(&self, a: usize) -> Result<Tensor> {
        let m = self.detach().max_axes_keepdim(&[a])?;
        let e = self.sub(&m)?.exp()?;
        e.div(&e.sum_axes_keepdim(&[a])?)
    }

    /// Log of the softmax along `axis`, computed stably: `x - max - log(sum(exp(x - max)))`.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        let a = resolve_axis("log_softmax", self.shape(), axis)?;
        let m = self.detach().max_axes_keepdim(&[a])?;
        let z = self.sub(&m)?;
        z.sub(&z.exp()?.sum_axes_keepdim(&[a])?.log()?)
    }

    /// Mean cross-entropy between logits `[batch, classes]` and i64 class indices `[batch]`
    /// (PyTorch's `F.cross_entropy` with mean reduction).
    pub fn cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        let [b, c] = *self.shape() else {
            return Err(Error::bad_shape(
                "cross_entropy",
                self.shape(),
                "logits must be [batch, classes]",
            ));
        };
        if targets.dtype() != DType::I64 || targets.shape() != [b] {
            return Err(Error::ShapeMismatch {
                op: "cross_entropy (targets must be int64 [batch])",
                lhs: self.shape().to_vec(),
                rhs: targets.shape().to_vec(),
            });
        }
        super::same_device("cross_entropy", self, targets)?;
        let t = targets.to_vec::<i64>()?;
        if let Some(&bad) = t.iter().find(|&&v| v < 0 || v as usize >= c) {
            return Err(Error::IndexOutOfRange {
                op: "cross_entropy",
                index: bad,
                size: c,
            });
        }
        let fused = self
            .storage()
            .cross_entropy(targets.storage().as_ref(), b, c)?;
        let Some((loss, probs)) = fused else {
            let onehot = targets.one_hot(c)?.to_dtype(DType::F32)?;
            let lp = self.log_softmax(-1)?;
            return lp.mul(&onehot)?.sum()?.mul_scalar(-1.0 / b.max(1) as f32);
        };
        let inputs = [self, targets];
        Ok(record(
            loss,
            Dims::new(),
            &inputs,
            "cross_entropy",
            move || {
                backward_fn(move |inp, g| {
                    let t = &inp[1];
                    let fused = probs.cross_entropy_backward(
                        t.storage().as_ref(),
                        g.storage().as_ref(),
                        b,
                        c,
                    )?;
                    let gx = match fused {
                        Some(s) => Tensor::from_storage(s, &[b, c])?,
                        None => {
                            let p = Tensor::from_storage(probs.clone(), &[b, c])?;
                            let onehot = t.one_hot(c)?.to_dtype(DType::F32)?;
                            p.sub(&onehot)?.mul(g)?.mul_scalar(1.0 / b.max(1) as f32)?
                        }
                    };
                    Ok(vec![Some(gx), None])
                })
            },
        ))
    }

    /// `[n]` i64 classes to an `[n, classes]` i64 0/1 matrix.
    pub fn one_hot(&self, classes: usize) -> Result<Tensor> {
        let classes = i64::try_from(classes).map_err(|_| {
            Error::bad_shape(
                "one_hot",
                self.shape(),
                format!("{classes} classes do not fit an int64 class index"),
            )
        })?;
        let cls = Tensor::try_arange(0, classes)?.to_device(&self.device())?;
        self.unsqueeze(-1)?.eq(&cls)?.to_dtype(DType::I64)
    }

    /// Mean squared error `mean((self - target)^2)`.
    pub fn mse(&self, target: &Tensor) -> Result<Tensor> {
        self.sub(target)?.square()?.mean()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, fixture_case, fixture_ce};
    use crate::{Result, Tensor};

    #[test]
    fn softmax_rows_sum_to_one() -> Result<()> {
        let x = Tensor::from_vec(vec![1000.0f32, 1001.0, 1002.0], &[1, 3])?;
        let s = x.softmax(-1)?;
        let v = s.to_vec::<f32>()?;
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6 && v.iter().all(|x| x.is_finite()));
        Ok(())
    }

    #[test]
    fn cross_entropy_hand_derived() -> Result<()> {
        // uniform logits over 4 classes: loss = ln 4; d/dlogit = (softmax - onehot)/batch
        let x = Tensor::zeros(&[1, 4]).with_requires_grad(true);
        let t = Tensor::from_vec(vec![2i64], &[1])?;
        let l = x.cross_entropy(&t)?;
        assert!((l.item()? - 4f32.ln()).abs() < 1e-6);
        l.backward()?;
        let g = x
            .grad()
            .map(|g| g.to_vec::<f32>())
            .transpose()?
            .unwrap_or_default();
        let want = [0.25, 0.25, -0.75, 0.25];
        assert!(
            g.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{g:?}"
        );
        let bad = Tensor::from_vec(vec![4i64], &[1])?;
        assert!(x.cross_entropy(&bad).is_err());
        Ok(())
    }

    #[test]
    fn fused_cross_entropy_equals_the_composite() -> Result<()> {
        // the composite: -mean(log_softmax(x) * onehot(t)), recorded op by op
        let x = Tensor::randn(&[6, 5])
            .mul_scalar(3.0)?
            .with_requires_grad(true);
        let t = Tensor::from_vec(vec![0i64, 4, 2, 2, 1, 3], &[6])?;
        let composite = |x: &Tensor| -> Result<Tensor> {
            let onehot = t.one_hot(5)?.to_dtype(crate::DType::F32)?;
            x.log_softmax(-1)?
                .mul(&onehot)?
                .sum()?
                .mul_scalar(-1.0 / 6.0)
        };
        let mut got = Vec::new();
        for fused in [true, false] {
            x.zero_grad();
            let l = if fused {
                x.cross_entropy(&t)?
            } else {
                composite(&x)?
            };
            // a non-unit output gradient reaches the inputs scaled
            l.mul_scalar(2.5)?.backward()?;
            let g = x
                .grad()
                .map(|g| g.to_vec::<f32>())
                .transpose()?
                .unwrap_or_default();
            got.push((l.item()?, g));
        }
        assert!(
            (got[0].0 - got[1].0).abs() < 1e-5,
            "{} vs {}",
            got[0].0,
            got[1].0
        );
        assert!(got[0]
            .1
            .iter()
            .zip(&got[1].1)
            .all(|(a, b)| (a - b).abs() < 1e-6));
        // an empty batch has loss 0, as the composite's
        let e =
            Tensor::zeros(&[0, 3]).cross_entropy(&Tensor::zeros_dtype(&[0], crate::DType::I64))?;
        assert_eq!(e.item()?, 0.0);
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        check_grad(&[&[3, 5]], |x| x[0].softmax(-1))?;
        check_grad(&[&[3, 5]], |x| x[0].softmax(0))?;
        check_grad(&[&[3, 5]], |x| x[0].log_softmax(-1))?;
        let t = Tensor::from_vec(vec![0i64, 4, 2], &[3])?;
        check_grad(&[&[3, 5]], |x| x[0].cross_entropy(&t))?;
        check_grad(&[&[3, 5], &[3, 5]], |x| x[0].mse(&x[1]))?;
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        fixture_case("softmax_last", |x| x[0].softmax(-1))?;
        fixture_case("log_softmax_last", |x| x[0].log_softmax(-1))?;
        fixture_case("mse", |x| x[0].mse(&x[1]))?;
        fixture_case("centered", |x| x[0].sub(&x[0].mean()?))?;
        fixture_ce()?;
        Ok(())
    }
}
