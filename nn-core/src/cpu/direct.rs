//! Direct convolution for small images (a ResNet's late layers: 4x4 and 2x2 outputs),
//! forward and, at stride 1, input gradient.
//!
//! There, im2col's product multiplies a large share of zeros: with a 3x3 kernel and
//! padding 1, the taps that read padding are 31% of a 4x4 output's multiply-adds and 56%
//! of a 2x2 one's. This path skips them. The output positions fall into classes by the
//! taps that read inside the image (the rows `p` and columns `q` valid for that output
//! row and column); a tile is [`OB`] output channels by up to [`NC`] columns, a column
//! being one output position of one sample, all of one class, so one tile walks
//! `cin x (its class's taps)` and nothing else. The input is read in place (each
//! column's value broadcast from the image); the weights of each block of [`OB`] output
//! channels are packed once per call into `[cin, kh * kw, OB]` (what a GEMM's packing
//! costs anyway), and the blocks are split over the rayon pool. The accumulators of a
//! tile (two AVX-512 registers per column) stay in registers for the whole reduction.
//!
//! The input gradient of a stride-1 convolution is the correlation of `dy` with the
//! kernels rotated by 180 degrees, input and output channels swapped, at offset
//! `(k - 1) * dilation - pad` (as in `winograd`), so the same routine computes it.

use crate::backend::Conv2dSpec;
use crate::host::try_with_capacity;
use crate::{Error, Result};
use rayon::prelude::*;

const OP: &str = "conv2d";
/// Output channels of a tile and of a packed weight block (two 16-lane registers).
const OB: usize = 32;
/// Most columns of a tile (16 accumulators with the two of [`OB`]).
const NC: usize = 8;
/// Most output positions of a sample for which the path runs (16x16): small images,
/// where the padding's share is large and im2col's matrix is thin. Per layer, batch 8,
/// 1 thread (`benches/conv_layers.py`, ms, this path / the one before): ResNet-18's 3x3
/// layers at 2x2 1.41 / 2.27, 4x4 1.22 / 2.07, 8x8 0.47 / 0.57 (Winograd), 8x8 stride 2
/// 0.81 / 0.93, 16x16 1.71-1.82 / 1.75-4.1 (Winograd, its 64 MiB of transforms unsteady).
/// Larger images stay with Winograd and im2col, whose buffers pay off there.
const MAX_L: usize = 256;
/// The path runs when at most this share of im2col's multiply-adds reads inside the
/// image (the rest multiply padding zeros): an unpadded layer (1.0, the 1x1 ones) stays
/// on im2col's product, faster there (0.11 / 0.25 ms).
const MAX_USEFUL: f64 = 0.95;
/// Multiply-adds below which one thread does the whole convolution.
const PARALLEL_MACS: usize = 1 << 20;
/// Tasks per thread a parallel call aims at (blocks of output channels split by tiles
/// when there are fewer), so that a thread the host slows down holds back little.
const TASKS_PER_THREAD: usize = 4;

/// One correlation: `out[b, oc, i, j] = sum_{ic, p, q} src[b, ic, i * sh + p * dh - top,
/// j * sw + q * dw - left] * k[oc, ic, p, q]`, the terms outside `src`'s `[h, w]` skipped.
#[derive(Debug, Clone, Copy)]
struct Plan {
    n: usize,
    cin: usize,
    cout: usize,
    input: [usize; 2],
    output: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Input row and column read by output `(0, 0)`'s tap `(0, 0)`, negated.
    shift: [isize; 2],
    /// `k` is the forward weight `w[oc, ic, p, q]` (false), or, for the input gradient,
    /// `w[ic, oc, kh - 1 - p, kw - 1 - q]` (true).
    rot: bool,
}

impl Plan {
    fn forward(spec: &Conv2dSpec) -> Plan {
        let s = &spec.window;
        Plan {
            n: s.batch,
            cin: s.channels,
            cout: spec.out_channels,
            input: s.input,
            output: s.output,
            kernel: s.kernel,
            stride: s.stride,
            dilation: s.dilation,
            shift: [s.padding[0][0] as isize, s.padding[1][0] as isize],
            rot: false,
        }
    }

