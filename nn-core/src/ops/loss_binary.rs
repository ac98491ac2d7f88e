//! Binary classification losses: `binary_cross_entropy` on probabilities and
//! `binary_cross_entropy_with_logits`, PyTorch's, with `weight`, `pos_weight` and
//! `reduction`.
//!
//! ```text
//! bce(x, t)        = -w (t max(ln x, -100) + (1 - t) max(ln(1 - x), -100))
//! d bce / dx       = w (x - t) / max(x (1 - x), 1e-12)          (PyTorch's backward)
//! bce_logits(z, t) = w ((1 - t) z + (1 + (p - 1) t) softplus(-z))  (p = pos_weight)
//! ```
//!
//! `bce` has its own backward (PyTorch's, finite at x = 0 and 1, where the composite's
//! would be NaN); the logits form is a composite of stable primitives.

use super::Reduction;
use crate::autograd::{backward_fn, record};
use crate::shape::broadcast_shapes;
use crate::{no_grad, DType, Error, Result, Tensor};

/// Fails unless `target` has `input`'s shape, naming the loss and both shapes.
pub(crate) fn same_shape(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    if input.shape() != target.shape() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: input.shape().to_vec(),
            rhs: target.shape().to_vec(),
        });
    }
    super::same_device(op, input, target)?;
    for t in [input, target] {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op,
                dtype: t.dtype(),
                expected: Some(DType::F32),
            });
        }
    }
    Ok(())
}

/// `weight` checked to broadcast to `shape` (and moved beside `like`).
fn broadcast_weight(
    op: &'static str,
    what: &'static str,
    w: &Tensor,
    shape: &[usize],
    like: &Tensor,
) -> Result<Tensor> {
    let out = broadcast_shapes(op, w.shape(), shape)?;
    if out.as_slice() != shape {
        return Err(Error::bad_shape(
            op,
            w.shape(),
            format!("{what} must broadcast to the input's shape {shape:?}"),
        ));
    }
    super::same_device(op, w, like)?;
    w.to_dtype(DType::F32)
}

/// Fails unless every element of `t` lies in [0, 1] (NaN does not), naming `what`.
fn in_unit_interval(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    let bad = t
        .ge_scalar(0.0)?
        .logical_and(&t.le_scalar(1.0)?)?
        .logical_not()?;
    let n = bad.to_dtype(DType::F32)?.sum()?.item()?;
    if n > 0.0 {
        return Err(Error::bad_shape(
            op,
            t.shape(),
            format!("all elements of {what} should be between 0 and 1 ({n} are not)"),
        ));
    }
    Ok(())
}

/// Binary cross-entropy between probabilities `input` and targets `target` of the same
/// shape (PyTorch's `F.binary_cross_entropy`), each term weighted by `weight`
/// (broadcast to the input's shape). Probabilities or targets outside [0, 1] are an
/// error, as in PyTorch.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let p = Tensor::from_vec(vec![0.5f32, 0.5], &[2])?;
/// let t = Tensor::from_vec(vec![1.0f32, 0.0], &[2])?;
/// let l = F::binary_cross_entropy(&p, &t, None, Reduction::Mean)?;
/// assert!((l.item()? - 2f32.ln()).abs() < 1e-6);
/// assert!(F::binary_cross_entropy(&t.add_scalar(0.5)?, &t, None, Reduction::Mean).is_err());
/// # Ok::<(), nn::Error>(())
/// ```
pub fn binary_cross_entropy(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy";
    same_shape(OP, input, target)?;
    in_unit_interval(OP, "input", input)?;
    in_unit_interval(OP, "target", target)?;
    let w = weight
        .map(|w| broadcast_weight(OP, "weight", w, input.shape(), input))
        .transpose()?;
    // ln clamped at -100, as PyTorch, so a probability of exactly 0 or 1 stays finite
    let logs = |x: &Tensor| -> Result<(Tensor, Tensor)> {
        Ok((
            x.log()?.clamp_min(-100.0)?,
            x.affine(-1.0, 1.0)?.log()?.clamp_min(-100.0)?,
        ))
    };
    let y = no_grad(|| -> Result<Tensor> {
        let (lx, l1x) = logs(input)?;
        let l = target
            .mul(&lx)?
            .add(&target.affine(-1.0, 1.0)?.mul(&l1x)?)?
            .neg()?;
        match &w {
            Some(w) => l.mul(w),
            None => Ok(l),
        }
    })?;
    let loss = record(
        y.storage().clone(),
        input.shape_dims(),
        &[input, target],
        OP,
        move || {
            backward_fn(move |inp, g| {
                let (x, t) = (&inp[0], &inp[1]);
                let g = match &w {
                    Some(w) => g.mul(w)?,
                    None => g.clone(),
                };
                let gx = if x.requires_grad() {
                    let den = x.mul(&x.affine(-1.0, 1.0)?)?.clamp_min(1e-12)?;
                    Some(g.mul(&x.sub(t)?)?.div(&den)?)
                } else {
                    None
                };
                let gt = if t.requires_grad() {
                    let (lx, l1x) = logs(x)?;
                    Some(g.mul(&l1x.sub(&lx)?)?)
                } else {
                    None
                };
                Ok(vec![gx, gt])
            })
        },
    );
    reduction.apply(OP, loss)
}

/// Binary cross-entropy of logits `input` against targets in [0, 1] of the same shape
/// (PyTorch's `F.binary_cross_entropy_with_logits`): the sigmoid folded in stably, each
/// term weighted by `weight` (broadcast to the input's shape) and the positive term by
/// `pos_weight` (broadcast along the last dim: one per class).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let z = Tensor::zeros(&[2, 3]);
/// let t = Tensor::ones(&[2, 3]);
/// let pw = Tensor::full(&[3], 2.0);
/// let l = F::binary_cross_entropy_with_logits(&z, &t, None, Some(&pw), Reduction::Mean)?;
/// assert!((l.item()? - 2.0 * 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy_with_logits";
    same_shape(OP, input, target)?;
    let sp = input.neg()?.softplus()?;
    let one_minus_t = target.affine(-1.0, 1.0)?;
    let coef = match pos_weight {
        Some(p) => {
            let p = broadcast_weight(OP, "pos_weight", p, input.shape(), input)?;
            // 1 + (p - 1) t
            p.add_scalar(-1.0)?.mul(target)?.add_scalar(1.0)?
        }
        None => Tensor::ones(&[]).to_device(&input.device())?,
    };
    let mut l = one_minus_t.mul(input)?.add(&coef.mul(&sp)?)?;
    if let Some(w) = weight {
        l = l.mul(&broadcast_weight(OP, "weight", w, input.shape(), input)?)?;
    }
    reduction.apply(OP, l)
}
