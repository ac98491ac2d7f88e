//! Validation of every argument the public backend trait receives, before a host loop
//! indexes anything: the loops in the sibling files trust what passes here, so a bad
//! axis, shape or length is an `Err`, never a panic.

use crate::backend::MatmulSpec;
use crate::{Error, Result};

/// Element count of `shape`, or `BadShape` when it overflows `usize`.
pub(super) fn numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::bad_shape(op, shape, "element count overflows usize"))
}

/// Fails unless `shape` describes exactly `len` elements.
pub(super) fn len(op: &'static str, shape: &[usize], len: usize) -> Result<()> {
    if numel(op, shape)? != len {
        return Err(Error::bad_shape(
            op,
            shape,
            format!("storage holds {len} elements"),
        ));
    }
    Ok(())
}

/// Fails unless `axis < shape.len()`.
pub(super) fn axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
    if axis >= shape.len() {
        return Err(Error::bad_shape(
            op,
            shape,
            format!("axis {axis} out of range for rank {}", shape.len()),
        ));
    }
    Ok(())
}

/// Fails unless `shape` broadcasts to `out` (NumPy rules, aligned on the right).
pub(super) fn broadcasts(op: &'static str, shape: &[usize], out: &[usize]) -> Result<()> {
    let fits = shape.len() <= out.len()
        && shape
            .iter()
            .rev()
            .zip(out.iter().rev())
            .all(|(&d, &o)| d == o || d == 1);
    if !fits {
        return Err(Error::mismatch(op, shape, out));
    }
    Ok(())
}

/// The two operands of an elementwise op (their shapes against their element counts)
/// and the output they broadcast to.
pub(super) fn broadcast_operands(
    op: &'static str,
    (lhs_shape, lhs_len): (&[usize], usize),
    (rhs_shape, rhs_len): (&[usize], usize),
    out: &[usize],
) -> Result<()> {
    len(op, lhs_shape, lhs_len)?;
    len(op, rhs_shape, rhs_len)?;
    numel(op, out)?;
    broadcasts(op, lhs_shape, out)?;
    broadcasts(op, rhs_shape, out)
}

/// Fails unless `axes` are sorted, unique and below the rank.
pub(super) fn axes(op: &'static str, shape: &[usize], axes: &[usize]) -> Result<()> {
    let sorted = axes.windows(2).all(|w| w[0] < w[1]);
    if !sorted || axes.last().is_some_and(|&a| a >= shape.len()) {
        return Err(Error::bad_shape(
            op,
            shape,
            format!("axes {axes:?} must be sorted, unique and below the rank"),
        ));
    }
    Ok(())
}

/// Fails unless `perm` is a permutation of `0..shape.len()`.
pub(super) fn perm(shape: &[usize], perm: &[usize]) -> Result<()> {
    let mut seen = vec![false; shape.len()];
    let ok = perm.len() == shape.len()
        && perm
            .iter()
            .all(|&p| seen.get_mut(p).is_some_and(|s| !std::mem::replace(s, true)));
    if !ok {
        return Err(Error::bad_shape(
            "permute",
            shape,
            format!("{perm:?} is not a permutation of the dims"),
        ));
    }
    Ok(())
}

/// Fails unless `[start, start + n)` lies inside `shape[axis]`.
pub(super) fn range(shape: &[usize], ax: usize, start: usize, n: usize) -> Result<()> {
    axis("narrow", shape, ax)?;
    match (start.checked_add(n), shape.get(ax)) {
        (Some(end), Some(&d)) if end <= d => Ok(()),
        _ => Err(Error::bad_shape(
            "narrow",
            shape,
            format!("range {start}..{start}+{n} out of bounds on axis {ax}"),
        )),
    }
}

/// Fails unless `other` equals `shape` on every dim but `ax`.
pub(super) fn same_but_axis(
    op: &'static str,
    shape: &[usize],
    other: &[usize],
    ax: usize,
) -> Result<()> {
    let ok = shape.len() == other.len()
        && shape
            .iter()
            .zip(other)
            .enumerate()
            .all(|(i, (a, b))| i == ax || a == b);
    if !ok {
        return Err(Error::mismatch(op, shape, other));
    }
    Ok(())
}

/// Validates a matmul spec against the operand lengths; returns the output length.
pub(super) fn matmul(s: &MatmulSpec, lhs_len: usize, rhs_len: usize) -> Result<usize> {
    let dims = [s.batch, s.m, s.n, s.k];
    let bad = |msg: &str| Error::bad_shape("matmul", &dims, format!("[batch, m, n, k]: {msg}"));
    let mk = s.m.checked_mul(s.k).ok_or_else(|| bad("m * k overflows"))?;
    let kn = s.k.checked_mul(s.n).ok_or_else(|| bad("k * n overflows"))?;
    let out = numel("matmul", &dims[..3])?;
    if s.lhs_batch.len() != s.batch || s.rhs_batch.len() != s.batch {
        return Err(bad("batch index lists must have `batch` entries"));
    }
    // every matrix a batch entry names must lie inside its operand
    let inside = |idx: &[usize], size: usize, len: usize| {
        idx.iter().all(|&b| {
            b.checked_mul(size)
                .and_then(|o| o.checked_add(size))
                .is_some_and(|end| end <= len)
        })
    };
    if !inside(&s.lhs_batch, mk, lhs_len) {
        return Err(bad(&format!("lhs of {lhs_len} elements is too short")));
    }
    if !inside(&s.rhs_batch, kn, rhs_len) {
        return Err(bad(&format!("rhs of {rhs_len} elements is too short")));
    }
    Ok(out)
}

/// Fails unless every length equals `want`.
pub(super) fn lens(op: &'static str, want: usize, got: &[usize]) -> Result<()> {
    match got.iter().find(|&&g| g != want) {
        Some(&g) => Err(Error::mismatch(op, &[want], &[g])),
        None => Ok(()),
    }
}
