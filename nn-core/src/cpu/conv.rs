//! 2-d convolution on the host, forward and backward, each in one pass over the batch.
//!
//! Two schedules, picked per layer by the output positions `l = oh * ow` of a sample:
//!
//! - per sample (large `l`, the early layers): the samples are split into one
//!   contiguous range per thread; each thread copies one sample's windows into its own
//!   scratch (`[taps, l]`, cache-resident) and runs `y[b] = W @ cols` into the output
//!   directly, `[o, l]` being sample `b`'s block of `y [n, o, l]`: no permute, the bias
//!   as the product's starting value, and a 1x1 stride-1 unpadded convolution reads the
//!   input itself. The backward does per sample `dW += dy[b] @ cols^T` into one
//!   accumulator per thread (never one per sample), `dx[b] = col2im(W^T @ dy[b])`
//!   (`W^T @ dy[b]` itself for the 1x1 case) and the bias sums;
//! - batch in the columns (small `l`, the late layers, where a product per sample
//!   would be a thin matrix reading the whole weight for a few columns): the composite
//!   path's `W @ cols [taps, n * l]`, threaded inside the product, its `[o, n, l]`
//!   result moved to `[n, o, l]` with the bias in the same pass.
//!
//! The backward recomputes the columns from the input rather than keeping them from the
//! forward (the memory of a training step holds no `taps * n * l` matrix per layer).
//!
//! Two other paths take the layers they serve faster, forward and input gradient:
//! `direct` the padded images of up to 16x16 outputs on AVX-512 CPUs (no columns, the
//! taps that read padding skipped), then `winograd` the larger 3x3 stride-1 ones. The
//! weight and bias gradients always come from the schedules above.

