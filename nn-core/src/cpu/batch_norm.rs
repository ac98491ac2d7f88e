//! Batch normalization as one op, forward and backward (the training path of the
//! `BatchNorm` layers, with the residual add and the ReLU of a convolution block).
//!
//! The input is `[outer, c, inner]`: channel `k` is the `outer` planes of `inner`
//! contiguous values at `(o c + k) inner`. The per-channel reductions run one task per
//! channel (each sweeps its own planes, twice for the centered variance, the second
//! time from cache), the elementwise passes one task per run of planes; both are split
//! over the rayon pool when the input is large. Per plane the sums use 8 f32 lanes, the
//! planes of a channel add up in f64: the numbers match the composite's (separate
//! reductions) within rounding.

use super::elementwise::{channel_affine, relu_backward, Channels};
use super::par;
use crate::backend::BatchNormSpec;
use crate::host::{try_filled, try_with_capacity};
use crate::Result;
use rayon::prelude::*;

mod rows;

/// The borrowed optional operands of [`batch_norm`] (lengths checked by the caller).
pub(super) struct Operands<'a> {
    pub(super) weight: Option<&'a [f32]>,
    pub(super) bias: Option<&'a [f32]>,
    pub(super) residual: Option<&'a [f32]>,
    pub(super) running: Option<(&'a [f32], &'a [f32])>,
}

/// dx, dweight, dbias, dresidual, each when asked for.
pub(super) type Grads = (
    Option<Vec<f32>>,
    Option<Vec<f32>>,
    Option<Vec<f32>>,
    Option<Vec<f32>>,
);

/// Planes per task of the elementwise passes: about 8k elements.
fn min_planes(inner: usize) -> usize {
    (1usize << 13).div_ceil(inner.max(1))
}

/// `f(k)` for each channel, one task per channel on the pool when `len` is large.
fn per_channel<T: Send>(c: usize, len: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if par::worth(len) {
        (0..c).into_par_iter().map(f).collect()
    } else {
        (0..c).map(f).collect()
    }
}

/// Channel `k`'s planes of `v`.
fn planes(v: &[f32], [outer, c, inner]: [usize; 3], k: usize) -> impl Iterator<Item = &[f32]> {
    (0..outer).map(move |o| &v[(o * c + k) * inner..(o * c + k + 1) * inner])
}

