//! The weight gradient of a convolution on the direct path (the bias gradient, a plain
//! sum of `dy`, is `conv::bias_grad` whatever the path).
//!
//! `dw[o, c, t] = sum_{b, pos} dy[b, o, pos] * x[b, c, pos's input under tap t]`, the sum
//! over the output positions whose tap `t` reads inside the image: for each tap, a
//! reduction over the samples (outer) and those positions (rows), as the forward's tile
//! kernel walks it, with the gradient of [`OB`] output channels packed `[n, l, OB]` per
//! block and the input read in place, [`NC`] input channels per tile. No columns, and
//! no multiply-adds on padding.

use super::kernel::{self, Walk};
use super::{check_reads, span, transpose_into, Plan, Tile, NC, OB, OP};
use crate::backend::Conv2dSpec;
use crate::host::try_with_capacity;
use crate::{Error, Result};
use rayon::prelude::*;

/// One tap: its index, the positions whose reads it makes inside the image (`(pos,
/// offset in a sample's input)`), and the tiles of input channels.
struct TapWork {
    tap: usize,
    reads: Vec<(usize, isize)>,
    tiles: Vec<Tile>,
}

/// The work of every tap that reads inside the image from some position.
fn taps(p: &Plan, x_len: usize) -> Result<Vec<TapWork>> {
    let ([ih, iw], [oh, ow], [kh, kw]) = (p.input, p.output, p.kernel);
    let plane = ih * iw;
    let sample = (p.cin * plane) as isize;
    let rows: Vec<u64> = (0..oh).map(|i| p.valid(0, i)).collect();
    let cols: Vec<u64> = (0..ow).map(|j| p.valid(1, j)).collect();
    let mut out = Vec::new();
    for a in 0..kh {
        for b in 0..kw {
            let mut reads = Vec::new();
            for (i, rm) in rows.iter().enumerate() {
                for (j, cm) in cols.iter().enumerate() {
                    if rm >> a & 1 == 1 && cm >> b & 1 == 1 {
                        let r = (i * p.stride[0] + a * p.dilation[0]) as isize - p.shift[0];
                        let c = (j * p.stride[1] + b * p.dilation[1]) as isize - p.shift[1];
                        reads.push((i * ow + j, r * iw as isize + c));
                    }
                }
            }
            if reads.is_empty() {
                continue;
            }
            let (lo, hi) = span(&reads);
            let mut tiles = Vec::new();
            for c0 in (0..p.cin).step_by(NC) {
                let len = NC.min(p.cin - c0);
                let mut tile = Tile::empty(0);
                tile.len = len;
                for k in 0..len {
                    let base = ((c0 + k) * plane) as isize;
                    let last = base + hi + (p.n as isize - 1) * sample;
                    check_reads(base + lo, last, x_len, || format!("channel {}", c0 + k))?;
                    tile.src[k] = base;
                    tile.dst[k] = (c0 + k) * kh * kw + a * kw + b;
                }
                tiles.push(tile);
            }
            out.push(TapWork {
                tap: a * kw + b,
                reads,
                tiles,
            });
        }
    }
    Ok(out)
}

/// The weight gradient `dw [o, c, kh, kw]` of a convolution that the direct forward
/// serves (`super::takes`), from `x [n, c, h, w]` and `dy [n, o, oh, ow]`; the caller
/// validated the lengths (`conv::check_spec`, `dy` against the output).
pub(in crate::cpu) fn weight_grad(x: &[f32], dy: &[f32], spec: &Conv2dSpec) -> Result<Vec<f32>> {
    let p = Plan::forward(spec);
    let (n, c, o) = (p.n, p.cin, p.cout);
    let l = p.output[0] * p.output[1];
    let kk = p.taps();
    if x.len() < n * c * p.input[0] * p.input[1] || dy.len() < n * o * l {
        return Err(Error::invalid_config(
            OP,
            "direct operands",
            format!("x {} and dy {} elements", x.len(), dy.len()),
            "the lengths of the plan",
        ));
    }
    let work = taps(&p, x.len())?;
    let walk = Walk {
        outer: n,
        rows: l,
        step: (c * p.input[0] * p.input[1]) as isize,
    };
    // zeros for the taps that read only padding (on the pool: dw is the layer's size)
    let mut dw = crate::cpu::par::filled(o * c * kk, 0.0, OP)?;
    let block = |panel: &mut Vec<f32>, (bi, out): (usize, &mut [f32])| -> Result<()> {
        let rows = OB.min(o - bi * OB);
        // panel[(b, pos), r] = dy[b, bi * OB + r, pos]
        if panel.len() != n * l * OB {
            *panel = try_with_capacity(n * l * OB, OP)?;
            panel.resize(n * l * OB, 0.0);
        }
        for b in 0..n {
            let dst = &mut panel[b * l * OB..(b + 1) * l * OB];
            transpose_into(&dy[(b * o + bi * OB) * l..], l, rows, l, dst);
        }
        let mut acc = [[0.0f32; OB]; NC];
        // one group of NC input channels at a time, every tap into `held [k, t, r]`, then
        // written out as contiguous runs `dw[oc, c0..c0 + NC, ..]` (a store per tap and
        // channel straight into `dw` would touch a cache line per output channel)
        let mut held = vec![0.0f32; NC * kk * OB];
        for g in 0..c.div_ceil(NC) {
            held.fill(0.0);
            for t in &work {
                let Some(tile) = t.tiles.get(g) else {
                    continue;
                };
                kernel::tile(panel, &walk, &t.reads, x, tile, &mut acc);
                for (k, a) in acc[..tile.len].iter().enumerate() {
                    held[(k * kk + t.tap) * OB..][..OB].copy_from_slice(a);
                }
            }
            let (c0, len) = (g * NC, NC.min(c - g * NC));
            for r in 0..rows {
                let run = &mut out[r * c * kk + c0 * kk..][..len * kk];
                for (i, v) in run.iter_mut().enumerate() {
                    *v = held[i * OB + r];
                }
            }
        }
        Ok(())
    };
    let macs = n * o * c * kk * l;
    if macs >= super::PARALLEL_MACS && rayon::current_num_threads() > 1 {
        dw.par_chunks_mut(OB * c * kk)
            .enumerate()
            .try_for_each_init(Vec::new, block)?;
    } else {
        let mut panel = Vec::new();
        for item in dw.chunks_mut(OB * c * kk).enumerate() {
            block(&mut panel, item)?;
        }
    }
    Ok(dw)
}
