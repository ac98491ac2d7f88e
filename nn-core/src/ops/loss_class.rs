//! Classification losses: `nll_loss` and `cross_entropy` with PyTorch's `weight`,
//! `ignore_index`, `label_smoothing`, class-index or probability targets and
//! `reduction`.
//!
//! With log-probabilities `lp` (`[N, C]`, `[C]` or `[N, C, d1, ...]`, classes on dim 1),
//! class targets `y` and class weights `w` (1 without `weight`):
//!
//! ```text
//! nll_n    = -w[y_n] lp[n, y_n]                 (0 where y_n == ignore_index)
//! smooth_n = -sum_c w[c] lp[n, c]               (0 where y_n == ignore_index)
//! ce_n     = (1 - ls) nll_n + ls / C smooth_n   (lp = log_softmax(x))
//! mean     = sum_n ce_n / sum_n w[y_n]          (over the targets not ignored)
//! ```
//!
//! so a weighted mean divides by the weights of the targets it counts, and every target
//! ignored gives NaN (0 / 0), as PyTorch. Probability targets `t` (the input's shape):
//! `ce_n = -sum_c w[c] t'[n, c] lp[n, c]` with `t' = (1 - ls) t + ls / C`, and the mean
//! divides by the number of rows. Gradients come from the primitives (`index_select`
//! picks `lp[n, y_n]`); the plain case (2-d, mean, no weight, nothing ignored, no
//! smoothing) is [`Tensor::cross_entropy`], fused on the CPU.

use super::Reduction;
use crate::{DType, Error, Result, Tensor};

/// `lp` as `[rows, C]` (classes last) with the target shape the rows come from.
fn rows(op: &'static str, lp: &Tensor, target_shape: &[usize]) -> Result<(Tensor, usize)> {
    let s = lp.shape();
    let bad = || Error::ShapeMismatch {
        op,
        lhs: s.to_vec(),
        rhs: target_shape.to_vec(),
    };
    match s.len() {
        0 => Err(Error::bad_shape(op, s, "input must have a class dim")),
        1 => {
            if !target_shape.is_empty() {
                return Err(bad());
            }
            Ok((lp.unsqueeze(0)?, s[0]))
        }
        _ => {
            let c = s[1];
            let mut want = vec![s[0]];
            want.extend_from_slice(&s[2..]);
            if target_shape != want.as_slice() {
                return Err(bad());
            }
            // [N, C, d...] -> [N, d..., C] -> [rows, C]
            let mut perm: Vec<usize> = (0..s.len()).filter(|&a| a != 1).collect();
            perm.push(1);
            let moved = if s.len() > 2 {
                lp.permute(&perm)?
            } else {
                lp.clone()
            };
            let n = want.iter().product();
            Ok((moved.reshape(&[n, c])?, c))
        }
    }
}

/// The class weights as host values (`C` of them, 1 without `weight`).
fn class_weights(op: &'static str, weight: Option<&Tensor>, c: usize) -> Result<Vec<f32>> {
    match weight {
        // (fallibly: `c` may be a huge class dim beside zero rows)
        None => crate::host::try_filled(c, 1.0, op),
        Some(w) if w.shape() == [c] => w.to_dtype(DType::F32)?.to_vec::<f32>(),
        Some(w) => Err(Error::bad_shape(
            op,
            w.shape(),
            format!("weight must be [{c}], one per class"),
        )),
    }
}

/// The summed and the per-row losses of class-index targets, and the sum of the weights
/// counted, from log-probabilities `lp` (`[rows, C]`) and `targets` (host values).
struct Picked {
    /// `nll_n` per row (`[rows]`).
    nll: Tensor,
    /// `smooth_n` per row, when label smoothing is on.
    smooth: Option<Tensor>,
    /// `sum_n w[y_n]` over the rows not ignored.
    weight_sum: f32,
}

fn pick(
    op: &'static str,
    lp: &Tensor,
    target: &Tensor,
    w: &[f32],
    ignore_index: i64,
    smoothing: bool,
) -> Result<Picked> {
    let [n, c] = *lp.shape() else {
        return Err(Error::bad_shape(op, lp.shape(), "expected [rows, classes]"));
    };
    let t = target.to_vec::<i64>()?;
    let (mut idx, mut row_w, mut keep) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
    for (i, &y) in t.iter().enumerate() {
        if y == ignore_index {
            idx.push((i * c) as i64);
            row_w.push(0.0);
            keep.push(0.0);
            continue;
        }
        let class = usize::try_from(y)
            .ok()
            .filter(|&k| k < c)
            .ok_or(Error::IndexOutOfRange {
                op,
                index: y,
                size: c,
            })?;
        idx.push((i * c + class) as i64);
        row_w.push(w[class]);
        keep.push(1.0);
    }
    let dev = lp.device();
    let weight_sum = row_w.iter().sum();
    let idx = Tensor::from_vec(idx, &[n])?.to_device(&dev)?;
    let row_w = Tensor::from_vec(row_w, &[n])?.to_device(&dev)?;
    let nll = lp
        .reshape(&[n * c])?
        .index_select(0, &idx)?
        .mul(&row_w)?
        .neg()?;
    let smooth = if smoothing {
        let wc = Tensor::from_slice(w, &[c])?.to_device(&dev)?;
        let keep = Tensor::from_vec(keep, &[n])?.to_device(&dev)?;
        Some(lp.mul(&wc)?.sum_dim(1, false)?.neg()?.mul(&keep)?)
    } else {
        None
    };
    Ok(Picked {
        nll,
        smooth,
        weight_sum,
    })
}

