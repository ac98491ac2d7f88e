//! im2col and col2im on the host: contiguous runs of each output row copied (a memcpy
//! at stride 1), the padding written by the fill, the adjoint adding the same runs back;
//! split over the rayon pool by column rows (im2col) or image planes (col2im) when the
//! tensor is large enough to pay for it.

use super::check;
use crate::backend::Im2ColSpec;
use crate::{Error, Result};
use rayon::prelude::*;

/// Elements below which one thread does the whole copy (a split costs more on 2 cores).
const PARALLEL_LEN: usize = 1 << 15;
/// Elements each parallel task gets at least.
const TASK_LEN: usize = 1 << 12;

/// Validates `spec` against the storage lengths: `(image_len, cols_len)`.
pub(super) fn check_spec(op: &'static str, spec: &Im2ColSpec) -> Result<(usize, usize)> {
    let [h, w] = spec.input;
    let [kh, kw] = spec.kernel;
    let [oh, ow] = spec.output;
    let image = check::numel(op, &[spec.batch, spec.channels, h, w])?;
    let cols = check::numel(op, &[spec.batch, spec.channels, kh, kw, oh, ow])?;
    if spec.stride.contains(&0) {
        return Err(Error::invalid_config(
            op,
            "stride",
            format!("{:?}", spec.stride),
            "must be positive",
        ));
    }
    for d in 0..2 {
        // the largest position `source` computes must not overflow
        let far = spec.output[d]
            .saturating_sub(1)
            .checked_mul(spec.stride[d])
            .and_then(|a| {
                spec.kernel[d]
                    .saturating_sub(1)
                    .checked_mul(spec.dilation[d])
                    .and_then(|b| a.checked_add(b))
            });
        if far.is_none() {
            return Err(Error::bad_shape(
                op,
                &[spec.output[0], spec.output[1]],
                "window positions overflow usize",
            ));
        }
    }
    Ok((image, cols))
}

/// The output columns `j0..j1` whose tap `q` reads inside the image row (the others
/// read padding), and the image column read at `j0`.
fn valid_cols(spec: &Im2ColSpec, q: usize) -> (usize, usize, usize) {
    let (w, ow, sw) = (spec.input[1], spec.output[1], spec.stride[1]);
    let (off, pl) = (q * spec.dilation[1], spec.padding[1][0]);
    let j0 = if off >= pl {
        0
    } else {
        (pl - off).div_ceil(sw)
    };
    let j1 = if w + pl > off {
        ow.min((w + pl - off - 1) / sw + 1)
    } else {
        0
    };
    if j0 >= j1 {
        return (0, 0, 0);
    }
    (j0, j1, j0 * sw + off - pl)
}

/// `(sample, channel, p, q)` of the `t`-th column row (of `oh * ow` elements).
fn row_of(spec: &Im2ColSpec, t: usize) -> (usize, usize, usize, usize) {
    let [kh, kw] = spec.kernel;
    let (n, c) = (spec.batch, spec.channels);
    if spec.batch_inner {
        let (b, rest) = (t % n, t / n);
        let (q, rest) = (rest % kw, rest / kw);
        (b, rest / kh, rest % kh, q)
    } else {
        let (q, rest) = (t % kw, t / kw);
        let (p, rest) = (rest % kh, rest / kh);
        (rest / c, rest % c, p, q)
    }
}

/// Index of the column row of `(sample, channel, p, q)`.
fn index_of(spec: &Im2ColSpec, b: usize, ch: usize, p: usize, q: usize) -> usize {
    let [kh, kw] = spec.kernel;
    if spec.batch_inner {
        ((ch * kh + p) * kw + q) * spec.batch + b
    } else {
        ((b * spec.channels + ch) * kh + p) * kw + q
    }
}

/// Fills one column row `dst` (`oh * ow`, pre-filled with the padding value) from the
/// image plane `plane` (`h * w`) for tap `(p, q)`.
fn fill_row(spec: &Im2ColSpec, plane: &[f32], p: usize, q: usize, dst: &mut [f32]) {
    let (w, ow, sw) = (spec.input[1], spec.output[1], spec.stride[1]);
    let (j0, j1, start) = valid_cols(spec, q);
    if j0 == j1 {
        return;
    }
    for (i, drow) in dst.chunks_exact_mut(ow).enumerate() {
        let Some(r) = spec.source(0, i, p) else {
            continue;
        };
        let srow = &plane[r * w..(r + 1) * w];
        let d = &mut drow[j0..j1];
        if sw == 1 {
            d.copy_from_slice(&srow[start..start + d.len()]);
        } else {
            for (k, v) in d.iter_mut().enumerate() {
                *v = srow[start + k * sw];
            }
        }
    }
}

