//! Regression and distribution losses: `l1_loss`, `mse_loss`, `smooth_l1_loss`,
//! `huber_loss`, `kl_div`, `cosine_embedding_loss`, PyTorch's, with `reduction`.
//!
//! With `d = input - target`:
//!
//! ```text
//! l1        = |d|                         (gradient sign(d), 0 at d = 0)
//! mse       = d^2
//! smooth_l1 = 0.5 d^2 / beta  if |d| < beta,   |d| - 0.5 beta   otherwise
//! huber     = 0.5 d^2         if |d| < delta,  delta (|d| - 0.5 delta) otherwise
//! kl_div    = t (ln t - input)    (0 where t = 0),  or e^t (t - input) with log_target
//! cosine    = 1 - cos(x1, x2) where y = 1,  max(0, cos(x1, x2) - margin) where y = -1
//! ```
//!
//! All are composites of primitives. Input and target must have the same shape (PyTorch
//! broadcasts them with a warning that the result is likely wrong; here it is an error).

use super::loss_binary::same_shape;
use super::Reduction;
use crate::{Error, Result, Tensor};

/// Mean absolute error (PyTorch's `F.l1_loss`).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, -1.0], &[2])?;
/// assert_eq!(F::l1_loss(&x, &Tensor::zeros(&[2]), Reduction::Sum)?.item()?, 2.0);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("l1_loss", input, target)?;
    reduction.apply("l1_loss", input.sub(target)?.abs()?)
}

/// Mean squared error (PyTorch's `F.mse_loss`); with `Reduction::Mean` the value of
/// [`Tensor::mse`].
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, -3.0], &[2])?;
/// assert_eq!(F::mse_loss(&x, &Tensor::zeros(&[2]), Reduction::Mean)?.item()?, 5.0);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    same_shape("mse_loss", input, target)?;
    reduction.apply("mse_loss", input.sub(target)?.square()?)
}

/// The quadratic-then-linear loss shared by smooth L1 and Huber: `0.5 d^2 / beta` below
/// `beta`, `|d| - 0.5 beta` above, times `scale`.
fn quad_lin(input: &Tensor, target: &Tensor, beta: f32, scale: f32) -> Result<Tensor> {
    let d = input.sub(target)?;
    let a = d.abs()?;
    let quad = d.square()?.mul_scalar(0.5 * scale / beta)?;
    let lin = a.add_scalar(-0.5 * beta)?.mul_scalar(scale)?;
    Tensor::where_cond(&a.lt_scalar(beta)?, &quad, &lin)
}

/// Smooth L1 loss (PyTorch's `F.smooth_l1_loss`): quadratic below `beta` (default 1.0),
/// linear above; `beta = 0` is the L1 loss, a negative `beta` an error.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let x = Tensor::from_vec(vec![0.5f32, 3.0], &[2])?;
/// let l = F::smooth_l1_loss(&x, &Tensor::zeros(&[2]), Reduction::None, 1.0)?;
/// assert_eq!(l.to_vec::<f32>()?, vec![0.125, 2.5]);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn smooth_l1_loss(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    beta: f32,
) -> Result<Tensor> {
    const OP: &str = "smooth_l1_loss";
    if beta.is_nan() || beta < 0.0 {
        return Err(Error::invalid_config(
            OP,
            "beta",
            beta,
            "must be non-negative",
        ));
    }
    if beta == 0.0 {
        return l1_loss(input, target, reduction).map_err(|e| rename(e, OP));
    }
    same_shape(OP, input, target)?;
    reduction.apply(OP, quad_lin(input, target, beta, 1.0)?)
}

/// Huber loss (PyTorch's `F.huber_loss`): `0.5 d^2` below `delta` (default 1.0),
/// `delta (|d| - 0.5 delta)` above; `delta` must be positive.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let x = Tensor::from_vec(vec![0.5f32, 3.0], &[2])?;
/// let l = F::huber_loss(&x, &Tensor::zeros(&[2]), Reduction::None, 2.0)?;
/// assert_eq!(l.to_vec::<f32>()?, vec![0.125, 4.0]);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn huber_loss(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    delta: f32,
) -> Result<Tensor> {
    const OP: &str = "huber_loss";
    if delta.is_nan() || delta <= 0.0 {
        return Err(Error::invalid_config(
            OP,
            "delta",
            delta,
            "must be positive",
        ));
    }
    same_shape(OP, input, target)?;
    // delta * smooth_l1 with beta = delta
    reduction.apply(OP, quad_lin(input, target, delta, delta)?)
}