fn check_smoothing(op: &'static str, ls: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&ls) {
        return Err(Error::invalid_config(
            op,
            "label_smoothing",
            ls,
            "must be between 0.0 and 1.0",
        ));
    }
    Ok(())
}

/// Class-index losses from log-probabilities: [`nll_loss`] (`ls = 0`) and the
/// class-target [`cross_entropy`].
fn indexed(
    op: &'static str,
    lp: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
    ls: f32,
) -> Result<Tensor> {
    if target.dtype() != DType::I64 {
        return Err(Error::DType {
            op,
            dtype: target.dtype(),
            expected: Some(DType::I64),
        });
    }
    super::same_device(op, lp, target)?;
    let (lp2, c) = rows(op, lp, target.shape())?;
    let w = class_weights(op, weight, c)?;
    let p = pick(
        op,
        &lp2,
        &target.reshape(&[lp2.shape()[0]])?,
        &w,
        ignore_index,
        ls > 0.0,
    )?;
    let per_row = match &p.smooth {
        Some(s) => p
            .nll
            .mul_scalar(1.0 - ls)?
            .add(&s.mul_scalar(ls / c as f32)?)?,
        None => p.nll,
    };
    match reduction {
        Reduction::None => per_row.reshape(target.shape()),
        Reduction::Sum => per_row.sum(),
        Reduction::Mean => per_row.sum()?.div_scalar(p.weight_sum),
        Reduction::BatchMean => Reduction::BatchMean.apply(op, per_row),
    }
}

/// The negative log-likelihood of class targets under log-probabilities `input`
/// (`[N, C]`, `[C]` or `[N, C, d1, ...]`; PyTorch's `F.nll_loss`): `-weight[y] input[y]`
/// per target, targets equal to `ignore_index` (PyTorch's default: -100) skipped; the
/// mean divides by the summed weights of the targets counted.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let lp = Tensor::from_vec(vec![-0.5f32, -1.0, -2.0, -0.1], &[2, 2])?;
/// let y = Tensor::from_vec(vec![1i64, -100], &[2])?;
/// let l = F::nll_loss(&lp, &y, None, -100, Reduction::Mean)?;
/// assert_eq!(l.item()?, 1.0); // the second target is ignored
/// # Ok::<(), nn::Error>(())
/// ```
pub fn nll_loss(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Tensor> {
    indexed(
        "nll_loss",
        input,
        target,
        weight,
        ignore_index,
        reduction,
        0.0,
    )
}

/// Cross-entropy of logits `input` (`[N, C]`, `[C]` or `[N, C, d1, ...]`) against class
/// indices (int64, the input's shape without dim 1) or class probabilities (f32, the
/// input's shape), PyTorch's `F.cross_entropy(input, target, weight, ignore_index=...,
/// reduction=..., label_smoothing=...)`; see the module formulas for how weights,
/// ignored targets and smoothing combine.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Reduction, Tensor};
/// let x = Tensor::zeros(&[2, 4]); // uniform over 4 classes
/// let y = Tensor::from_vec(vec![0i64, 3], &[2])?;
/// let l = F::cross_entropy(&x, &y, None, -100, Reduction::Mean, 0.1)?;
/// assert!((l.item()? - 4f32.ln()).abs() < 1e-6);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn cross_entropy(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
    label_smoothing: f32,
) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    check_smoothing(OP, label_smoothing)?;
    let axis: usize = if input.rank() == 1 { 0 } else { 1 };
    if target.dtype() == DType::I64 {
        let plain = weight.is_none()
            && label_smoothing == 0.0
            && reduction == Reduction::Mean
            && input.rank() == 2
            && target.rank() == 1;
        if plain && !target.to_vec::<i64>()?.contains(&ignore_index) {
            return input.cross_entropy(target);
        }
        let lp = input.log_softmax(axis as isize)?;
        return indexed(
            OP,
            &lp,
            target,
            weight,
            ignore_index,
            reduction,
            label_smoothing,
        );
    }
    if target.shape() != input.shape() {
        return Err(Error::ShapeMismatch {
            op: "cross_entropy (probability targets must have the input's shape)",
            lhs: input.shape().to_vec(),
            rhs: target.shape().to_vec(),
        });
    }
    if input.rank() == 0 {
        return Err(Error::bad_shape(
            OP,
            input.shape(),
            "input must have a class dim",
        ));
    }
    super::same_device(OP, input, target)?;
    let c = input.shape()[axis];
    let lp = input.log_softmax(axis as isize)?;
    let mut t = target.to_dtype(DType::F32)?;
    if label_smoothing > 0.0 {
        t = t.affine(1.0 - label_smoothing, label_smoothing / c as f32)?;
    }
    if let Some(w) = weight {
        let w = class_weights(OP, Some(w), c)?;
        let mut view = vec![1; input.rank()];
        view[axis] = c;
        t = t.mul(&Tensor::from_vec(w, &view)?.to_device(&input.device())?)?;
    }
    let per_row = lp.mul(&t)?.sum_dim(axis as isize, false)?.neg()?;
    reduction.apply(OP, per_row)
}