use super::{check, direct, im2col, matmul, winograd};
use crate::backend::{Conv2dSpec, Im2ColSpec, MatmulSpec};
use crate::host::try_with_capacity;
use crate::{Error, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output positions per sample from which the per-sample schedule runs (below it the
/// batch-in-columns one). Measured on W6 (ResNet-18 at 64x64: l = 1024, 256, 64, 16, 4).
const PER_SAMPLE_L: usize = 64;
/// Multiply-adds of a whole convolution below which one thread does it all.
const PARALLEL_MACS: usize = 1 << 20;

/// The sizes of one convolution, derived once from the spec.
#[derive(Debug, Clone, Copy)]
struct Geo {
    n: usize,
    c: usize,
    o: usize,
    g: usize,
    /// Input and output channels per group.
    cg: usize,
    og: usize,
    /// Rows of one group's columns, `cg * kh * kw`.
    taps: usize,
    /// Output positions of a sample.
    l: usize,
    /// Input positions of a sample.
    hw: usize,
    /// One group of one sample, laid out per sample, padding 0.
    one: Im2ColSpec,
    /// 1x1, stride 1, unpadded: the columns are the input itself.
    direct: bool,
}

impl Geo {
    fn new(spec: &Conv2dSpec) -> Geo {
        let w = spec.window;
        let (g, o) = (spec.groups.max(1), spec.out_channels);
        let cg = w.channels / g;
        let one = Im2ColSpec {
            batch: 1,
            channels: cg,
            batch_inner: false,
            pad_value: 0.0,
            ..w
        };
        Geo {
            n: w.batch,
            c: w.channels,
            o,
            g,
            cg,
            og: o / g,
            taps: spec.taps(),
            l: w.output[0] * w.output[1],
            hw: w.input[0] * w.input[1],
            one,
            direct: w.kernel == [1, 1] && w.stride == [1, 1] && w.padding == [[0, 0], [0, 0]],
        }
    }

    /// Elements of one sample's columns, the per-sample schedule's scratch (none for
    /// the 1x1 case, which reads the input itself).
    fn scratch(&self) -> usize {
        if self.direct {
            0
        } else {
            self.taps * self.l
        }
    }

    /// Whether the per-sample schedule runs (see the module docs).
    fn per_sample(&self) -> bool {
        self.l >= PER_SAMPLE_L && self.n >= rayon::current_num_threads().min(2)
    }

    /// Contiguous sample ranges, one per task, and the samples each holds.
    fn tasks(&self) -> (usize, usize) {
        let macs = self.n * self.o * self.taps * self.l;
        let threads = if macs >= PARALLEL_MACS {
            rayon::current_num_threads()
        } else {
            1
        };
        let tasks = threads.clamp(1, self.n.max(1));
        (tasks, self.n.div_ceil(tasks).max(1))
    }

    /// The products of every group at once, `batch = g`.
    fn mm_groups(&self, m: usize, n: usize, k: usize, lhs_t: bool, rhs_t: bool) -> MatmulSpec {
        MatmulSpec {
            batch: self.g,
            m,
            n,
            k,
            lhs_batch: (0..self.g).collect(),
            rhs_batch: (0..self.g).collect(),
            lhs_t,
            rhs_t,
        }
    }
}

/// Validates `spec` against the storage lengths of the image, the weight and the bias.
pub(super) fn check_spec(
    op: &'static str,
    spec: &Conv2dSpec,
    image: usize,
    weight: usize,
    bias: Option<usize>,
) -> Result<()> {
    let w = &spec.window;
    let (image_len, _) = im2col::check_spec(op, w)?;
    let g = spec.groups;
    if g == 0 || !w.channels.is_multiple_of(g) || !spec.out_channels.is_multiple_of(g) {
        return Err(Error::invalid_config(
            op,
            "groups",
            g,
            format!(
                "must divide both in_channels ({}) and out_channels ({})",
                w.channels, spec.out_channels
            ),
        ));
    }
    let [kh, kw] = w.kernel;
    let [oh, ow] = w.output;
    let weight_len = check::numel(op, &[spec.out_channels, w.channels / g, kh, kw])?;
    check::numel(op, &[w.batch, spec.out_channels, oh, ow])?;
    check::numel(
        op,
        &[w.batch, spec.out_channels, w.channels / g, kh, kw, oh, ow],
    )?;
    check::lens(op, image_len, &[image])?;
    check::lens(op, weight_len, &[weight])?;
    if let Some(b) = bias {
        check::lens(op, spec.out_channels, &[b])?;
    }
    Ok(())
}

/// `dst`'s elements, each set to `v(i)`, as an initialized slice.
fn init(dst: &mut [MaybeUninit<f32>], v: impl Fn(usize) -> f32) -> &mut [f32] {
    for (i, d) in dst.iter_mut().enumerate() {
        d.write(v(i));
    }
    // SAFETY: every element was written just above, and MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `[a, b, l]` to `[b, a, l]`, plus `add[row of b]` on every element when given.
fn swap01(src: &[f32], a: usize, b: usize, l: usize, add: Option<&[f32]>) -> Result<Vec<f32>> {
    let mut out = try_with_capacity(a * b * l, "conv2d")?;
    for j in 0..b {
        for i in 0..a {
            let row = &src[(i * b + j) * l..][..l];
            match add {
                Some(v) => out.extend(row.iter().map(|x| x + v[i])),
                None => out.extend_from_slice(row),
            }
        }
    }
    Ok(out)
}

/// A vector of `len` elements whose per-task chunks (`chunk` elements each, the last
/// shorter) `body(task, chunk)` initializes completely, run on the pool.
fn build_split(
    len: usize,
    chunk: usize,
    body: impl Fn(usize, &mut [MaybeUninit<f32>]) -> Result<()> + Sync,
) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = try_with_capacity(len, "conv2d")?;
    let spare = &mut out.spare_capacity_mut()[..len];
    if len > 0 {
        spare
            .par_chunks_mut(chunk.max(1))
            .enumerate()
            .try_for_each(|(t, dst)| body(t, dst))?;
    }
    // SAFETY: the chunks partition the first `len` slots and every body returned `Ok`
    // after initializing its whole chunk (`init` writes each element).
    unsafe { out.set_len(len) };
    Ok(out)
}

/// The forward: `y [n, o, oh, ow]`. The caller validated the lengths (`check_spec`).
/// The 3x3 stride-1 layers that Winograd serves faster go there ([`winograd::takes`]),
/// the small padded images to the direct kernel ([`direct::takes`]).
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    spec: &Conv2dSpec,
) -> Result<Vec<f32>> {
    if direct::takes(spec) {
        return direct::forward(x, w, bias, spec);
    }
    if winograd::takes(spec) {
        return winograd::forward(x, w, bias, spec);
    }
    forward_im2col(x, w, bias, spec)
}

/// The forward on the im2col path, whatever the geometry.
pub(super) fn forward_im2col(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    spec: &Conv2dSpec,
) -> Result<Vec<f32>> {
    let geo = Geo::new(spec);
    if geo.per_sample() {
        forward_per_sample(x, w, bias, &geo)
    } else {
        forward_batched(x, w, bias, &geo, spec)
    }
}

fn forward_per_sample(x: &[f32], w: &[f32], bias: Option<&[f32]>, geo: &Geo) -> Result<Vec<f32>> {
    let Geo {
        c,
        o,
        g,
        cg,
        og,
        taps,
        l,
        hw,
        ..
    } = *geo;
    let (_, per) = geo.tasks();
    let scratch = geo.scratch();
    build_split(geo.n * o * l, per * o * l, |t, dst| {
        let mut cols: Vec<f32> = try_with_capacity(scratch, "conv2d")?;
        cols.resize(scratch, 0.0);
        for (i, yb) in dst.chunks_mut((o * l).max(1)).enumerate() {
            let b = t * per + i;
            let yb = init(yb, |e| bias.map_or(0.0, |v| v[e / l]));
            let xb = &x[b * c * hw..(b + 1) * c * hw];
            for gi in 0..g {
                let xg = &xb[gi * cg * hw..(gi + 1) * cg * hw];
                let rhs = if geo.direct {
                    xg
                } else {
                    im2col::fill_sample(xg, &geo.one, &mut cols);
                    &cols
                };
                matmul::gemm_serial(
                    &mut yb[gi * og * l..(gi + 1) * og * l],
                    &w[gi * og * taps..(gi + 1) * og * taps],
                    rhs,
                    &MatmulSpec::single(og, l, taps, false, false),
                    bias.is_some(),
                );
            }
        }
        Ok(())
    })
}

/// The columns of the whole batch, `[g, taps, n * l]` (the input moved for 1x1).
fn batch_cols(x: &[f32], geo: &Geo, spec: &Conv2dSpec) -> Result<Vec<f32>> {
    if geo.direct {
        return swap01(x, geo.n, geo.c, geo.l, None);
    }
    let s = Im2ColSpec {
        batch_inner: true,
        pad_value: 0.0,
        ..spec.window
    };
    im2col::im2col(x, &s, s.cols_len())
}

fn forward_batched(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    geo: &Geo,
    spec: &Conv2dSpec,
) -> Result<Vec<f32>> {
    let Geo {
        n, o, og, taps, l, ..
    } = *geo;
    let cols = batch_cols(x, geo, spec)?;
    let mut y = super::par::filled(o * n * l, 0.0f32, "conv2d")?;
    matmul::gemm_into(
        &mut y,
        w,
        &cols,
        &geo.mm_groups(og, n * l, taps, false, false),
        false,
    );
    swap01(&y, o, n, l, bias)
}

/// The gradients `(dx, dw, db)`, each when `needs` asks. The caller validated the
/// lengths (`check_spec`, and `dy` against the output). Where Winograd serves the
/// layer ([`winograd::takes`]) it computes `dx`, and the im2col path only `dw`, `db`.
pub(super) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    spec: &Conv2dSpec,
    needs: [bool; 3],
) -> Result<Grads> {
    let dx = if !needs[0] {
        None
    } else if direct::takes_input_grad(spec) {
        Some(direct::input_grad(w, dy, spec)?)
    } else if winograd::takes(spec) {
        Some(winograd::input_grad(w, dy, spec)?)
    } else {
        None
    };
    // the direct path's layers: the weight and bias gradients there too
    let direct = (needs[1] || needs[2]) && direct::takes(spec);
    let dw = if needs[1] && direct {
        Some(direct::weight_grad(x, dy, spec)?)
    } else {
        None
    };
    let db = (needs[2] && direct).then(|| bias_grad(dy, spec));
    let rest = [
        needs[0] && dx.is_none(),
        needs[1] && dw.is_none(),
        needs[2] && db.is_none(),
    ];
    if rest == [false; 3] {
        return Ok((dx, dw, db));
    }
    let (rx, rw, rb) = backward_im2col(x, w, dy, spec, rest)?;
    Ok((dx.or(rx), dw.or(rw), db.or(rb)))
}

