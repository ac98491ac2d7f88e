//! Reductions on the host: sum/max/min over a set of axes, argmax over one. Shapes and
//! axes were validated by the caller (`check`).

use crate::backend::ReduceOp;
use crate::host::try_filled;
use crate::shape::{broadcast_strides, numel};
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
    let ost = broadcast_strides(&out_shape, shape);
    let ost: Vec<usize> = (0..shape.len())
        .map(|d| if axes.contains(&d) { 0 } else { ost[d] })
        .collect();
    let mut idx = vec![0usize; shape.len()];
    let mut o = 0usize;
    for &v in x {
        out[o] = f(out[o], v);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            o += ost[d];
            if idx[d] < shape[d] {
                break;
            }
            o -= ost[d] * shape[d];
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// Index of the first maximum along `axis` (a NaN counts as the maximum, as in PyTorch).
pub(super) fn argmax<T: Elem>(x: &[T], shape: &[usize], axis: usize) -> Result<Vec<i64>> {
    let outer: usize = shape[..axis].iter().product();
    let red = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
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
