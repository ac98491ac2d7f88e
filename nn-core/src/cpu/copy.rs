//! Copies on the host: permutes, slices along an axis, concatenation, row gathers and
//! their adjoint. Shapes, axes and indices were validated by the caller
//! (`check`).

use crate::host::{try_filled, try_with_capacity};
use crate::shape::{numel, outer_inner, strides};
use crate::{Error, Result};

pub(super) fn permute<T: Copy + Send + Sync + 'static>(
    x: &[T],
    shape: &[usize],
    perm: &[usize],
) -> Result<Vec<T>> {
    let st = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src_st: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let n = x.len();
    if super::par::worth(n) && !out_shape.is_empty() {
        return permute_par(x, &out_shape, &src_st);
    }
    let mut res = try_with_capacity(n, "permute")?;
    if out_shape.is_empty() {
        res.extend_from_slice(x);
        return Ok(res);
    }
    let last = out_shape.len() - 1;
    let inner = out_shape[last];
    let is = src_st[last];
    let outer = n.checked_div(inner).unwrap_or(0);
    let mut rows = super::par::Rows::at_row(&out_shape[..last], [&src_st[..last]], 0);
    for _ in 0..outer {
        let [o] = rows.at;
        if is == 1 {
            // the innermost dim stays innermost: whole runs move at once
            res.extend_from_slice(&x[o..o + inner]);
        } else {
            for j in 0..inner {
                res.push(x[o + j * is]);
            }
        }
        rows.advance();
    }
    Ok(res)
}

/// [`permute`] of a large tensor, split over the pool by chunks of whole output rows;
/// `out_shape` is the permuted shape (rank >= 1), `src_st` the source stride of each of
/// its dims.
fn permute_par<T: Copy + Send + Sync + 'static>(
    x: &[T],
    out_shape: &[usize],
    src_st: &[usize],
) -> Result<Vec<T>> {
    let last = out_shape.len() - 1;
    let (inner, is) = (out_shape[last], src_st[last]);
    super::par::build(x.len(), inner, "permute", |start, dst| {
        let mut rows =
            super::par::Rows::at_row(&out_shape[..last], [&src_st[..last]], start / inner.max(1));
        let mut written = 0;
        for row in dst.chunks_mut(inner) {
            let [o] = rows.at;
            if is == 1 {
                for (d, &v) in row.iter_mut().zip(&x[o..o + inner]) {
                    d.write(v);
                    written += 1;
                }
            } else {
                for (j, d) in row.iter_mut().enumerate() {
                    d.write(x[o + j * is]);
                    written += 1;
                }
            }
            rows.advance();
        }
        written
    })
}

pub(super) fn narrow<T: Copy + 'static>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> Result<Vec<T>> {
    let (outer, inner) = outer_inner(shape, axis);
    let d = shape[axis];
    let mut res = try_with_capacity(outer * len * inner, "narrow")?;
    for o in 0..outer {
        let base = (o * d + start) * inner;
        res.extend_from_slice(&x[base..base + len * inner]);
    }
    Ok(res)
}

pub(super) fn cat<T: Copy + 'static>(parts: &[(&[T], &[usize])], axis: usize) -> Result<Vec<T>> {
    let Some((_, s0)) = parts.first() else {
        return Ok(Vec::new());
    };
    let total: usize = parts.iter().map(|(x, _)| x.len()).sum();
    if total == 0 {
        return Ok(Vec::new());
    }
    // the parts share every dim but `axis`, and one holds elements: they are all nonzero
    let (outer, inner) = outer_inner(s0, axis);
    let mut res = try_with_capacity(total, "cat")?;
    for o in 0..outer {
        for (x, s) in parts {
            let blk = s[axis] * inner;
            res.extend_from_slice(&x[o * blk..(o + 1) * blk]);
        }
    }
    Ok(res)
}

pub(super) fn check_indices(op: &'static str, idx: &[i64], size: usize) -> Result<Vec<usize>> {
    idx.iter()
        .map(|&i| {
            // an axis longer than i64::MAX holds every non-negative index; a negative
            // one counts from the end (checked: `i64::MIN + size` may not fit)
            let j = match usize::try_from(i) {
                Ok(j) => Some(j),
                Err(_) => usize::try_from(i.unsigned_abs())
                    .ok()
                    .and_then(|back| size.checked_sub(back)),
            };
            match j {
                Some(j) if j < size => Ok(j),
                _ => Err(Error::IndexOutOfRange { op, index: i, size }),
            }
        })
        .collect()
}

pub(super) fn index_select<T: Copy + 'static>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> Result<Vec<T>> {
    let (outer, inner) = outer_inner(shape, axis);
    let d = shape[axis];
    let n = crate::shape::checked_numel("index_select", &[outer, idx.len(), inner])?;
    let mut res = try_with_capacity(n, "index_select")?;
    for o in 0..outer {
        for &i in idx {
            let base = (o * d + i) * inner;
            res.extend_from_slice(&x[base..base + inner]);
        }
    }
    Ok(res)
}

pub(super) fn index_add(
    x: &[f32],
    shape: &[usize],
    axis: usize,
    idx: &[usize],
    out_shape: &[usize],
) -> Result<Vec<f32>> {
    let (outer, inner) = outer_inner(shape, axis);
    let d_out = out_shape[axis];
    let d_in = shape[axis];
    let mut res = try_filled(numel(out_shape), 0.0f32, "index_add")?;
    for o in 0..outer {
        for (r, &i) in idx.iter().enumerate() {
            let src = (o * d_in + r) * inner;
            let dst = (o * d_out + i) * inner;
            for j in 0..inner {
                res[dst + j] += x[src + j];
            }
        }
    }
    Ok(res)
}