/// The gradients on the im2col path, whatever the geometry.
pub(super) fn backward_im2col(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    spec: &Conv2dSpec,
    needs: [bool; 3],
) -> Result<Grads> {
    let geo = Geo::new(spec);
    if geo.per_sample() {
        backward_per_sample(x, w, dy, &geo, needs)
    } else {
        backward_batched(x, w, dy, &geo, spec, needs)
    }
}

/// `(dx, dw, db)` on the host.
pub(super) type Grads = (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>);

/// The bias gradient `db [o]`: `dy [n, o, l]` summed over samples and positions.
pub(super) fn bias_grad(dy: &[f32], spec: &Conv2dSpec) -> Vec<f32> {
    let [oh, ow] = spec.window.output;
    let (o, l) = (spec.out_channels, oh * ow);
    let mut db = vec![0.0f32; o];
    for dyb in dy.chunks_exact((o * l).max(1)) {
        add_row_sums(&mut db, dyb, l);
    }
    db
}

/// Row sums of `[rows, l]` blocks added into `acc [rows]`.
fn add_row_sums(acc: &mut [f32], m: &[f32], l: usize) {
    if l == 0 {
        return;
    }
    for (a, row) in acc.iter_mut().zip(m.chunks_exact(l)) {
        *a += row.iter().sum::<f32>();
    }
}