    /// The input gradient's correlation (stride 1 only; see the module docs).
    fn input_grad(spec: &Conv2dSpec) -> Plan {
        let s = &spec.window;
        let full =
            |d: usize| ((s.kernel[d] - 1) * s.dilation[d]) as isize - s.padding[d][0] as isize;
        Plan {
            n: s.batch,
            cin: spec.out_channels,
            cout: s.channels,
            input: s.output,
            output: s.input,
            kernel: s.kernel,
            stride: [1, 1],
            dilation: s.dilation,
            shift: [full(0), full(1)],
            rot: true,
        }
    }

    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// The kernel taps along dimension `d` that read inside the input from output index
    /// `i`, as a bit mask (bit `p` for tap `p`).
    fn valid(&self, d: usize, i: usize) -> u64 {
        let mut mask = 0;
        for p in 0..self.kernel[d] {
            let r = (i * self.stride[d] + p * self.dilation[d]) as isize - self.shift[d];
            if r >= 0 && (r as usize) < self.input[d] {
                mask |= 1 << p;
            }
        }
        mask
    }

    /// The share of all `output x kernel` multiply-adds that read inside the input.
    fn useful(&self) -> f64 {
        let share = |d: usize| {
            let hits: u32 = (0..self.output[d])
                .map(|i| self.valid(d, i).count_ones())
                .sum();
            f64::from(hits) / (self.output[d] * self.kernel[d]).max(1) as f64
        };
        share(0) * share(1)
    }
}

/// Whether the forward of `spec` runs here: an ungrouped convolution of a small image
/// whose padding makes a large share of im2col's multiply-adds (see [`MAX_USEFUL`]), on
/// a CPU with AVX-512.
pub(super) fn takes(spec: &Conv2dSpec) -> bool {
    if super::winograd::forced() {
        return false; // a Winograd test owns this thread's convolutions
    }
    fits(spec) && (forced() || kernel_available() && Plan::forward(spec).useful() <= MAX_USEFUL)
}

/// Whether the input gradient of `spec` runs here: as [`takes`], at stride 1.
pub(super) fn takes_input_grad(spec: &Conv2dSpec) -> bool {
    let s = &spec.window;
    if super::winograd::forced() {
        return false;
    }
    fits(spec)
        && s.stride == [1, 1]
        && s.input[0] * s.input[1] <= MAX_L
        && (forced() || kernel_available() && Plan::input_grad(spec).useful() <= MAX_USEFUL)
}

#[cfg(test)]
thread_local! {
    /// Tests: every convolution that [`fits`] runs here, on this thread.
    static FORCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test forced this path on this thread (`false` outside tests).
#[cfg(test)]
fn forced() -> bool {
    FORCED.with(|f| f.get())
}
#[cfg(not(test))]
fn forced() -> bool {
    false
}

/// Tests: every convolution that [`fits`] runs here (`on`), on this thread.
#[cfg(test)]
fn force(on: bool) {
    FORCED.with(|f| f.set(on));
}

/// The geometry the path handles at all: one group, at most 64 taps per dimension (bit
/// masks), at most [`MAX_L`] output positions, a nonempty reduction.
fn fits(spec: &Conv2dSpec) -> bool {
    let s = &spec.window;
    spec.groups == 1
        && s.kernel[0] <= 64
        && s.kernel[1] <= 64
        && s.output[0] * s.output[1] <= MAX_L
        && s.channels > 0
        && s.kernel[0] * s.kernel[1] > 0
}

/// The forward `y [n, o, oh, ow]` (plus `bias`); the caller validated the lengths
/// (`conv::check_spec`).
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    spec: &Conv2dSpec,
) -> Result<Vec<f32>> {
    correlate(x, w, bias, &Plan::forward(spec))
}

/// The input gradient `dx [n, c, h, w]` of a stride-1 convolution from `dy [n, o, oh, ow]`.
pub(super) fn input_grad(w: &[f32], dy: &[f32], spec: &Conv2dSpec) -> Result<Vec<f32>> {
    if spec.window.stride != [1, 1] {
        return Err(Error::invalid_config(
            OP,
            "stride",
            format!("{:?}", spec.window.stride),
            "the direct input gradient is for stride 1",
        ));
    }
    correlate(dy, w, None, &Plan::input_grad(spec))
}

