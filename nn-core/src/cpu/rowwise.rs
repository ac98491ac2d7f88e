//! Row-wise fused kernels on the host: softmax along the last axis and layer
//! normalization over a row, forward and backward, each reading a row once for its
//! statistics and once more to write it (instead of a dozen full-tensor passes and
//! temporaries of the composites).
//!
//! Softmax: y = exp(x - max x) / sum exp(x - max x); dx = y * (g - sum(g * y)).
//! LayerNorm: mu, var (biased) of the row, rstd = 1 / sqrt(var + eps),
//! xhat = (x - mu) * rstd, y = xhat * w + b; with gh = g * w,
//! dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), dw = sum_rows g * xhat,
//! db = sum_rows g.

use crate::host::try_filled;
use crate::Result;
use rayon::prelude::*;

/// Below this many elements the rows run on the calling thread.
const PARALLEL_LEN: usize = 1 << 15;

/// Runs `f(row_index, out_rows)` over blocks of `cols`-long rows of `out`, on rayon's
/// threads when the tensor is large enough to pay for the split.
fn for_rows(out: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / cols;
    let threads = rayon::current_num_threads();
    if out.len() >= PARALLEL_LEN && threads > 1 && rows > 1 {
        let per = rows.div_ceil(threads * 4).max(1);
        out.par_chunks_mut(per * cols)
            .enumerate()
            .for_each(|(i, block)| f(i * per, block));
    } else {
        f(0, out);
    }
}

/// Softmax of each `cols`-long row of `x`.
pub(super) fn softmax(x: &[f32], cols: usize) -> Result<Vec<f32>> {
    let mut y = try_filled(x.len(), 0.0f32, "softmax")?;
    if cols == 0 {
        return Ok(y);
    }
    for_rows(&mut y, cols, |r0, block| {
        for (i, yr) in block.chunks_exact_mut(cols).enumerate() {
            let xr = &x[(r0 + i) * cols..(r0 + i + 1) * cols];
            // NOTE: a NaN anywhere, or a row of -inf only (every key masked), makes the
            // whole row NaN through x - m, as the composite and PyTorch do
            let m = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for (y, &v) in yr.iter_mut().zip(xr) {
                *y = (v - m).exp();
                sum += *y;
            }
            for y in yr.iter_mut() {
                *y /= sum;
            }
        }
    });
    Ok(y)
}

/// The input gradient of [`softmax`] from its output `y` and the output gradient `g`.
pub(super) fn softmax_backward(y: &[f32], g: &[f32], cols: usize) -> Result<Vec<f32>> {
    let mut dx = try_filled(y.len(), 0.0f32, "softmax_backward")?;
    if cols == 0 {
        return Ok(dx);
    }
    for_rows(&mut dx, cols, |r0, block| {
        for (i, dr) in block.chunks_exact_mut(cols).enumerate() {
            let span = (r0 + i) * cols..(r0 + i + 1) * cols;
            let (yr, gr) = (&y[span.clone()], &g[span]);
            let dot = dot(yr, gr);
            for ((d, &y), &g) in dr.iter_mut().zip(yr).zip(gr) {
                *d = y * (g - dot);
            }
        }
    });
    Ok(dx)
}

/// `sum a * b` in eight running sums, so the loop vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}