fn backward_per_sample(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    geo: &Geo,
    [need_dx, need_dw, need_db]: [bool; 3],
) -> Result<Grads> {
    let Geo {
        n,
        c,
        o,
        g,
        cg,
        og,
        taps,
        l,
        hw,
        ..
    } = *geo;
    let (tasks, per) = geo.tasks();
    let wlen = o * taps;
    let scratch = geo.scratch();
    // the weight and bias sums of one task's samples
    let task = |t: usize, dx: Option<&mut [MaybeUninit<f32>]>| -> Result<(Vec<f32>, Vec<f32>)> {
        let samples = t * per..((t + 1) * per).min(n);
        let zeros = |len: usize, on: bool| -> Result<Vec<f32>> {
            let len = if on { len } else { 0 };
            let mut v = try_with_capacity(len, "conv2d")?;
            v.resize(len, 0.0);
            Ok(v)
        };
        let mut dw = zeros(wlen, need_dw)?;
        let mut db = zeros(o, need_db)?;
        let mut cols = zeros(scratch, need_dw)?;
        let mut dcols = zeros(scratch, need_dx)?;
        let mut dx = dx.map(|d| init(d, |_| 0.0));
        for b in samples.clone() {
            let dyb = &dy[b * o * l..(b + 1) * o * l];
            let xb = &x[b * c * hw..(b + 1) * c * hw];
            if need_db {
                add_row_sums(&mut db, dyb, l);
            }
            for gi in 0..g {
                let dyg = &dyb[gi * og * l..(gi + 1) * og * l];
                let xg = &xb[gi * cg * hw..(gi + 1) * cg * hw];
                let wg = &w[gi * og * taps..(gi + 1) * og * taps];
                if need_dw {
                    let rhs = if geo.direct {
                        xg
                    } else {
                        im2col::fill_sample(xg, &geo.one, &mut cols);
                        &cols
                    };
                    matmul::gemm_serial(
                        &mut dw[gi * og * taps..(gi + 1) * og * taps],
                        dyg,
                        rhs,
                        &MatmulSpec::single(og, taps, l, false, true),
                        true,
                    );
                }
                if let Some(dx) = dx.as_deref_mut() {
                    let i = b - samples.start;
                    let dxg = &mut dx[(i * c + gi * cg) * hw..(i * c + (gi + 1) * cg) * hw];
                    let mm = MatmulSpec::single(taps, l, og, true, false);
                    if geo.direct {
                        matmul::gemm_serial(dxg, wg, dyg, &mm, false);
                    } else {
                        matmul::gemm_serial(&mut dcols, wg, dyg, &mm, false);
                        im2col::add_sample(&dcols, &geo.one, dxg);
                    }
                }
            }
        }
        Ok((dw, db))
    };
    let mut dx: Vec<f32> = try_with_capacity(if need_dx { n * c * hw } else { 0 }, "conv2d")?;
    let parts: Vec<(Vec<f32>, Vec<f32>)> = if need_dx {
        let len = n * c * hw;
        let spare = &mut dx.spare_capacity_mut()[..len];
        let chunks: Vec<&mut [MaybeUninit<f32>]> =
            spare.chunks_mut((per * c * hw).max(1)).collect();
        let parts = chunks
            .into_par_iter()
            .enumerate()
            .map(|(t, d)| task(t, Some(d)))
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: the chunks partition the first `len` slots; each task returned `Ok`
        // after `init` wrote its whole chunk.
        unsafe { dx.set_len(len) };
        parts
    } else {
        (0..tasks)
            .into_par_iter()
            .map(|t| task(t, None))
            .collect::<Result<Vec<_>>>()?
    };
    let mut parts = parts.into_iter();
    let (mut dw, mut db) = parts.next().unwrap_or_default();
    for (pw, pb) in parts {
        dw.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    Ok((
        need_dx.then_some(dx),
        need_dw.then_some(dw),
        need_db.then_some(db),
    ))
}

fn backward_batched(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    geo: &Geo,
    spec: &Conv2dSpec,
    [need_dx, need_dw, need_db]: [bool; 3],
) -> Result<Grads> {
    let Geo {
        n,
        c,
        o,
        og,
        taps,
        l,
        ..
    } = *geo;
    // dy as the products' operand, [o, n * l]
    let dyp = swap01(dy, n, o, l, None)?;
    let db = need_db.then(|| {
        let mut db = vec![0.0f32; o];
        add_row_sums(&mut db, &dyp, n * l);
        db
    });
    let dw = if need_dw {
        let cols = batch_cols(x, geo, spec)?;
        let mut dw = super::par::filled(o * taps, 0.0f32, "conv2d")?;
        let mm = geo.mm_groups(og, taps, n * l, false, true);
        matmul::gemm_into(&mut dw, &dyp, &cols, &mm, false);
        Some(dw)
    } else {
        None
    };
    let dx = if need_dx {
        let mut dcols = super::par::filled(geo.g * taps * n * l, 0.0f32, "conv2d")?;
        let mm = geo.mm_groups(taps, n * l, og, true, false);
        matmul::gemm_into(&mut dcols, w, &dyp, &mm, false);
        Some(if geo.direct {
            swap01(&dcols, c, n, l, None)?
        } else {
            let s = Im2ColSpec {
                batch_inner: true,
                pad_value: 0.0,
                ..spec.window
            };
            im2col::col2im(&dcols, &s, s.image_len())?
        })
    } else {
        None
    };
    Ok((dx, dw, db))
}

#[cfg(test)]
mod tests {
    use super::{backward, check_spec, forward};
    use crate::backend::{Conv2dSpec, Im2ColSpec};

    fn spec(n: usize, c: usize, o: usize, input: [usize; 2], output: [usize; 2]) -> Conv2dSpec {
        Conv2dSpec {
            window: Im2ColSpec {
                batch: n,
                channels: c,
                input,
                kernel: [1, 1],
                stride: [1, 1],
                padding: [[0, 0], [0, 0]],
                dilation: [1, 1],
                output,
                batch_inner: false,
                pad_value: 0.0,
            },
            out_channels: o,
            groups: 1,
        }
    }

    /// Empty batches, channels and images (reachable through the backend trait, which
    /// the tensor op never sends them to) give empty or bias-only results, no panic.
    #[test]
    fn empty_operands() -> crate::Result<()> {
        for (n, c, o, hw) in [
            (0, 2, 3, 9),
            (2, 0, 3, 9),
            (2, 2, 0, 9),
            (2, 2, 3, 0),
            (1, 0, 2, 100),
        ] {
            let side = (hw as f64).sqrt() as usize;
            let s = spec(n, c, o, [side, side], [side, side]);
            let (x, w, b) = (vec![1.0; n * c * hw], vec![1.0; o * c], vec![0.5; o]);
            check_spec("test", &s, x.len(), w.len(), Some(b.len()))?;
            let y = forward(&x, &w, Some(&b), &s)?;
            assert_eq!(y, vec![0.5; n * o * hw], "{n} {c} {o} {hw}");
            let (dx, dw, db) = backward(&x, &w, &y, &s, [true; 3])?;
            assert_eq!(dx.map(|v| v.len()), Some(n * c * hw));
            assert_eq!(dw.map(|v| v.len()), Some(o * c));
            assert_eq!(db.map(|v| v.len()), Some(o));
        }
        Ok(())
    }

    #[test]
    fn lengths_that_do_not_fit_the_spec_are_errors() {
        let s = spec(2, 3, 4, [5, 5], [5, 5]);
        assert!(check_spec("test", &s, 2 * 3 * 25, 12, Some(4)).is_ok());
        assert!(check_spec("test", &s, 2 * 3 * 24, 12, None).is_err());
        assert!(check_spec("test", &s, 2 * 3 * 25, 11, None).is_err());
        assert!(check_spec("test", &s, 2 * 3 * 25, 12, Some(3)).is_err());
        let groups = Conv2dSpec { groups: 2, ..s };
        assert!(check_spec("test", &groups, 2 * 3 * 25, 12, None).is_err());
    }
}
