//! Outputs built by the rayon pool: large elementwise results written in chunks by
//! every thread (and first touched there, so the page faults are split too), the same
//! values as a single pass.

use crate::host::try_with_capacity;
use crate::{Error, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Outputs below this many elements are built on the calling thread (a split costs
/// more than it saves on 2 cores).
pub(super) const PARALLEL_LEN: usize = 1 << 16;
/// Elements per task of a split output.
const CHUNK: usize = 1 << 14;

/// Whether an output of `n` elements is worth splitting over the pool.
pub(super) fn worth(n: usize) -> bool {
    n >= PARALLEL_LEN && rayon::current_num_threads() > 1
}

/// A vector of `n` elements, each chunk (of about `CHUNK` elements, a multiple of
/// `align`) written by `fill(start, dst)` on some thread of the pool, `start` being the
/// chunk's first index. `fill` returns how many elements it wrote from the front of
/// `dst`; a chunk left short is an error (not one the caller can cause: the kernels
/// zip their sources with `dst`), never uninitialized memory.
pub(super) fn build<T: Send + 'static>(
    n: usize,
    align: usize,
    op: &'static str,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) -> usize + Sync,
) -> Result<Vec<T>> {
    let mut out = try_with_capacity(n, op)?;
    let step = CHUNK.div_ceil(align.max(1)) * align.max(1);
    let full = fill_chunks(&mut out.spare_capacity_mut()[..n], step, &fill);
    if !full {
        return Err(Error::custom(format!(
            "{op}: a parallel chunk was left short"
        )));
    }
    // SAFETY: the chunks partition the first `n` slots of the spare capacity, and each
    // one reported every one of its slots written (`full`), so all `n` are initialized.
    unsafe { out.set_len(n) };
    Ok(out)
}

/// `build`'s split: `fill` of each `step`-long chunk of `dst` on the pool, whether every
/// chunk was written whole. Behind a `dyn` so that rayon's machinery is compiled once per
/// element type, not once per kernel (each kernel's closure made its own copy of
/// rayon's job and bridge code: a third of nn-core's optimized code, and of its release
/// build time).
fn fill_chunks<T: Send>(
    dst: &mut [MaybeUninit<T>],
    step: usize,
    fill: &(dyn Fn(usize, &mut [MaybeUninit<T>]) -> usize + Sync),
) -> bool {
    dst.par_chunks_mut(step)
        .enumerate()
        .map(|(c, d)| fill(c * step, d) == d.len())
        .reduce(|| true, |a, b| a && b)
}

/// `f` of each element of `x`, split over the pool.
pub(super) fn map<T: Copy + Sync, O: Send + 'static>(
    x: &[T],
    op: &'static str,
    f: impl Fn(T) -> O + Sync,
) -> Result<Vec<O>> {
    build(x.len(), 1, op, |s, d| {
        d.iter_mut()
            .zip(&x[s..])
            .map(|(d, &v)| {
                d.write(f(v));
            })
            .count()
    })
}

/// `f` of each pair of elements of `a` and `b` (same length), split over the pool.
pub(super) fn zip<A: Copy + Sync, B: Copy + Sync, O: Send + 'static>(
    a: &[A],
    b: &[B],
    op: &'static str,
    f: impl Fn(A, B) -> O + Sync,
) -> Result<Vec<O>> {
    build(a.len().min(b.len()), 1, op, |s, d| {
        d.iter_mut()
            .zip(&a[s..])
            .zip(&b[s..])
            .map(|((d, &x), &y)| {
                d.write(f(x, y));
            })
            .count()
    })
}

/// `n` copies of `v`, written by the pool when large.
pub(crate) fn filled(n: usize, v: f32, op: &'static str) -> Result<Vec<f32>> {
    if !worth(n) {
        return crate::host::try_filled(n, v, op);
    }
    build(n, 1, op, |_, d| {
        if v.to_bits() == 0 {
            // SAFETY: `d` is `d.len()` writable f32 slots, and all-zero bytes are the
            // f32 0.0: a memset (the element loop below stores 16 bytes at a time)
            unsafe { std::ptr::write_bytes(d.as_mut_ptr(), 0, d.len()) };
        } else {
            d.fill(MaybeUninit::new(v));
        }
        d.len()
    })
}

/// The rows of an output walked in order, with where each row starts in `K` strided
/// sources: `shape` is the output's outer dims (all but the innermost), `strides[k]`
/// source `k`'s stride for each of them (0 where it is broadcast). Shared by the
/// broadcasting and permuting kernels, serial and split.
pub(super) struct Rows<'s, const K: usize> {
    idx: Vec<usize>,
    shape: &'s [usize],
    strides: [&'s [usize]; K],
    /// Each source's offset of the current row's first element.
    pub(super) at: [usize; K],
}

