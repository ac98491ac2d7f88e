//! Winograd F(2x2, 3x3) convolution on the host for 3x3, stride-1, undilated,
//! ungrouped layers (the bulk of a ResNet's multiply-adds), forward and input gradient.
//!
//! Each 2x2 block of outputs ("tile") of one output channel is
//! `A^T [sum_c (G g G^T) .* (B^T d B)] A`, with `g` the 3x3 kernel of an (output, input)
//! channel pair and `d` the 4x4 input patch under the tile: 16 multiply-adds per input
//! channel instead of 36. Summed over the input channels, the elementwise products of
//! the 16 positions are 16 matrix products `M[k] = U[k] @ V[k]` (`U [16, o, c]` the
//! transformed weights, `V [16, c, tiles]` the transformed patches of every tile of
//! the whole batch, so that the late layers with one to four tiles per sample still
//! make wide products), run as one batched product on the rayon pool; the output
//! transform then writes `y [n, o, oh, ow]`, the bias added and the edge tiles clipped.
//!
//! The input gradient of a stride-1 convolution is itself one: the "full" correlation
//! of `dy` with the kernels rotated by 180 degrees, input and output channels swapped,
//! shifted by `2 - pad` (negative shifts read inside `dy`), so the same routine computes
//! it. The weight and bias gradients stay on `conv`'s im2col path.
//!
//! The transforms work on blocks of [`JB`] tiles in plain arrays (vectorised, with AVX2
//! copies), split over the pool by channels (input, weights) and output planes.

use super::{matmul, par};
use crate::backend::{Conv2dSpec, MatmulSpec};
use crate::host::try_with_capacity;
use crate::{Error, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

const OP: &str = "conv2d";
/// Tiles per block of a transform (one tile row's tiles `j0..j0 + JB`).
const JB: usize = 8;
/// Input columns under a block of `JB` tiles.
const JW: usize = 2 * JB + 2;

/// One correlation: `out[b, oc, i, j] = sum_{ic, p, q} x[b, ic, i + p - top, j + q - left]
/// * k[oc, ic, p, q]`, zeros read outside the image `[h, w]`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    top: isize,
    left: isize,
    /// Tile rows and columns of one output plane.
    ty: usize,
    tx: usize,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    fn new(
        n: usize,
        cin: usize,
        cout: usize,
        [h, w]: [usize; 2],
        [oh, ow]: [usize; 2],
        top: isize,
        left: isize,
    ) -> Plan {
        Plan {
            n,
            cin,
            cout,
            h,
            w,
            oh,
            ow,
            top,
            left,
            ty: oh.div_ceil(2),
            tx: ow.div_ceil(2),
        }
    }

    /// Tiles of the whole batch: the columns of the 16 products.
    fn tiles(&self) -> usize {
        self.n * self.ty * self.tx
    }
}

/// Whether `spec` is a 3x3, stride-1, undilated, ungrouped convolution whose output
/// size is the stride-1 one (what Winograd computes), whatever the padding, batch,
/// channels and image size.
pub(super) fn fits(spec: &Conv2dSpec) -> bool {
    let w = &spec.window;
    let full = |d: usize| w.input[d] + w.padding[d][0] + w.padding[d][1] == w.output[d] + 2;
    w.kernel == [3, 3]
        && w.stride == [1, 1]
        && w.dilation == [1, 1]
        && spec.groups == 1
        && full(0)
        && full(1)
}

/// Whether the convolution runs here rather than on `conv`'s im2col path: it [`fits`]
/// and has the channels and tiles where Winograd measured faster (see [`MIN_CHANNELS`]).
pub(super) fn takes(spec: &Conv2dSpec) -> bool {
    let w = &spec.window;
    let tiles = w.batch * w.output[0].div_ceil(2) * w.output[1].div_ceil(2);
    let wide = w.channels.min(spec.out_channels) >= MIN_CHANNELS && tiles >= MIN_TILES;
    // the whole batch's transformed tiles, [16, channels, tiles], stay under MAX_SCRATCH
    let held = tiles.saturating_mul(16 * w.channels.max(spec.out_channels)) <= MAX_SCRATCH;
    fits(spec) && ((wide && held) || forced())
}

/// Most elements of one `[16, channels, tiles]` buffer (64 MiB): larger layers stay on
/// the per-sample im2col path, whose scratch is one sample's.
const MAX_SCRATCH: usize = 1 << 24;

