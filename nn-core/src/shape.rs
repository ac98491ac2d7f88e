//! Shapes and the index arithmetic shared by the backends (broadcasting, axes).

use crate::{Error, Result};
use smallvec::SmallVec;

/// Dimensions of a tensor, stored inline up to 6 dims (no allocation per op).
pub type Dims = SmallVec<[usize; 6]>;

/// The most elements a tensor may hold: its bytes (8 per element at most) must fit in
/// `isize`, as every allocation must.
pub const MAX_NUMEL: usize = (isize::MAX as usize) / 8;

/// Number of elements of a shape (1 for a scalar).
///
/// Meant for the shape of an existing tensor, whose element count was checked when it
/// was built; it wraps instead of overflowing. Shapes that come from a caller go
/// through [`checked_numel`].
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |n, &d| n.wrapping_mul(d))
}

/// Number of elements of a shape, or [`Error::BadShape`] naming `op` when the product
/// overflows or exceeds [`MAX_NUMEL`] (a shape no allocation could hold).
///
/// A zero dim makes the count 0 whatever the other dims are, as in PyTorch
/// (`[usize::MAX, 0]` holds no element).
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.contains(&0) {
        return Ok(0);
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_NUMEL)
        .ok_or_else(|| {
            Error::bad_shape(
                op,
                shape,
                format!("the element count overflows (at most {MAX_NUMEL} elements)"),
            )
        })
}

/// The loop bounds of an index kernel around `axis`: `(outer, inner)`, the element
/// counts of the dims before and after it.
///
/// Both are 0 when a dim other than `axis` is 0: such a tensor holds nothing, and its
/// other dims may be anything (`[4, usize::MAX, 0]`), so their plain product could
/// overflow or make a loop run `usize::MAX` empty turns. Otherwise the products are
/// those of a checked tensor's dims and fit.
pub fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    let (before, after) = (&shape[..axis], &shape[(axis + 1).min(shape.len())..]);
    if before.contains(&0) || after.contains(&0) {
        return (0, 0);
    }
    (numel(before), numel(after))
}

/// Row-major (C-contiguous) strides of a shape.
///
/// Strides of a shape with a zero dim may wrap (they are never used to address an
/// element there); for any other checked shape they fit.
pub fn strides(shape: &[usize]) -> Dims {
    let mut s: Dims = smallvec::smallvec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].wrapping_mul(shape[i + 1]);
    }
    s
}

/// NumPy broadcasting of two shapes; an error when they do not fit or when the
/// result would hold more than [`MAX_NUMEL`] elements.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Dims> {
    let n = a.len().max(b.len());
    let mut out: Dims = smallvec::smallvec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::mismatch(op, a, b)),
        };
    }
    checked_numel(op, &out)?;
    Ok(out)
}

/// Strides of `shape` viewed as broadcast to `out` (0 where a dim is broadcast).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Dims {
    let st = strides(shape);
    let off = out.len() - shape.len();
    let mut r: Dims = smallvec::smallvec![0; out.len()];
    for i in 0..shape.len() {
        r[i + off] = if shape[i] == 1 && out[i + off] != 1 {
            0
        } else {
            st[i]
        };
    }
    r
}

/// Resolves a possibly negative axis (`-1` is the last) against a rank.
pub fn axis(op: &'static str, shape: &[usize], axis: isize) -> Result<usize> {
    let rank = shape.len() as isize;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank.max(0) {
        return Err(Error::bad_shape(
            op,
            shape,
            format!("axis {axis} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_numel_rejects_overflow_and_accepts_zero_dims() {
        assert_eq!(checked_numel("t", &[]).ok(), Some(1));
        assert_eq!(checked_numel("t", &[3, 4]).ok(), Some(12));
        assert_eq!(checked_numel("t", &[usize::MAX, 0]).ok(), Some(0));
        assert_eq!(checked_numel("t", &[0, usize::MAX, 2]).ok(), Some(0));
        assert!(checked_numel("t", &[1 << 62, 4]).is_err());
        assert!(checked_numel("t", &[usize::MAX, 2]).is_err());
        assert!(checked_numel("t", &[MAX_NUMEL + 1]).is_err());
        assert_eq!(strides(&[0, usize::MAX, 2]).len(), 3);
    }

    #[test]
    fn broadcasting_checks_the_result_size() {
        assert!(broadcast_shapes("add", &[1 << 31, 1], &[1, 1 << 31]).is_err());
        assert!(broadcast_shapes("add", &[0, 1], &[1, usize::MAX]).is_ok());
    }
}
