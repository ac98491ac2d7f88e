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

/// How many rows each rayon task takes when `rows` rows of `len` elements in all are
/// worth splitting (about four tasks per thread); `None`: run them on the calling thread.
fn rows_per_task(len: usize, rows: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (len >= PARALLEL_LEN && threads > 1 && rows > 1).then(|| rows.div_ceil(threads * 4).max(1))
}

/// Runs `f(row_index, out_rows)` over blocks of `cols`-long rows of `out`, on rayon's
/// threads when the tensor is large enough to pay for the split.
fn for_rows(out: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if let Some(per) = rows_per_task(out.len(), out.len() / cols) {
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

/// `sum x` in eight running sums.
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let c = x.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for v in c {
        for k in 0..8 {
            acc[k] += v[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The affine parameters of a layer norm, each `[cols]` when present.
#[derive(Clone, Copy)]
pub(super) struct Affine<'a> {
    pub weight: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
}

/// Layer norm of each `cols`-long row of `x`: the output and, per row, `[mean, rstd]`.
pub(super) fn layer_norm(
    x: &[f32],
    cols: usize,
    eps: f32,
    aff: Affine<'_>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut y = try_filled(x.len(), 0.0f32, "layer_norm")?;
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let mut stats = try_filled(rows * 2, 0.0f32, "layer_norm")?;
    if cols == 0 {
        return Ok((y, stats));
    }
    let n = cols as f32;
    let row = |xr: &[f32], yr: &mut [f32], st: &mut [f32]| {
        let mean = sum(xr) / n;
        let mut acc = [0.0f32; 8];
        let c = xr.chunks_exact(8);
        let tail: f32 = c.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        for v in c {
            for k in 0..8 {
                acc[k] += (v[k] - mean) * (v[k] - mean);
            }
        }
        let var = (acc.iter().sum::<f32>() + tail) / n;
        let rstd = 1.0 / (var + eps).sqrt();
        for (y, &v) in yr.iter_mut().zip(xr) {
            *y = (v - mean) * rstd;
        }
        if let Some(w) = aff.weight {
            for (y, &w) in yr.iter_mut().zip(w) {
                *y *= w;
            }
        }
        if let Some(b) = aff.bias {
            for (y, &b) in yr.iter_mut().zip(b) {
                *y += b;
            }
        }
        st[0] = mean;
        st[1] = rstd;
    };
    if let Some(per) = rows_per_task(x.len(), rows) {
        y.par_chunks_mut(per * cols)
            .zip(stats.par_chunks_mut(per * 2))
            .zip(x.par_chunks(per * cols))
            .for_each(|((yb, sb), xb)| {
                for ((yr, st), xr) in yb
                    .chunks_exact_mut(cols)
                    .zip(sb.chunks_exact_mut(2))
                    .zip(xb.chunks_exact(cols))
                {
                    row(xr, yr, st);
                }
            });
    } else {
        for ((yr, st), xr) in y
            .chunks_exact_mut(cols)
            .zip(stats.chunks_exact_mut(2))
            .zip(x.chunks_exact(cols))
        {
            row(xr, yr, st);
        }
    }
    Ok((y, stats))
}

/// dx, dw (when the weight is given) and db (when asked for).
type LayerNormGrads = (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>);

/// The gradients of [`layer_norm`]: dx, and the column sums dw = sum g * xhat (when the
/// weight is given) and db = sum g (when `with_bias`).
pub(super) fn layer_norm_backward(
    x: &[f32],
    g: &[f32],
    stats: &[f32],
    cols: usize,
    weight: Option<&[f32]>,
    with_bias: bool,
) -> Result<LayerNormGrads> {
    let mut dx = try_filled(x.len(), 0.0f32, "layer_norm_backward")?;
    let want_dw = weight.is_some();
    if cols == 0 {
        let z = || try_filled(0, 0.0f32, "layer_norm_backward");
        let dw = want_dw.then(z).transpose()?;
        let db = with_bias.then(z).transpose()?;
        return Ok((dx, dw, db));
    }
    let rows = x.len() / cols;
    let n = cols as f32;
    // one block of rows: dx, and the block's partial dw and db
    let block = |r0: usize, dxb: &mut [f32]| -> (Vec<f32>, Vec<f32>) {
        let mut dw = vec![0.0f32; if want_dw { cols } else { 0 }];
        let mut db = vec![0.0f32; if with_bias { cols } else { 0 }];
        let mut gh = vec![0.0f32; cols];
        for (i, dr) in dxb.chunks_exact_mut(cols).enumerate() {
            let r = r0 + i;
            let span = r * cols..(r + 1) * cols;
            let (xr, gr) = (&x[span.clone()], &g[span]);
            let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
            match weight {
                Some(w) => {
                    for ((h, &g), &w) in gh.iter_mut().zip(gr).zip(w) {
                        *h = g * w;
                    }
                }
                None => gh.copy_from_slice(gr),
            }
            // dr holds xhat until the last loop
            for (d, &v) in dr.iter_mut().zip(xr) {
                *d = (v - mean) * rstd;
            }
            let mean_gh = sum(&gh) / n;
            let mean_ghx = dot(&gh, dr) / n;
            if want_dw {
                for ((a, &g), &xh) in dw.iter_mut().zip(gr).zip(dr.iter()) {
                    *a += g * xh;
                }
            }
            if with_bias {
                for (a, &g) in db.iter_mut().zip(gr) {
                    *a += g;
                }
            }
            for (d, &h) in dr.iter_mut().zip(&gh) {
                *d = rstd * (h - mean_gh - *d * mean_ghx);
            }
        }
        (dw, db)
    };
    let threads = rayon::current_num_threads();
    let (dw, db) = if x.len() >= PARALLEL_LEN && threads > 1 && rows > 1 {
        let per = rows.div_ceil(threads * 2).max(1);
        let parts: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(per * cols)
            .enumerate()
            .map(|(i, b)| block(i * per, b))
            .collect();
        let mut it = parts.into_iter();
        let first = it.next().unwrap_or_default();
        it.fold(first, |(mut aw, mut ab), (w, b)| {
            aw.iter_mut().zip(&w).for_each(|(a, v)| *a += v);
            ab.iter_mut().zip(&b).for_each(|(a, v)| *a += v);
            (aw, ab)
        })
    } else {
        block(0, &mut dx)
    };
    Ok((dx, want_dw.then_some(dw), with_bias.then_some(db)))
}
