//! Reductions on the host: sum/max/min over a set of axes, argmax over one. Shapes and
//! axes were validated by the caller (`check`).

use crate::backend::ReduceOp;
use crate::host::try_filled;
use crate::shape::numel;
use crate::Result;

/// Element types the reductions understand.
pub(super) trait Elem: 'static + Copy + PartialOrd {
    fn is_nan(self) -> bool;
    /// Sum that never panics (integers wrap, as PyTorch's int64 sum does).
    fn plus(self, v: Self) -> Self;
    const ZERO: Self;
    const MIN: Self;
    const MAX: Self;
}
impl Elem for f32 {
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn plus(self, v: Self) -> Self {
        self + v
    }
    const ZERO: Self = 0.0;
    const MIN: Self = f32::NEG_INFINITY;
    const MAX: Self = f32::INFINITY;
}
impl Elem for i64 {
    fn is_nan(self) -> bool {
        false
    }
    fn plus(self, v: Self) -> Self {
        self.wrapping_add(v)
    }
    const ZERO: Self = 0;
    const MIN: Self = i64::MIN;
    const MAX: Self = i64::MAX;
}

pub(super) fn reduce<T: Elem>(
    op: ReduceOp,
    x: &[T],
    shape: &[usize],
    axes: &[usize],
) -> Result<Vec<T>> {
    let mut out_shape = shape.to_vec();
    for &a in axes {
        out_shape[a] = 1;
    }
    let n_out = numel(&out_shape);
    let init = match op {
        ReduceOp::Max => T::MIN,
        ReduceOp::Min => T::MAX,
        _ => T::ZERO,
    };
    let f = |acc: T, v: T| -> T {
        match op {
            ReduceOp::Max => {
                // NaN propagates like PyTorch's max
                if v > acc || v.is_nan() {
                    v
                } else {
                    acc
                }
            }
            ReduceOp::Min => {
                if v < acc || v.is_nan() {
                    v
                } else {
                    acc
                }
            }
            _ => acc.plus(v),
        }
    };
    let mut out = try_filled(n_out, init, "reduce")?;
    if x.is_empty() {
        return Ok(out);
    }
    // split into outer (kept) x reduced-contiguous-tail x inner (kept) when axes are contiguous
    let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && !axes.is_empty() {
        let (a0, a1) = (axes[0], axes[axes.len() - 1] + 1);
        let outer: usize = shape[..a0].iter().product();
        let red: usize = shape[a0..a1].iter().product();
        let inner: usize = shape[a1..].iter().product();
        for o in 0..outer {
            let dst = &mut out[o * inner..(o + 1) * inner];
            for r in 0..red {
                let src = &x[(o * red + r) * inner..(o * red + r + 1) * inner];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = f(*d, v);
                }
            }
        }
        return Ok(out);
    }
    // Other axis sets: merge neighbouring dims that are both reduced or both kept, then
    // walk the input a contiguous run of the last merged dim at a time (batch norm's
    // [n, c, h, w] -> [c] sums whole h*w rows into one output).
    let mut dims: Vec<(usize, bool)> = Vec::with_capacity(shape.len());
    for (d, &size) in shape.iter().enumerate() {
        let red = axes.contains(&d);
        match dims.last_mut() {
            _ if size == 1 => {}
            Some((s, r)) if *r == red => *s *= size,
            _ => dims.push((size, red)),
        }
    }
    let Some(&(inner, inner_red)) = dims.last() else {
        out[0] = f(out[0], x[0]);
        return Ok(out);
    };
    let lead = &dims[..dims.len() - 1];
    let mut ost = vec![0usize; lead.len()];
    let mut step = if inner_red { 1 } else { inner };
    for (i, &(size, red)) in lead.iter().enumerate().rev() {
        if !red {
            ost[i] = step;
            step *= size;
        }
    }
    let mut idx = vec![0usize; lead.len()];
    let mut o = 0usize;
    for row in x.chunks_exact(inner) {
        if inner_red {
            out[o] = match op {
                ReduceOp::Sum => sum_row(out[o], row),
                _ => row.iter().fold(out[o], |a, &v| f(a, v)),
            };
        } else {
            for (d, &v) in out[o..o + inner].iter_mut().zip(row) {
                *d = f(*d, v);
            }
        }
        for d in (0..lead.len()).rev() {
            idx[d] += 1;
            o += ost[d];
            if idx[d] < lead[d].0 {
                break;
            }
            o -= ost[d] * lead[d].0;
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// `init` plus the sum of `row`, in eight running sums (so the adds vectorize; the
/// order differs from a left fold by rounding only).
fn sum_row<T: Elem>(init: T, row: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.plus(v);
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    let s = (a0.plus(a4))
        .plus(a1.plus(a5))
        .plus((a2.plus(a6)).plus(a3.plus(a7)));
    chunks
        .remainder()
        .iter()
        .fold(init.plus(s), |a, &v| a.plus(v))
}

/// Index of the first maximum along `axis` (a NaN counts as the maximum, as in PyTorch).
pub(super) fn argmax<T: Elem>(x: &[T], shape: &[usize], axis: usize) -> Result<Vec<i64>> {
    let (outer, inner) = crate::shape::outer_inner(shape, axis);
    let red = shape[axis];
    let mut out = try_filled(outer * inner, 0i64, "argmax")?;
    for o in 0..outer {
        for i in 0..inner {
            let mut best = T::MIN;
            let mut bi = 0i64;
            for r in 0..red {
                let v = x[(o * red + r) * inner + i];
                if v > best || (r == 0) || v.is_nan() {
                    best = v;
                    bi = r as i64;
                    if v.is_nan() {
                        break;
                    }
                }
            }
            out[o * inner + i] = bi;
        }
    }
    Ok(out)
}
