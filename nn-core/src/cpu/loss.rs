//! Fused softmax cross-entropy on the host: the loss in one pass over the logits, its
//! gradient in one pass over the saved probabilities.
//!
//! Per row: m = max x, lse = m + ln sum exp(x - m), loss_row = lse - x[t], p = exp(x - lse);
//! loss = mean of the rows' losses; dL/dx = g (p - onehot(t)) / rows.

use crate::host::try_filled;
use crate::{Error, Result};

/// The class of row `i`, or an error for one out of `0..classes`.
fn class(t: i64, classes: usize) -> Result<usize> {
    usize::try_from(t)
        .ok()
        .filter(|&c| c < classes)
        .ok_or(Error::IndexOutOfRange {
            op: "cross_entropy",
            index: t,
            size: classes,
        })
}

/// The mean loss and the softmax probabilities of `x` (`t.len()` rows of `classes`).
pub(super) fn cross_entropy(x: &[f32], t: &[i64], classes: usize) -> Result<(f32, Vec<f32>)> {
    let mut probs = try_filled(x.len(), 0.0f32, "cross_entropy")?;
    if classes == 0 || t.is_empty() {
        return Ok((0.0, probs));
    }
    let mut total = 0.0f32;
    for ((row, p), &t) in x
        .chunks_exact(classes)
        .zip(probs.chunks_exact_mut(classes))
        .zip(t)
    {
        let c = class(t, classes)?;
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (p, &v) in p.iter_mut().zip(row) {
            *p = (v - m).exp();
            sum += *p;
        }
        let inv = 1.0 / sum;
        for p in p.iter_mut() {
            *p *= inv;
        }
        total += m + sum.ln() - row[c];
    }
    Ok((total / t.len() as f32, probs))
}

/// `g (p - onehot(t)) / rows`.
pub(super) fn cross_entropy_backward(
    p: &[f32],
    t: &[i64],
    g: f32,
    classes: usize,
) -> Result<Vec<f32>> {
    let mut out = try_filled(p.len(), 0.0f32, "cross_entropy")?;
    if classes == 0 || t.is_empty() {
        return Ok(out);
    }
    let k = g / t.len() as f32;
    for ((o, p), &t) in out
        .chunks_exact_mut(classes)
        .zip(p.chunks_exact(classes))
        .zip(t)
    {
        let c = class(t, classes)?;
        for (o, &p) in o.iter_mut().zip(p) {
            *o = k * p;
        }
        o[c] -= k;
    }
    Ok(out)
}