/// The Kullback-Leibler divergence of `target` from the distribution whose log-
/// probabilities are `input` (PyTorch's `F.kl_div(input, target, reduction,
/// log_target)`): `t (ln t - input)` per element, 0 where `t = 0`; `log_target` takes
/// `target` as log-probabilities. `Reduction::BatchMean` divides the sum by dim 0
/// (the KL divergence per sample); `Mean` divides by every element, as PyTorch's.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let p = Tensor::from_vec(vec![0.5f32, 0.5], &[1, 2])?;
/// let l = F::kl_div(&p.log()?, &p, Reduction::BatchMean, false)?;
/// assert!(l.item()?.abs() < 1e-7);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn kl_div(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
    log_target: bool,
) -> Result<Tensor> {
    const OP: &str = "kl_div";
    same_shape(OP, input, target)?;
    let l = if log_target {
        target.exp()?.mul(&target.sub(input)?)?
    } else {
        // t ln t with ln 1 = 0 in place of ln 0 where t = 0 (xlogy)
        let one = Tensor::ones(&[]).to_device(&target.device())?;
        let safe = Tensor::where_cond(&target.gt_scalar(0.0)?, target, &one)?;
        target.mul(&safe.log()?.sub(input)?)?
    };
    match reduction {
        Reduction::BatchMean => {
            let n = input.shape().first().copied().unwrap_or(1);
            l.sum()?.div_scalar(n as f32)
        }
        r => r.apply(OP, l),
    }
}

/// The cosine embedding loss of pairs `input1`, `input2` (`[N, D]` or `[D]`) labelled
/// `target` (`[N]` or `[]`, 1 for similar, -1 for dissimilar; other labels give 0), as
/// PyTorch's `F.cosine_embedding_loss`: `1 - cos` for similar pairs, `max(0, cos -
/// margin)` for dissimilar ones, `cos = x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12))`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let a = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], &[2, 2])?;
/// let b = Tensor::from_vec(vec![1.0f32, 0.0, 1.0, 0.0], &[2, 2])?;
/// let y = Tensor::from_vec(vec![1.0f32, -1.0], &[2])?;
/// let l = F::cosine_embedding_loss(&a, &b, &y, 0.0, Reduction::None)?;
/// assert_eq!(l.to_vec::<f32>()?, vec![0.0, 0.0]);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn cosine_embedding_loss(
    input1: &Tensor,
    input2: &Tensor,
    target: &Tensor,
    margin: f32,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "cosine_embedding_loss";
    same_shape(OP, input1, input2)?;
    let (rank, n) = (input1.rank(), input1.shape().first().copied().unwrap_or(0));
    let want: &[usize] = match rank {
        1 => &[],
        2 => &[n],
        _ => {
            return Err(Error::bad_shape(
                OP,
                input1.shape(),
                "inputs must be [N, D] or [D]",
            ))
        }
    };
    if target.shape() != want {
        return Err(Error::ShapeMismatch {
            op: "cosine_embedding_loss (target must be [N] for [N, D] inputs)",
            lhs: input1.shape().to_vec(),
            rhs: target.shape().to_vec(),
        });
    }
    super::same_device(OP, input1, target)?;
    let axis = rank as isize - 1;
    let dot = input1.mul(input2)?.sum_dim(axis, false)?;
    let m1 = input1.square()?.sum_dim(axis, false)?.add_scalar(1e-12)?;
    let m2 = input2.square()?.sum_dim(axis, false)?.add_scalar(1e-12)?;
    let cos = dot.div(&m1.mul(&m2)?.sqrt()?)?;
    let zero = Tensor::zeros(&[]).to_device(&cos.device())?;
    let pos = Tensor::where_cond(&target.eq_scalar(1.0)?, &cos.affine(-1.0, 1.0)?, &zero)?;
    let neg = cos.add_scalar(-margin)?.clamp_min(0.0)?;
    let neg = Tensor::where_cond(&target.eq_scalar(-1.0)?, &neg, &zero)?;
    reduction.apply(OP, pos.add(&neg)?)
}

/// `e` re-labelled as coming from `op` when it names a delegate (smooth L1 as L1).
fn rename(e: Error, op: &'static str) -> Error {
    match e {
        Error::ShapeMismatch { lhs, rhs, .. } => Error::ShapeMismatch { op, lhs, rhs },
        other => other,
    }
}