impl<'s, const K: usize> Rows<'s, K> {
    /// Positioned at output row `row` (which must exist unless it is 0).
    pub(super) fn at_row(shape: &'s [usize], strides: [&'s [usize]; K], row: usize) -> Self {
        let mut idx = vec![0usize; shape.len()];
        let mut at = [0usize; K];
        let mut r = row;
        if r > 0 {
            for d in (0..shape.len()).rev() {
                idx[d] = r % shape[d];
                r /= shape[d];
                for (o, st) in at.iter_mut().zip(strides) {
                    *o += idx[d] * st[d];
                }
            }
        }
        Rows {
            idx,
            shape,
            strides,
            at,
        }
    }

    /// Moves to the next row (an odometer over `shape`).
    pub(super) fn advance(&mut self) {
        for d in (0..self.shape.len()).rev() {
            self.idx[d] += 1;
            for (o, st) in self.at.iter_mut().zip(self.strides) {
                *o += st[d];
            }
            if self.idx[d] < self.shape[d] {
                break;
            }
            for (o, st) in self.at.iter_mut().zip(self.strides) {
                *o -= st[d] * self.shape[d];
            }
            self.idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::copy::permute;
    use super::super::elementwise::{binary_f32, relu_backward, unary};
    use crate::backend::{BinaryOp, UnaryOp};
    use crate::host::HostData;
    use crate::Result;

    /// Values with a few exact zeros and negatives, from a fixed integer hash.
    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + salt * 104_729) % 1013) as f32 / 64.0 - 7.0)
            .collect()
    }

    /// Index of output element `i` into an operand of shape `s` broadcast to `out`.
    fn source(i: usize, s: &[usize], out: &[usize]) -> usize {
        let (mut rem, mut idx, mut stride) = (i, 0, 1);
        let pad = out.len() - s.len();
        for d in (0..out.len()).rev() {
            let coord = rem % out[d];
            rem /= out[d];
            if d >= pad {
                let sd = s[d - pad];
                if sd != 1 {
                    idx += coord * stride;
                }
                stride *= sd;
            }
        }
        idx
    }

    #[test]
    fn split_outputs_match_the_definition() -> Result<()> {
        assert!(
            rayon::current_num_threads() > 1 || cfg!(miri),
            "tests need 2 threads"
        );
        let out = [3usize, 5, 67, 71]; // 71355 elements: over the split threshold
        let shapes: [&[usize]; 7] = [
            &out,
            &[1, 5, 1, 1],
            &[3, 1, 67, 1],
            &[71],
            &[],
            &[3, 5, 67, 1],
            &[1, 1, 1, 71],
        ];
        let n: usize = out.iter().product();
        for sa in shapes {
            for sb in shapes {
                // one operand full size, or the two-sided broadcast
                let full = sa == out.as_slice() || sb == out.as_slice();
                if !full && (sa, sb) != ([3, 5, 67, 1].as_slice(), [1, 1, 1, 71].as_slice()) {
                    continue;
                }
                let la: usize = sa.iter().product();
                let lb: usize = sb.iter().product();
                let (a, b) = (values(la, 1), values(lb, 2));
                let HostData::F32(got) = binary_f32(BinaryOp::Sub, &a, sa, &b, sb, &out)? else {
                    panic!("f32 op gave another dtype");
                };
                assert_eq!(got.len(), n);
                for (i, g) in got.iter().enumerate() {
                    let want = a[source(i, sa, &out)] - b[source(i, sb, &out)];
                    assert_eq!(g.to_bits(), want.to_bits(), "{sa:?} - {sb:?} at {i}");
                }
            }
        }
        let x = values(n, 3);
        let g = values(n, 4);
        let relu = unary(UnaryOp::Relu, &x)?;
        let back = relu_backward(&x, &g)?;
        for i in 0..n {
            assert_eq!(relu[i], if x[i] > 0.0 { x[i] } else { 0.0 });
            assert_eq!(back[i], if x[i] > 0.0 { g[i] } else { 0.0 });
        }
        assert!(super::filled(n, 1.5f32, "test")?.iter().all(|&v| v == 1.5));
        assert!(super::filled(n, 0.0f32, "test")?.iter().all(|&v| v == 0.0));
        Ok(())
    }

    #[test]
    fn split_permutes_match_the_definition() -> Result<()> {
        let shape = [3usize, 7, 61, 53]; // 67893 elements: over the split threshold
        let x = values(shape.iter().product(), 5);
        for perm in [[1, 0, 2, 3], [0, 2, 3, 1], [3, 2, 1, 0], [0, 1, 2, 3]] {
            let got = permute(&x, &shape, &perm)?;
            let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            for (i, g) in got.iter().enumerate() {
                // the output coordinates of i, read back at the source
                let (mut rem, mut src) = (i, [0usize; 4]);
                for d in (0..4).rev() {
                    src[perm[d]] = rem % out[d];
                    rem /= out[d];
                }
                let at = ((src[0] * shape[1] + src[1]) * shape[2] + src[2]) * shape[3] + src[3];
                assert_eq!(*g, x[at], "{perm:?} at {i}");
            }
        }
        Ok(())
    }
}