#[cfg(test)]
thread_local! {
    /// Tests: every convolution that [`fits`] runs here, on this thread.
    static FORCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test forced the Winograd path on this thread (`false` outside tests).
#[cfg(test)]
pub(super) fn forced() -> bool {
    FORCED.with(|f| f.get())
}
#[cfg(not(test))]
pub(super) fn forced() -> bool {
    false
}

/// Tests: every convolution that [`fits`] runs here (`on`), on this thread.
#[cfg(test)]
fn force(on: bool) {
    FORCED.with(|f| f.set(on));
}

/// Fewest input and output channels, and fewest output tiles of the whole batch, for
/// which the Winograd path runs. Measured per layer (`tests::timings`, release profile,
/// batch 8, padding 1; im2col time / Winograd time, 1 thread in thread CPU time, then
/// 2 threads in wall time; a shared 2-core AVX-512 machine at load 3.4):
///
/// | channels, side | tiles | forward 1t | dx 1t | forward 2t | dx 2t |
/// |----------------|-------|------------|-------|------------|-------|
/// | 64, 16x16      | 512   | 1.38x      | 1.16x | 1.37x      | 1.16x |
/// | 128, 8x8       | 128   | 1.28x      | 1.19x | 1.29x      | 1.21x |
/// | 256, 4x4       | 32    | 0.94x      | 0.92x | 0.95x      | 0.90x |
/// | 512, 2x2       | 8     | 0.37x      | 0.41x | 0.38x      | 0.39x |
/// | 16, 16x16      | 512   | 1.02x      | 0.74x | 1.08x      | 0.77x |
/// | 32, 8x8        | 128   | 1.00x      | 0.79x | 1.01x      | 0.81x |
///
/// Few tiles: the weight transform (3.3 of 5.7 ms at 512 channels) outweighs the saving;
/// few channels: the transforms do. In W6 (layers 1-2 here) ~1-2% at 1 thread, none
/// measurable at 2: the transforms' traffic ([16, c, tiles] out and back) eats the rest.
const MIN_CHANNELS: usize = 64;
/// See [`MIN_CHANNELS`].
const MIN_TILES: usize = 64;

/// The forward `y [n, o, oh, ow]` of a convolution that [`fits`]; the caller validated
/// the lengths (`conv::check_spec`).
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    spec: &Conv2dSpec,
) -> Result<Vec<f32>> {
    run(x, w, bias, spec, false)
}

/// The input gradient `dx [n, c, h, w]` of a convolution that [`fits`], from `dy
/// [n, o, oh, ow]`: the correlation of `dy` with the rotated, transposed kernels at
/// offset `2 - pad` (see the module docs).
pub(super) fn input_grad(w: &[f32], dy: &[f32], spec: &Conv2dSpec) -> Result<Vec<f32>> {
    run(dy, w, None, spec, true)
}

/// `src` correlated with the kernels of `w`: the forward's `x` through them (`rot`
/// false), or the backward's `dy` through them rotated and transposed (`rot`).
fn run(
    src: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    spec: &Conv2dSpec,
    rot: bool,
) -> Result<Vec<f32>> {
    let s = &spec.window;
    let (o, c) = (spec.out_channels, s.channels);
    let (top, left) = (s.padding[0][0] as isize, s.padding[1][0] as isize);
    let plan = if rot {
        Plan::new(s.batch, o, c, s.output, s.input, 2 - top, 2 - left)
    } else {
        Plan::new(s.batch, c, o, s.input, s.output, top, left)
    };
    let u = weights(w, o, c, rot)?;
    let out = correlate(src, &u, bias, &plan);
    crate::host::pool::give(u);
    out
}

/// `x` correlated with the kernels transformed into `u [16, cout, cin]`, plus `bias`.
fn correlate(x: &[f32], u: &[f32], bias: Option<&[f32]>, p: &Plan) -> Result<Vec<f32>> {
    let (t, plane) = (p.tiles(), p.oh * p.ow);
    if p.n * p.cout * plane == 0 {
        return Ok(Vec::new());
    }
    let v = input_tiles(x, p)?;
    let mut m = par::filled(16 * p.cout * t, 0.0, OP)?;
    let spec = MatmulSpec {
        batch: 16,
        m: p.cout,
        n: t,
        k: p.cin,
        lhs_batch: (0..16).collect(),
        rhs_batch: (0..16).collect(),
        lhs_t: false,
        rhs_t: false,
    };
    matmul::gemm_into(&mut m, u, &v, &spec, false);
    // scratch back to the thread's buffer cache (a fresh buffer faults its pages in)
    crate::host::pool::give(v);
    let y = output(&m, bias, p);
    crate::host::pool::give(m);
    y
}

