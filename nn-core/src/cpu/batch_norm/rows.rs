//! The row-wise forms of the batch-norm passes, for short planes (`inner` below
//! [`SHORT`]: `BatchNorm1d` on `[n, c]` has planes of one value, the last stages of a
//! ResNet a few): each sample's `width = c * inner` contiguous values is one row, the
//! per-channel vectors are spread over the row's columns (`j / inner` is the channel),
//! and the reductions are column sums (f32 over blocks of rows, f64 across blocks, the
//! row ranges split over the pool), so every loop runs over contiguous memory and
//! vectorizes. The values are those of the plane-wise passes within rounding; the
//! output pass rounds each step as `channel_affine` does.

use super::{masked, par};
use crate::Result;
use rayon::prelude::*;

/// Planes shorter than this take the row-wise passes.
pub(super) const SHORT: usize = 32;

/// Rows per f32 accumulation block of [`col_sums`].
const BLOCK: usize = 64;

/// The f64 column sums, over `outer` rows, of what `row(o, acc)` adds into `n_acc` f32
/// accumulators for row `o`; split by row ranges over the pool when `len` is large.
fn col_sums(
    outer: usize,
    n_acc: usize,
    len: usize,
    row: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f64> {
    let part = |rows: std::ops::Range<usize>| -> Vec<f64> {
        let mut total = vec![0.0f64; n_acc];
        let mut acc = vec![0.0f32; n_acc];
        for start in rows.clone().step_by(BLOCK) {
            acc.fill(0.0);
            for o in start..(start + BLOCK).min(rows.end) {
                row(o, &mut acc);
            }
            for (t, &a) in total.iter_mut().zip(&acc) {
                *t += a as f64;
            }
        }
        total
    };
    let parts = rayon::current_num_threads().min(outer);
    if !par::worth(len) || parts < 2 {
        return part(0..outer);
    }
    let per = outer.div_ceil(parts);
    (0..parts)
        .into_par_iter()
        .map(|p| part(p * per..((p + 1) * per).min(outer)))
        .reduce(
            || vec![0.0f64; n_acc],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// Per channel the sum of its `inner` columns of `cols` (`[c * inner]`).
fn per_channel(cols: &[f64], inner: usize) -> impl Iterator<Item = f64> + '_ {
    cols.chunks(inner.max(1)).map(|ch| ch.iter().sum())
}

/// A per-channel vector spread over the row's columns.
fn spread(v: &[f32], inner: usize) -> Vec<f32> {
    v.iter()
        .flat_map(|&a| std::iter::repeat_n(a, inner))
        .collect()
}

/// The batch's per-channel `(mean, biased var)`, `m = outer * inner`.
pub(super) fn stats(x: &[f32], [outer, c, inner]: [usize; 3]) -> Vec<(f32, f32)> {
    let width = c * inner;
    let inv_m = 1.0 / (outer * inner).max(1) as f32;
    let s = col_sums(outer, width, x.len(), |o, acc| {
        for (a, &v) in acc.iter_mut().zip(&x[o * width..(o + 1) * width]) {
            *a += v;
        }
    });
    let mean: Vec<f32> = per_channel(&s, inner).map(|s| s as f32 * inv_m).collect();
    let mc = spread(&mean, inner);
    let q = col_sums(outer, width, x.len(), |o, acc| {
        let row = &x[o * width..(o + 1) * width];
        for ((a, &v), &m) in acc.iter_mut().zip(row).zip(&mc) {
            *a += (v - m) * (v - m);
        }
    });
    mean.into_iter()
        .zip(per_channel(&q, inner))
        .map(|(m, q)| (m, q as f32 * inv_m))
        .collect()
}

/// Per channel `(sum g', sum g' (x - mean))`, `g' = g * (y > 0)` when `mask` is given.
pub(super) fn grad_sums(
    x: &[f32],
    g: &[f32],
    mask: Option<&[f32]>,
    mean: &[f32],
    [outer, c, inner]: [usize; 3],
) -> Vec<(f64, f64)> {
    let width = c * inner;
    let mc = spread(mean, inner);
    let sums = col_sums(outer, 2 * width, x.len(), |o, acc| {
        let (s, sx) = acc.split_at_mut(width);
        let r = o * width..(o + 1) * width;
        let (xr, gr) = (&x[r.clone()], &g[r.clone()]);
        // separate loops per sum: each vectorizes (see `grad_sums` of the planes)
        match mask.map(|y| &y[r]) {
            Some(yr) => {
                for ((a, &g), &y) in s.iter_mut().zip(gr).zip(yr) {
                    *a += masked(g, y);
                }
                for (((a, &x), &g), (&y, &m)) in
                    sx.iter_mut().zip(xr).zip(gr).zip(yr.iter().zip(&mc))
                {
                    *a += masked(g, y) * (x - m);
                }
            }
            None => {
                for (a, &g) in s.iter_mut().zip(gr) {
                    *a += g;
                }
                for (((a, &x), &g), &m) in sx.iter_mut().zip(xr).zip(gr).zip(&mc) {
                    *a += g * (x - m);
                }
            }
        }
    });
    let (s, sx) = sums.split_at(width);
    per_channel(s, inner).zip(per_channel(sx, inner)).collect()
}

/// `f(row, out_row)` for every row of an `outer x width` output, split over the pool
/// when large.
fn map_rows(
    len: usize,
    width: usize,
    op: &'static str,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Result<Vec<f32>> {
    let mut out = par::filled(len, 0.0f32, op)?;
    if width == 0 {
        return Ok(out);
    }
    if par::worth(len) {
        out.par_chunks_mut(width)
            .enumerate()
            .with_min_len((1usize << 13).div_ceil(width))
            .for_each(|(o, d)| f(o, d));
    } else {
        out.chunks_mut(width).enumerate().for_each(|(o, d)| f(o, d));
    }
    Ok(out)
}

/// The output pass: `relu?((x - mean) * scale + shift + residual)`, each step rounded
/// as `channel_affine` rounds it.
pub(super) fn affine(
    x: &[f32],
    [_, c, inner]: [usize; 3],
    [mean, scale]: [&[f32]; 2],
    shift: Option<&[f32]>,
    residual: Option<&[f32]>,
    relu: bool,
) -> Result<Vec<f32>> {
    let width = c * inner;
    let (mc, sc) = (spread(mean, inner), spread(scale, inner));
    let bc = shift.map(|b| spread(b, inner));
    map_rows(x.len(), width, "batch_norm", |o, d| {
        let r = o * width..(o + 1) * width;
        for (((d, &v), &m), &s) in d.iter_mut().zip(&x[r.clone()]).zip(&mc).zip(&sc) {
            *d = (v - m) * s;
        }
        if let Some(bc) = &bc {
            for (d, &b) in d.iter_mut().zip(bc) {
                *d += b;
            }
        }
        if let Some(res) = residual {
            for (d, &v) in d.iter_mut().zip(&res[r]) {
                *d += v;
            }
        }
        if relu {
            for d in d.iter_mut() {
                *d = if *d > 0.0 { *d } else { 0.0 };
            }
        }
    })
}

/// The input gradient: `k1 (g' - a - (x - mean) b)` with the per-channel `coef`
/// `[k1, a, b]` (`k1 g'` without batch statistics).
pub(super) fn dx(
    x: &[f32],
    g: &[f32],
    mask: Option<&[f32]>,
    [_, c, inner]: [usize; 3],
    coef: &[f32],
    mean: &[f32],
    batch: bool,
) -> Result<Vec<f32>> {
    let width = c * inner;
    let pick = |i: usize| -> Vec<f32> {
        let v: Vec<f32> = coef.chunks_exact(3).map(|k| k[i]).collect();
        spread(&v, inner)
    };
    let (k1, a, b, mc) = (pick(0), pick(1), pick(2), spread(mean, inner));
    map_rows(x.len(), width, "batch_norm_backward", |o, d| {
        let r = o * width..(o + 1) * width;
        let (xr, gr) = (&x[r.clone()], &g[r.clone()]);
        // g' first, then the affine map: plain zips of slices, so both vectorize
        match mask.map(|y| &y[r]) {
            Some(yr) => {
                for ((d, &g), &y) in d.iter_mut().zip(gr).zip(yr) {
                    *d = masked(g, y);
                }
            }
            None => d.copy_from_slice(gr),
        }
        if batch {
            let coefs = k1.iter().zip(&a).zip(b.iter().zip(&mc));
            for ((d, &x), ((&k, &a), (&b, &m))) in d.iter_mut().zip(xr).zip(coefs) {
                *d = k * (*d - a - (x - m) * b);
            }
        } else {
            for (d, &k) in d.iter_mut().zip(&k1) {
                *d *= k;
            }
        }
    })
}