/// `sum f(v)` over 8 lanes (so the loop vectorizes), the tail added last.
#[inline(always)]
fn sum8(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&a| f(a)).sum();
    for ch in chunks {
        for l in 0..8 {
            acc[l] += f(ch[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `g` where `y > 0`, else 0 (NaN `y` too), as a bit mask: a branch-free select that
/// vectorizes where `if` did not.
#[inline(always)]
fn masked(g: f32, y: f32) -> f32 {
    f32::from_bits(g.to_bits() & ((y > 0.0) as u32).wrapping_neg())
}

/// Per plane `(sum g', sum g' (x - mean))` with `g' = g * (y > 0)` when `y` is given
/// (all three the same length). Two 8-lane loops over the plane (in L1 by the second):
/// one loop feeding both sums is paired lane-by-lane by the vectorizer into 2-wide
/// scalar code, 2 to 3 times slower.
#[inline(always)]
fn grad_sums(x: &[f32], g: &[f32], y: Option<&[f32]>, mean: f32) -> (f32, f32) {
    const L: usize = 8;
    let n = x.len().min(g.len()) / L * L;
    let (xs, gs) = (x[..n].chunks_exact(L), g[..n].chunks_exact(L));
    let (mut s, mut sx) = ([0.0f32; L], [0.0f32; L]);
    let (mut ts, mut tsx) = (0.0f32, 0.0f32);
    match y {
        Some(y) => {
            for (gc, yc) in gs.clone().zip(y.chunks_exact(L)) {
                for l in 0..L {
                    s[l] += masked(gc[l], yc[l]);
                }
            }
            for ((xc, gc), yc) in xs.zip(gs).zip(y.chunks_exact(L)) {
                for l in 0..L {
                    sx[l] += masked(gc[l], yc[l]) * (xc[l] - mean);
                }
            }
            for ((&x, &g), &y) in x[n..].iter().zip(&g[n..]).zip(y.get(n..).unwrap_or(&[])) {
                let gm = masked(g, y);
                ts += gm;
                tsx += gm * (x - mean);
            }
        }
        None => {
            for gc in gs.clone() {
                for l in 0..L {
                    s[l] += gc[l];
                }
            }
            for (xc, gc) in xs.zip(gs) {
                for l in 0..L {
                    sx[l] += gc[l] * (xc[l] - mean);
                }
            }
            for (&x, &g) in x[n..].iter().zip(&g[n..]) {
                ts += g;
                tsx += g * (x - mean);
            }
        }
    }
    (s.iter().sum::<f32>() + ts, sx.iter().sum::<f32>() + tsx)
}

/// The forward: `y` and the statistics `[3, c]` (mean, invstd, biased var), from the
/// batch when `spec.batch_stats`, else from `ops.running` (the caller checked it is
/// given then, and every length).
pub(super) fn batch_norm(
    x: &[f32],
    spec: &BatchNormSpec,
    ops: &Operands<'_>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    const OP: &str = "batch_norm";
    let shape = spec.shape;
    let [outer, c, inner] = shape;
    let mut stats = try_filled(3 * c, 0.0f32, OP)?;
    let (mean, rest) = stats.split_at_mut(c);
    let (invstd, var) = rest.split_at_mut(c);
    match ops.running {
        Some((rm, rv)) if !spec.batch_stats => {
            mean.copy_from_slice(rm);
            var.copy_from_slice(rv);
        }
        _ => {
            let inv_m = 1.0 / (outer * inner).max(1) as f32;
            let mv = if inner < rows::SHORT {
                rows::stats(x, shape)
            } else {
                per_channel(c, x.len(), |k| {
                    let s: f64 = planes(x, shape, k).map(|p| sum8(p, |v| v) as f64).sum();
                    let mu = s as f32 * inv_m;
                    let q: f64 = planes(x, shape, k)
                        .map(|p| sum8(p, |v| (v - mu) * (v - mu)) as f64)
                        .sum();
                    (mu, q as f32 * inv_m)
                })
            };
            for ((m, v), (mu, q)) in mean.iter_mut().zip(var.iter_mut()).zip(mv) {
                (*m, *v) = (mu, q);
            }
        }
    }
    // the composite's per-channel scale: (var + eps)^-0.5, then times the weight
    let mut scale = try_filled(c, 0.0f32, OP)?;
    for k in 0..c {
        invstd[k] = (var[k] + spec.eps).powf(-0.5);
        scale[k] = invstd[k] * ops.weight.map_or(1.0, |w| w[k]);
    }
    let y = if inner < rows::SHORT {
        let ms = [&*mean, &scale[..]];
        rows::affine(x, shape, ms, ops.bias, ops.residual, spec.relu)?
    } else {
        let ch = Channels {
            mean,
            scale: &scale,
            shift: ops.bias,
        };
        channel_affine(x, shape, &ch, ops.residual, spec.relu)?
    };
    Ok((y, stats))
}

/// The backward of [`batch_norm`] (see `BackendStorage::batch_norm_backward`): `y` is
/// read only for the ReLU's mask; `stats` is the forward's `[3, c]` (lengths checked by
/// the caller).
pub(super) fn batch_norm_backward(
    x: &[f32],
    g: &[f32],
    y: &[f32],
    stats: &[f32],
    weight: Option<&[f32]>,
    spec: &BatchNormSpec,
    [want_dx, want_dw, want_db, want_dr]: [bool; 4],
) -> Result<Grads> {
    const OP: &str = "batch_norm_backward";
    let shape = spec.shape;
    let [outer, c, inner] = shape;
    let (mean, invstd) = (&stats[..c], &stats[c..2 * c]);
    let mask = spec.relu.then_some(y);
    let m = (outer * inner).max(1) as f64;
    // per channel sum g' and sum g' (x - mean)
    let sums = if !(want_dw || want_db || (want_dx && spec.batch_stats)) {
        Vec::new()
    } else if inner < rows::SHORT {
        rows::grad_sums(x, g, mask, mean, shape)
    } else {
        per_channel(c, x.len(), |k| {
            let (mut s, mut sx) = (0.0f64, 0.0f64);
            for o in 0..outer {
                let span = (o * c + k) * inner..(o * c + k + 1) * inner;
                let yp = mask.map(|y| &y[span.clone()]);
                let (a, b) = grad_sums(&x[span.clone()], &g[span], yp, mean[k]);
                s += a as f64;
                sx += b as f64;
            }
            (s, sx)
        })
    };
    let dw = want_dw.then(|| {
        sums.iter()
            .zip(invstd)
            .map(|(s, &r)| (s.1 as f32) * r)
            .collect()
    });
    let db = want_db.then(|| sums.iter().map(|s| s.0 as f32).collect());
    let dr = if want_dr {
        Some(match mask {
            Some(y) => relu_backward(y, g)?,
            None => {
                let mut v = try_with_capacity(g.len(), OP)?;
                v.extend_from_slice(g);
                v
            }
        })
    } else {
        None
    };
    if !want_dx {
        return Ok((None, dw, db, dr));
    }
    // dx = k1 (g' - a - (x - mean) b) per channel
    let mut coef = try_filled(3 * c, 0.0f32, OP)?;
    for k in 0..c {
        let r = invstd[k];
        coef[3 * k] = weight.map_or(1.0, |w| w[k]) * r;
        if spec.batch_stats {
            coef[3 * k + 1] = (sums[k].0 / m) as f32;
            coef[3 * k + 2] = (sums[k].1 / m) as f32 * r * r;
        }
    }
    if inner < rows::SHORT {
        let dx = rows::dx(x, g, mask, shape, &coef, mean, spec.batch_stats)?;
        return Ok((Some(dx), dw, db, dr));
    }
    let mut dx = par::filled(x.len(), 0.0f32, OP)?;
    if inner == 0 {
        return Ok((Some(dx), dw, db, dr));
    }
    let batch = spec.batch_stats;
    // with running statistics x is not in them: dx = k1 g' (no 0 * inf from x)
    let plane = |(t, d): (usize, &mut [f32])| {
        let k = t % c;
        let (k1, a, b, mu) = (coef[3 * k], coef[3 * k + 1], coef[3 * k + 2], mean[k]);
        let span = t * inner..(t + 1) * inner;
        let (xs, gs) = (&x[span.clone()], &g[span.clone()]);
        match (mask, batch) {
            (Some(y), true) => {
                for (((d, &x), &g), &y) in d.iter_mut().zip(xs).zip(gs).zip(&y[span]) {
                    *d = k1 * (masked(g, y) - a - (x - mu) * b);
                }
            }
            (Some(y), false) => {
                for ((d, &g), &y) in d.iter_mut().zip(gs).zip(&y[span]) {
                    *d = k1 * masked(g, y);
                }
            }
            (None, true) => {
                for ((d, &x), &g) in d.iter_mut().zip(xs).zip(gs) {
                    *d = k1 * (g - a - (x - mu) * b);
                }
            }
            (None, false) => {
                for (d, &g) in d.iter_mut().zip(gs) {
                    *d = k1 * g;
                }
            }
        }
    };
    if par::worth(x.len()) {
        dx.par_chunks_mut(inner)
            .enumerate()
            .with_min_len(min_planes(inner))
            .for_each(plane);
    } else {
        dx.chunks_mut(inner).enumerate().for_each(plane);
    }
    Ok((Some(dx), dw, db, dr))
}