/// 16 planes of `rows * per_row` elements split by rows over the pool: `body(rows,
/// planes)` writes its rows of each plane (`planes[k]`: `rows.len() * per_row` slots)
/// and returns how many it wrote; a task left short is an error, never uninit memory.
fn build16(
    rows: usize,
    per_row: usize,
    body: impl Fn(Range<usize>, &mut [&mut [MaybeUninit<f32>]]) -> usize + Sync,
) -> Result<Vec<f32>> {
    let len = 16 * rows * per_row;
    let mut out: Vec<f32> = try_with_capacity(len, OP)?;
    if len == 0 {
        return Ok(out);
    }
    let tasks = if par::worth(len) {
        (4 * rayon::current_num_threads()).min(rows)
    } else {
        1
    };
    let step = rows.div_ceil(tasks.max(1));
    let mut parts: Vec<Vec<&mut [MaybeUninit<f32>]>> =
        (0..rows.div_ceil(step)).map(|_| Vec::new()).collect();
    for plane in out.spare_capacity_mut()[..len].chunks_mut(rows * per_row) {
        for (part, chunk) in parts.iter_mut().zip(plane.chunks_mut(step * per_row)) {
            part.push(chunk);
        }
    }
    let task = |(i, mut part): (usize, Vec<&mut [MaybeUninit<f32>]>)| {
        let want: usize = part.iter().map(|c| c.len()).sum();
        body(i * step..((i + 1) * step).min(rows), &mut part) == want
    };
    // one task runs here (a pool job would wake a worker and wait for it)
    let full = match parts.len() {
        1 => parts.into_iter().enumerate().all(task),
        _ => parts.into_par_iter().enumerate().map(task).all(|ok| ok),
    };
    if !full {
        return Err(Error::custom(format!(
            "{OP}: a transform task was left short"
        )));
    }
    // SAFETY: the parts partition the first `len` slots (16 planes, each cut into the
    // same row ranges), and every body reported writing all of its part's elements.
    unsafe { out.set_len(len) };
    Ok(out)
}

/// The transformed kernels `U [16, rows, cols]`, `U[k][r, s] = (G g G^T)[k]`: for the
/// forward (`rot` false) `rows = o`, `cols = c` and `g = w[r, s]`; for the input
/// gradient `rows = c`, `cols = o` and `g` is `w[s, r]` rotated by 180 degrees.
fn weights(w: &[f32], o: usize, c: usize, rot: bool) -> Result<Vec<f32>> {
    let (rows, cols) = if rot { (c, o) } else { (o, c) };
    build16(rows, cols, |rr, parts| {
        let args = (w, c, cols, rot);
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU runs AVX2 and FMA.
            return unsafe { weights_avx2(args, rr, parts) };
        }
        weights_task(args, rr, parts)
    })
}

/// One task of [`weights`] (`(w, c, cols, rot)` as there): its rows `rr` of the 16
/// planes (`parts`), blocks of `JB` kernels at a time.
#[inline(always)]
fn weights_task(
    (w, c, cols, rot): (&[f32], usize, usize, bool),
    rr: Range<usize>,
    parts: &mut [&mut [MaybeUninit<f32>]],
) -> usize {
    let mut done = 0;
    for (ri, r) in rr.enumerate() {
        for s0 in (0..cols).step_by(JB) {
            let ns = JB.min(cols - s0);
            // the block's kernels, tap-major: g[tap][s - s0]
            let mut g = [[0.0f32; JB]; 9];
            for si in 0..ns {
                let s = s0 + si;
                let (oi, ci) = if rot { (s, r) } else { (r, s) };
                let src = &w[(oi * c + ci) * 9..][..9];
                for (tap, gt) in g.iter_mut().enumerate() {
                    gt[si] = if rot { src[8 - tap] } else { src[tap] };
                }
            }
            let u = kernel_transform(&g);
            let at = ri * cols + s0;
            for (part, uk) in parts.iter_mut().zip(&u) {
                done += put(part, at, &uk[..ns]);
            }
        }
    }
    done
}

/// [`weights_task`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU runs AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weights_avx2(
    args: (&[f32], usize, usize, bool),
    rr: Range<usize>,
    parts: &mut [&mut [MaybeUninit<f32>]],
) -> usize {
    weights_task(args, rr, parts)
}