/// Adds one column row `src` back into the image plane `plane` for tap `(p, q)`.
fn add_row(spec: &Im2ColSpec, src: &[f32], p: usize, q: usize, plane: &mut [f32]) {
    let (w, ow, sw) = (spec.input[1], spec.output[1], spec.stride[1]);
    let (j0, j1, start) = valid_cols(spec, q);
    if j0 == j1 {
        return;
    }
    for (i, srow) in src.chunks_exact(ow).enumerate() {
        let Some(r) = spec.source(0, i, p) else {
            continue;
        };
        let drow = &mut plane[r * w..(r + 1) * w];
        let s = &srow[j0..j1];
        if sw == 1 {
            for (d, v) in drow[start..start + s.len()].iter_mut().zip(s) {
                *d += v;
            }
        } else {
            for (k, v) in s.iter().enumerate() {
                drow[start + k * sw] += v;
            }
        }
    }
}

/// The columns of one sample `x` (`spec.batch == 1`, laid out per sample, `spec.image_len()`
/// elements) written into `dst` (`spec.cols_len()` elements) on the calling thread: the
/// scratch of a convolution's per-sample products. Does nothing on lengths that do not fit.
pub(super) fn fill_sample(x: &[f32], spec: &Im2ColSpec, dst: &mut [f32]) {
    let l = spec.output[0] * spec.output[1];
    let hw = spec.input[0] * spec.input[1];
    if l == 0 || x.len() < spec.image_len() || dst.len() < spec.cols_len() {
        return;
    }
    let dst = &mut dst[..spec.cols_len()];
    dst.fill(spec.pad_value);
    for (t, row) in dst.chunks_exact_mut(l).enumerate() {
        let (_, ch, p, q) = row_of(spec, t);
        fill_row(spec, &x[ch * hw..(ch + 1) * hw], p, q, row);
    }
}

/// The adjoint of [`fill_sample`]: every element of `cols` added into the sample image
/// `dst` at the position it was read from, on the calling thread.
pub(super) fn add_sample(cols: &[f32], spec: &Im2ColSpec, dst: &mut [f32]) {
    let l = spec.output[0] * spec.output[1];
    let hw = spec.input[0] * spec.input[1];
    if l == 0 || hw == 0 || cols.len() < spec.cols_len() || dst.len() < spec.image_len() {
        return;
    }
    let [kh, kw] = spec.kernel;
    for (ch, plane) in dst[..spec.image_len()].chunks_exact_mut(hw).enumerate() {
        for p in 0..kh {
            for q in 0..kw {
                let r = index_of(spec, 0, ch, p, q);
                add_row(spec, &cols[r * l..(r + 1) * l], p, q, plane);
            }
        }
    }
}

/// The columns of `x` (`spec.image_len()` elements, checked by the caller).
pub(super) fn im2col(x: &[f32], spec: &Im2ColSpec, cols_len: usize) -> Result<Vec<f32>> {
    let mut out = super::par::filled(cols_len, spec.pad_value, "im2col")?;
    let l = spec.output[0] * spec.output[1];
    let hw = spec.input[0] * spec.input[1];
    if cols_len == 0 || l == 0 {
        return Ok(out);
    }
    let c = spec.channels;
    let row = |(t, dst): (usize, &mut [f32])| {
        let (b, ch, p, q) = row_of(spec, t);
        let plane = &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
        fill_row(spec, plane, p, q, dst);
    };
    if cols_len >= PARALLEL_LEN && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(l)
            .enumerate()
            .with_min_len(TASK_LEN.div_ceil(l))
            .for_each(row);
    } else {
        out.chunks_mut(l).enumerate().for_each(row);
    }
    Ok(out)
}

/// The image that `cols` (`spec.cols_len()` elements, checked by the caller) adds up to.
pub(super) fn col2im(cols: &[f32], spec: &Im2ColSpec, image_len: usize) -> Result<Vec<f32>> {
    let mut out = super::par::filled(image_len, 0.0f32, "col2im")?;
    let l = spec.output[0] * spec.output[1];
    let hw = spec.input[0] * spec.input[1];
    if image_len == 0 || l == 0 {
        return Ok(out);
    }
    let [kh, kw] = spec.kernel;
    let c = spec.channels;
    let plane = |(t, dst): (usize, &mut [f32])| {
        let (b, ch) = (t / c, t % c);
        for p in 0..kh {
            for q in 0..kw {
                let r = index_of(spec, b, ch, p, q);
                add_row(spec, &cols[r * l..(r + 1) * l], p, q, dst);
            }
        }
    };
    if image_len >= PARALLEL_LEN && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(hw)
            .enumerate()
            .with_min_len(TASK_LEN.div_ceil(hw))
            .for_each(plane);
    } else {
        out.chunks_mut(hw).enumerate().for_each(plane);
    }
    Ok(out)
}