/// One class of output positions: the taps that read inside the input from each of them
/// (`(tap index, offset in a plane)`), and the positions.
struct Class {
    taps: Vec<(usize, isize)>,
    positions: Vec<usize>,
}

/// The classes of `p`'s output positions (grouped by their valid row and column taps).
fn classes(p: &Plan) -> Vec<Class> {
    let [oh, ow] = p.output;
    let rows: Vec<u64> = (0..oh).map(|i| p.valid(0, i)).collect();
    let cols: Vec<u64> = (0..ow).map(|j| p.valid(1, j)).collect();
    let mut out: Vec<(u64, u64, Class)> = Vec::new();
    for (i, &rm) in rows.iter().enumerate() {
        for (j, &cm) in cols.iter().enumerate() {
            let pos = i * ow + j;
            if let Some((_, _, c)) = out.iter_mut().find(|(r, c, _)| *r == rm && *c == cm) {
                c.positions.push(pos);
                continue;
            }
            let mut taps = Vec::new();
            for a in (0..p.kernel[0]).filter(|a| rm >> a & 1 == 1) {
                for b in (0..p.kernel[1]).filter(|b| cm >> b & 1 == 1) {
                    let off = (a * p.dilation[0] * p.input[1] + b * p.dilation[1]) as isize;
                    taps.push((a * p.kernel[1] + b, off));
                }
            }
            out.push((
                rm,
                cm,
                Class {
                    taps,
                    positions: vec![pos],
                },
            ));
        }
    }
    out.into_iter().map(|(_, _, c)| c).collect()
}

/// Up to [`NC`] columns of one class: each column's offset of its tap `(0, 0)` in `src`
/// (channel 0) and of its output element (output channel 0).
struct Tile {
    class: usize,
    src: [isize; NC],
    dst: [usize; NC],
    len: usize,
}

impl Tile {
    /// No columns yet, of class `class`.
    fn empty(class: usize) -> Tile {
        Tile {
            class,
            src: [0; NC],
            dst: [0; NC],
            len: 0,
        }
    }
}

/// The smallest and largest source offset among `reads` (`(index, offset)` pairs).
fn span(reads: &[(usize, isize)]) -> (isize, isize) {
    reads
        .iter()
        .fold((isize::MAX, isize::MIN), |(lo, hi), &(_, o)| {
            (lo.min(o), hi.max(o))
        })
}

/// The error for a tile column (`what`) whose reads `[first, last]` leave `len`
/// elements: the plan and the operands disagree (an internal error).
fn check_reads(first: isize, last: isize, len: usize, what: impl FnOnce() -> String) -> Result<()> {
    if first < 0 || last >= len as isize {
        return Err(Error::invalid_config(
            OP,
            "direct plan",
            format!(
                "{} reads elements {first}..={last} of an input of {len}",
                what()
            ),
            "inside the input (an internal error)",
        ));
    }
    Ok(())
}

/// The tiles of every class, each column checked to read inside `src` (`src_len`
/// elements) for every tap of its class and every input channel.
fn tiles(p: &Plan, classes: &[Class], src_len: usize) -> Result<Vec<Tile>> {
    let [ih, iw] = p.input;
    let (ow, l, plane) = (p.output[1], p.output[0] * p.output[1], ih * iw);
    let mut out = Vec::new();
    for (ci, class) in classes.iter().enumerate() {
        let (lo, hi) = span(&class.taps);
        let mut tile = Tile::empty(ci);
        let reads = !class.taps.is_empty(); // a class under padding alone reads nothing
        for &pos in &class.positions {
            let (i, j) = (pos / ow, pos % ow);
            let row = (i * p.stride[0]) as isize - p.shift[0];
            let col = (j * p.stride[1]) as isize - p.shift[1];
            for b in 0..p.n {
                let base = (b * p.cin * plane) as isize + row * iw as isize + col;
                let last = base.saturating_add(hi) + ((p.cin - 1) * plane) as isize;
                if reads {
                    check_reads(base.saturating_add(lo), last, src_len, || {
                        format!("column ({b}, {pos})")
                    })?;
                }
                tile.src[tile.len] = base;
                tile.dst[tile.len] = b * p.cout * l + pos;
                tile.len += 1;
                if tile.len == NC {
                    out.push(std::mem::replace(&mut tile, Tile::empty(ci)));
                }
            }
        }
        if tile.len > 0 {
            out.push(tile);
        }
    }
    Ok(out)
}