/// `G g G^T` of a block of `JB` 3x3 kernels (tap-major: `g[3 * p + q][kernel]`), as
/// the 16 transformed values of each.
#[inline(always)]
fn kernel_transform(g: &[[f32; JB]; 9]) -> [[f32; JB]; 16] {
    // G g: 4 rows of 3, then (G g) G^T: 4 columns of each row
    let mut t = [[[0.0f32; JB]; 3]; 4];
    for q in 0..3 {
        for e in 0..JB {
            let (a, b, c) = (g[q][e], g[3 + q][e], g[6 + q][e]);
            t[0][q][e] = a;
            t[1][q][e] = 0.5 * (a + b + c);
            t[2][q][e] = 0.5 * (a - b + c);
            t[3][q][e] = c;
        }
    }
    let mut u = [[0.0f32; JB]; 16];
    for (r, row) in t.iter().enumerate() {
        for e in 0..JB {
            let (a, b, c) = (row[0][e], row[1][e], row[2][e]);
            u[4 * r][e] = a;
            u[4 * r + 1][e] = 0.5 * (a + b + c);
            u[4 * r + 2][e] = 0.5 * (a - b + c);
            u[4 * r + 3][e] = c;
        }
    }
    u
}

/// The transformed input patches `V [16, cin, tiles]`, `V[k][c, t] = (B^T d B)[k]` with
/// `d` the 4x4 patch of channel `c` under tile `t = (b * ty + i) * tx + j`.
fn input_tiles(x: &[f32], p: &Plan) -> Result<Vec<f32>> {
    build16(p.cin, p.tiles(), |chans, parts| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU runs AVX2 and FMA.
            return unsafe { input_avx2(x, p, chans, parts) };
        }
        input_task(x, p, chans, parts)
    })
}

/// One task of [`input_tiles`]: the channels `chans` of the 16 planes (`parts`).
#[inline(always)]
fn input_task(
    x: &[f32],
    p: &Plan,
    chans: Range<usize>,
    parts: &mut [&mut [MaybeUninit<f32>]],
) -> usize {
    let Plan {
        n,
        cin,
        h,
        w,
        top,
        left,
        ty,
        tx,
        ..
    } = *p;
    let t = p.tiles();
    let mut done = 0;
    for (ci, ch) in chans.enumerate() {
        for b in 0..n {
            let img = &x[(b * cin + ch) * h * w..][..h * w];
            for i in 0..ty {
                let at = ci * t + (b * ty + i) * tx;
                for j0 in (0..tx).step_by(JB) {
                    let nj = JB.min(tx - j0);
                    let d = patch_rows(img, [h, w], 2 * i as isize - top, {
                        2 * j0 as isize - left
                    });
                    // B^T d: the 4 rows combined, over the block's columns
                    let mut r = [[0.0f32; JW]; 4];
                    for u in 0..JW {
                        r[0][u] = d[0][u] - d[2][u];
                        r[1][u] = d[1][u] + d[2][u];
                        r[2][u] = d[2][u] - d[1][u];
                        r[3][u] = d[1][u] - d[3][u];
                    }
                    // (B^T d) B: each row's 4 columns under tile j at 2j..2j+4,
                    // for the whole block (fixed bounds: vectorised, no checks)
                    let mut v = [[0.0f32; JB]; 16];
                    for (ri, row) in r.iter().enumerate() {
                        for j in 0..JB {
                            let (a, b, c, d) =
                                (row[2 * j], row[2 * j + 1], row[2 * j + 2], row[2 * j + 3]);
                            v[4 * ri][j] = a - c;
                            v[4 * ri + 1][j] = b + c;
                            v[4 * ri + 2][j] = c - b;
                            v[4 * ri + 3][j] = b - d;
                        }
                    }
                    for (part, vk) in parts.iter_mut().zip(&v) {
                        done += put(part, at + j0, &vk[..nj]);
                    }
                }
            }
        }
    }
    done
}

/// [`input_task`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU runs AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_avx2(
    x: &[f32],
    p: &Plan,
    chans: Range<usize>,
    parts: &mut [&mut [MaybeUninit<f32>]],
) -> usize {
    input_task(x, p, chans, parts)
}

/// Writes `src` into the slots from `base` of `part`, returning how many it wrote (0
/// when the slots lie outside `part`). A whole block (`JB` values) is copied with a
/// fixed length: a few vector moves, where a copy of unknown length is a `memcpy` call.
#[inline(always)]
fn put(part: &mut [MaybeUninit<f32>], base: usize, src: &[f32]) -> usize {
    let Some(slots) = part.get_mut(base..base + src.len()) else {
        return 0;
    };
    match (
        <&mut [MaybeUninit<f32>; JB]>::try_from(&mut *slots),
        <&[f32; JB]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = s.map(MaybeUninit::new),
        _ => {
            for (d, &v) in slots.iter_mut().zip(src) {
                d.write(v);
            }
        }
    }
    src.len()
}