/// `src` correlated with the kernels of `w` as `p` says, plus `bias`.
fn correlate(src: &[f32], w: &[f32], bias: Option<&[f32]>, p: &Plan) -> Result<Vec<f32>> {
    let l = p.output[0] * p.output[1];
    let len = p.n * p.cout * l;
    let plane = p.input[0] * p.input[1];
    if src.len() < p.n * p.cin * plane || w.len() < p.cout * p.cin * p.taps() {
        return Err(Error::invalid_config(
            OP,
            "direct operands",
            format!("src {} and weight {} elements", src.len(), w.len()),
            "the lengths of the plan",
        ));
    }
    let classes = classes(p);
    let tiles = tiles(p, &classes, src.len())?;
    let blocks = p.cout.div_ceil(OB);
    let walk = kernel::Walk {
        outer: p.cin,
        rows: p.taps(),
        step: plane as isize,
    };
    let macs = len.saturating_mul(p.cin * p.taps());
    let threads = rayon::current_num_threads();
    let parallel = macs >= PARALLEL_MACS && threads > 1;
    // Tasks: a block's tiles in `split` ranges, so that the layers with few blocks (64
    // output channels: two) still give every thread several tasks to balance.
    let split = if parallel {
        (TASKS_PER_THREAD * threads)
            .div_ceil(blocks)
            .clamp(1, tiles.len().max(1))
    } else {
        1
    };
    let per = tiles.len().div_ceil(split).max(1);
    // one task's results: the accumulators of each of its tiles
    let task = |(panel, packed): &mut (Vec<f32>, Option<usize>),
                (bi, ti): (usize, usize)|
     -> Result<Vec<[[f32; OB]; NC]>> {
        if *packed != Some(bi) {
            pack(w, p, bi, panel)?;
            *packed = Some(bi);
        }
        let mine = tiles
            .get(ti * per..((ti + 1) * per).min(tiles.len()))
            .unwrap_or(&[]);
        let mut res: Vec<[[f32; OB]; NC]> = try_with_capacity(mine.len(), OP)?;
        for t in mine {
            let mut acc = [[0.0f32; OB]; NC];
            kernel::tile(panel, &walk, &classes[t.class].taps, src, t, &mut acc);
            res.push(acc);
        }
        Ok(res)
    };
    let jobs: Vec<(usize, usize)> = (0..blocks)
        .flat_map(|bi| (0..split).map(move |ti| (bi, ti)))
        .collect();
    let parts: Vec<Vec<[[f32; OB]; NC]>> = if parallel {
        jobs.par_iter()
            .map_init(|| (Vec::new(), None), |state, &job| task(state, job))
            .collect::<Result<_>>()?
    } else {
        let mut state = (Vec::new(), None);
        jobs.iter()
            .map(|&job| task(&mut state, job))
            .collect::<Result<_>>()?
    };
    // every (sample, channel, position) is one tile column's row: written exactly once,
    // sample by sample on the pool (the columns of each sample listed first)
    let mut by_sample: Vec<Vec<(usize, usize)>> = vec![Vec::new(); p.n];
    for (ti, t) in tiles.iter().enumerate() {
        for k in 0..t.len {
            by_sample[t.dst[k] / (p.cout * l)].push((ti, k));
        }
    }
    let mut out = super::par::filled(len, 0.0, OP)?;
    let sample = |(b, dst): (usize, &mut [f32])| {
        for &(ti, k) in &by_sample[b] {
            let pos = tiles[ti].dst[k] % (p.cout * l);
            for bi in 0..blocks {
                let a = &parts[bi * split + ti / per][ti % per][k];
                let rows = OB.min(p.cout - bi * OB);
                let col = dst[bi * OB * l + pos..].iter_mut().step_by(l);
                match bias {
                    Some(bv) => {
                        for ((d, v), b) in col.zip(&a[..rows]).zip(&bv[bi * OB..]) {
                            *d = v + b;
                        }
                    }
                    None => {
                        for (d, v) in col.zip(&a[..rows]) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    };
    let chunk = (p.cout * l).max(1);
    if parallel {
        out.par_chunks_mut(chunk).enumerate().for_each(sample);
    } else {
        out.chunks_mut(chunk).enumerate().for_each(sample);
    }
    Ok(out)
}

/// The kernels of output block `bi` packed into `panel` as `[cin, kh * kw, OB]`, rows
/// past `cout` zero; `panel` is reused from block to block of one thread (allocated,
/// zeroed and faulted in once per call rather than once per block).
/// Both orders keep the written part of the panel in L1 and move 16x16 blocks through
/// registers where the CPU can ([`kernel::transpose16`]): the forward's rows [`KB`]
/// elements at a time, the rotated kernels one input channel `ic` at a time
/// (`w[ic, block, :, :]` is contiguous; taps up to 16 that way, scalar beyond).
fn pack(w: &[f32], p: &Plan, bi: usize, panel: &mut Vec<f32>) -> Result<()> {
    const KB: usize = 16;
    let (taps, cin, cout) = (p.taps(), p.cin, p.cout);
    let k = cin * taps;
    let rows = OB.min(cout - bi * OB);
    if panel.len() != k * OB {
        *panel = try_with_capacity(k * OB, OP)?;
        panel.resize(k * OB, 0.0);
    } else if rows < OB {
        // a buffer reused from a full block: the rows past `cout` back to zero
        for kk in panel.chunks_exact_mut(OB) {
            kk[rows..].fill(0.0);
        }
    }
    if p.rot {
        // panel[(ic, t), r] = w[ic, oc, kh - 1 - a, kw - 1 - b], t = (a, b), oc = bi * OB + r
        for (ic, dst) in panel.chunks_exact_mut(taps * OB).enumerate() {
            let src = &w[(ic * cout + bi * OB) * taps..][..rows * taps];
            if ic + 1 < cin {
                // the next channel's block lies `cout * taps` further: no stream to follow
                kernel::prefetch(&w[((ic + 1) * cout + bi * OB) * taps..][..rows * taps]);
            }
            let mut done = 0;
            while done + KB <= rows {
                // rows `done..done + 16` read 16 wide: past the block, inside `w` or not
                let at = (ic * cout + bi * OB + done) * taps;
                if !kernel::transpose16(&w[at..], taps, &mut dst[done..], OB, (taps, true)) {
                    break;
                }
                done += KB;
            }
            for (r, kern) in src.chunks_exact(taps).enumerate().skip(done) {
                for (t, v) in kern.iter().rev().enumerate() {
                    dst[t * OB + r] = *v;
                }
            }
        }
    } else {
        // panel[kk, r] = w[oc, kk], kk = (ic, t)
        transpose_into(&w[bi * OB * k..], k, rows, k, panel);
    }
    Ok(())
}

/// `dst[j * OB + r] = src[r * stride + j]` for `r < rows <= OB`, `j < len`: 16x16
/// blocks through registers where the CPU can ([`kernel::transpose16`]), the rest one
/// by one.
fn transpose_into(src: &[f32], stride: usize, rows: usize, len: usize, dst: &mut [f32]) {
    const KB: usize = 16;
    // 16 rows at a time along their whole length: 16 read streams for the prefetcher
    let mut r0 = 0;
    while r0 + KB <= rows {
        let mut j0 = 0;
        while j0 + KB <= len {
            let at = r0 * stride + j0;
            if at > src.len()
                || !kernel::transpose16(
                    &src[at..],
                    stride,
                    &mut dst[j0 * OB + r0..],
                    OB,
                    (KB, false),
                )
            {
                break;
            }
            j0 += KB;
        }
        for r in r0..r0 + KB {
            for j in j0..len {
                dst[j * OB + r] = src[r * stride + j];
            }
        }
        r0 += KB;
    }
    for r in r0..rows {
        for j in 0..len {
            dst[j * OB + r] = src[r * stride + j];
        }
    }
}

/// Whether the fast tile kernel runs on this CPU (std caches the detection).
fn kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

mod grad;
mod kernel;

pub(super) use grad::weight_grad;

#[cfg(test)]
mod tests;