/// The 4 image rows from `row0` under a block of tiles, columns from `col0` (`JW` of
/// them), zeros outside the image.
#[inline(always)]
fn patch_rows(img: &[f32], [h, w]: [usize; 2], row0: isize, col0: isize) -> [[f32; JW]; 4] {
    let mut d = [[0.0f32; JW]; 4];
    // the block's columns u with 0 <= col0 + u < w
    let lo = (-col0).clamp(0, JW as isize) as usize;
    let hi = (w as isize - col0).clamp(0, JW as isize) as usize;
    for (dr, row) in d.iter_mut().enumerate() {
        let r = row0 + dr as isize;
        if r < 0 || r >= h as isize || lo >= hi {
            continue;
        }
        let start = r as usize * w + (col0 + lo as isize) as usize;
        if let Some(src) = img.get(start..start + (hi - lo)) {
            row[lo..hi].copy_from_slice(src);
        }
    }
    d
}

/// The output `[n, cout, oh, ow]` from the products `m [16, cout, tiles]`: per tile
/// `A^T m A`, plus the bias, clipped to the plane.
fn output(m: &[f32], bias: Option<&[f32]>, p: &Plan) -> Result<Vec<f32>> {
    let plane = p.oh * p.ow;
    par::build(p.n * p.cout * plane, plane, OP, |start, dst| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU runs AVX2 and FMA.
            return unsafe { output_avx2(m, bias, p, start, dst) };
        }
        output_task(m, bias, p, start, dst)
    })
}

/// One chunk of [`output`]: the whole planes `dst` from plane `start / (oh * ow)` on.
#[inline(always)]
fn output_task(
    m: &[f32],
    bias: Option<&[f32]>,
    p: &Plan,
    start: usize,
    dst: &mut [MaybeUninit<f32>],
) -> usize {
    let Plan {
        cout,
        oh,
        ow,
        ty,
        tx,
        ..
    } = *p;
    let (t, plane) = (p.tiles(), oh * ow);
    let kstride = cout * t;
    let mut done = 0;
    for (pi, yp) in dst.chunks_mut(plane).enumerate() {
        let pl = start / plane + pi;
        let (b, oc) = (pl / cout, pl % cout);
        let bv = bias.map_or(0.0, |v| v[oc]);
        for i in 0..ty {
            let at = oc * t + (b * ty + i) * tx;
            for j0 in (0..tx).step_by(JB) {
                let nj = JB.min(tx - j0);
                // A^T m: s[0] = m0 + m1 + m2, s[1] = m1 - m2 - m3 (rows of m), per
                // column of m and tile, read in place
                let mut s = [[[0.0f32; JB]; 4]; 2];
                for col in 0..4 {
                    let row = |r: usize| &m[(4 * r + col) * kstride + at + j0..][..nj];
                    let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
                    for jj in 0..nj {
                        s[0][col][jj] = m0[jj] + m1[jj] + m2[jj];
                        s[1][col][jj] = m1[jj] - m2[jj] - m3[jj];
                    }
                }
                for (a, sa) in s.iter().enumerate() {
                    let r = 2 * i + a;
                    if r >= oh {
                        continue;
                    }
                    // tile j0 + jj writes columns 2 (j0 + jj) and the next, if any
                    let cols = yp
                        .get_mut(r * ow + 2 * j0..(r + 1) * ow)
                        .unwrap_or_default();
                    for (jj, pair) in cols.chunks_mut(2).take(nj).enumerate() {
                        let v0 = sa[0][jj] + sa[1][jj] + sa[2][jj] + bv;
                        let v1 = sa[1][jj] - sa[2][jj] - sa[3][jj] + bv;
                        for (y, v) in pair.iter_mut().zip([v0, v1]) {
                            y.write(v);
                            done += 1;
                        }
                    }
                }
            }
        }
    }
    done
}

/// [`output_task`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU runs AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_avx2(
    m: &[f32],
    bias: Option<&[f32]>,
    p: &Plan,
    start: usize,
    dst: &mut [MaybeUninit<f32>],
) -> usize {
    output_task(m, bias, p, start, dst)
}

/// Whether the CPU runs AVX2 and FMA (cached by std): the crate is built for SSE2, whose
/// 4-lane vectors slow the transforms, so their tasks have AVX2 copies.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(test)]
mod tests;
