//! Fused attention on the host. Training (`train_forward`, `backward`): per (batch, head)
//! problem the whole `[l, s]` weights, saved for a backward that computes the three
//! gradients in one pass per problem. Without gradients (`forward`): per problem, blocks
//! of query rows against blocks of keys with a running softmax (FlashAttention's online
//! rescaling), so only one `[rows, keys]` tile of weights exists at a time; problems run
//! in parallel on rayon's threads.
//!
//! For a query row with running max m, sum l and output accumulator o, a new tile of
//! scores x: m' = max(m, max x), c = exp(m - m'), p = exp(x - m'), l' = c l + sum p,
//! o' = c o + p V_tile; at the end out = o / l (0 where every key was masked, l = 0).

use super::matmul::gemm_into;
use crate::backend::{AttentionSpec, MatmulSpec};
use crate::host::try_filled;
use crate::Result;
use rayon::prelude::*;
use std::borrow::Cow;

/// Query rows per tile.
const ROWS: usize = 64;
/// Keys per tile.
const KEYS: usize = 256;

/// `[batch, l, dv]` attention of `q` `[batch, l, d]` over `k` `[batch, s, d]` and `v`
/// `[batch, s, dv]`, with optional additive masks `[count, l, s]` indexed per problem.
pub(super) fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<(&[f32], &[usize])>,
    spec: &AttentionSpec,
) -> Result<Vec<f32>> {
    let AttentionSpec {
        batch,
        l,
        s,
        d,
        dv,
        scale,
        causal,
        ..
    } = *spec;
    let mut out = try_filled(batch * l * dv, 0.0f32, "scaled_dot_product_attention")?;
    if l == 0 || dv == 0 {
        return Ok(out);
    }
    let one = |b: usize, ob: &mut [f32]| {
        let (qb, kb, vb) = (
            &q[b * l * d..(b + 1) * l * d],
            &k[b * s * d..(b + 1) * s * d],
            &v[b * s * dv..(b + 1) * s * dv],
        );
        let mb = mask.map(|(m, idx)| &m[idx[b] * l * s..(idx[b] + 1) * l * s]);
        problem(qb, kb, vb, mb, ob, (l, s, d, dv), scale, causal);
    };
    if split(batch, l * s * (d + dv)) {
        out.par_chunks_mut(l * dv)
            .enumerate()
            .for_each(|(b, ob)| one(b, ob));
    } else {
        for (b, ob) in out.chunks_mut(l * dv).enumerate() {
            one(b, ob);
        }
    }
    Ok(out)
}

/// [`forward`] on one packed self-attention projection `qkv` `[batch / heads, l, 3 e]`
/// (`e = heads d`, per row the q, k and v column blocks, each `[heads, d]`), output
/// `[batch / heads, l, e]` with the heads merged. Each problem gathers its rows into
/// contiguous scratch ([`Layout::operands`]) and runs the same [`problem`] as
/// [`forward`] on them, so the result is bit-identical to splitting the heads first.
pub(super) fn forward_packed(
    qkv: &[f32],
    heads: usize,
    mask: Option<(&[f32], &[usize])>,
    spec: &AttentionSpec,
) -> Result<Vec<f32>> {
    let AttentionSpec {
        batch,
        l,
        d,
        dv,
        scale,
        causal,
        ..
    } = *spec;
    let e = heads * dv;
    let mut out = try_filled(
        batch / heads.max(1) * l * e,
        0.0f32,
        "scaled_dot_product_attention",
    )?;
    if l == 0 || dv == 0 {
        return Ok(out);
    }
    let lay = Layout {
        q: qkv,
        k: qkv,
        v: qkv,
        heads: Some(heads),
        l,
        s: l,
        d,
        dv,
    };
    let one = |p: usize| {
        let [q, k, v] = lay.operands(p);
        let mut o = vec![0.0f32; l * dv];
        let mb = mask.map(|(m, idx)| &m[idx[p] * l * l..(idx[p] + 1) * l * l]);
        problem(&q, &k, &v, mb, &mut o, (l, l, d, dv), scale, causal);
        vec![o]
    };
    let os: Vec<Vec<Vec<f32>>> = if split(batch, l * l * (d + dv)) {
        (0..batch).into_par_iter().map(one).collect()
    } else {
        (0..batch).map(one).collect()
    };
    scatter(&mut out, &os, Some(heads), l, &[dv]);
    Ok(out)
}

/// Where the problems' operands live: separate `[batch, len, width]` storages, or one
/// packed self-attention projection `[batch / heads, l, 3 heads d]` (see
/// [`AttentionSpec::packed_heads`]) whose outputs are merged `[batch / heads, l, heads dv]`.
#[derive(Clone, Copy)]
struct Layout<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    heads: Option<usize>,
    l: usize,
    s: usize,
    d: usize,
    dv: usize,
}

impl<'a> Layout<'a> {
    /// Problem `p`'s query, key and value, borrowed or gathered from the packed rows.
    fn operands(&self, p: usize) -> [Cow<'a, [f32]>; 3] {
        let Layout { l, s, d, dv, .. } = *self;
        match self.heads {
            None => [
                Cow::Borrowed(&self.q[p * l * d..(p + 1) * l * d]),
                Cow::Borrowed(&self.k[p * s * d..(p + 1) * s * d]),
                Cow::Borrowed(&self.v[p * s * dv..(p + 1) * s * dv]),
            ],
            Some(h) => {
                let (b, j) = (p / h, p % h);
                let row = 3 * h * d;
                let rows = &self.q[b * l * row..(b + 1) * l * row];
                [j * d, h * d + j * d, 2 * h * d + j * dv]
                    .map(|off| Cow::Owned(columns(rows, row, off, d)))
            }
        }
    }

    /// Problem `p`'s `[l, dv]` block of an output (or output gradient) in this layout.
    fn out_block(&self, o: &'a [f32], p: usize) -> Cow<'a, [f32]> {
        let Layout { l, dv, .. } = *self;
        match self.heads {
            None => Cow::Borrowed(&o[p * l * dv..(p + 1) * l * dv]),
            Some(h) => {
                let (b, j) = (p / h, p % h);
                let e = h * dv;
                Cow::Owned(columns(&o[b * l * e..(b + 1) * l * e], e, j * dv, dv))
            }
        }
    }
}

/// Columns `off..off + w` of the rows of `rows` (row length `row`), contiguous.
fn columns(rows: &[f32], row: usize, off: usize, w: usize) -> Vec<f32> {
    let mut t = Vec::with_capacity(rows.len() / row.max(1) * w);
    for r in rows.chunks_exact(row) {
        t.extend_from_slice(&r[off..off + w]);
    }
    t
}

/// Writes each problem's `[len, w]` blocks (`blocks[p][i]`) into `out`: problem after
/// problem when unpacked, into the columns of its sample's rows (`heads` per sample,
/// row length `heads * (sum of the widths)`) when packed.
fn scatter(
    out: &mut [f32],
    blocks: &[Vec<Vec<f32>>],
    heads: Option<usize>,
    len: usize,
    w: &[usize],
) {
    match heads {
        None => {
            let mut at = vec![0usize; w.len()];
            let mut starts = vec![0usize; w.len()];
            let total = blocks.len();
            for i in 1..w.len() {
                starts[i] = starts[i - 1] + total * len * w[i - 1];
            }
            for prob in blocks {
                for (i, blk) in prob.iter().enumerate() {
                    let o = starts[i] + at[i];
                    out[o..o + blk.len()].copy_from_slice(blk);
                    at[i] += blk.len();
                }
            }
        }
        Some(h) => {
            let row: usize = h * w.iter().sum::<usize>();
            let fill = |(b, rows): (usize, &mut [f32])| {
                let mut col = 0;
                for (i, &wi) in w.iter().enumerate() {
                    for j in 0..h {
                        let blk = &blocks[b * h + j][i];
                        for (dst, src) in rows.chunks_exact_mut(row).zip(blk.chunks_exact(wi)) {
                            dst[col + j * wi..col + (j + 1) * wi].copy_from_slice(src);
                        }
                    }
                    col += h * wi;
                }
            };
            if out.len() >= 1 << 16 && rayon::current_num_threads() > 1 {
                out.par_chunks_mut(len * row).enumerate().for_each(fill);
            } else {
                out.chunks_mut(len * row).enumerate().for_each(fill);
            }
        }
    }
}

/// Attention with gradients to come: per problem the weights `P = softmax(q k^T scale +
/// mask)` (a row with every key masked: 0), stored whole as `probs` `[batch, l, s]` for
/// the backward, and the output `(P * drop) v` (`drop` the dropout's mask-and-scale
/// `[batch, l, s]`, when given). Returns the output (in the layout of `spec`) and `probs`.
pub(super) fn train_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<(&[f32], &[usize])>,
    drop: Option<&[f32]>,
    spec: &AttentionSpec,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let AttentionSpec {
        batch,
        l,
        s,
        d,
        dv,
        scale,
        causal,
        packed_heads,
        ..
    } = *spec;
    let op = "scaled_dot_product_attention";
    let lay = Layout {
        q,
        k,
        v,
        heads: packed_heads,
        l,
        s,
        d,
        dv,
    };
    let mut probs = super::par::filled(batch * l * s, 0.0, op)?;
    let mut out = super::par::filled(batch * l * dv, 0.0, op)?;
    if l * s == 0 {
        return Ok((out, probs));
    }
    let one = |p: usize, pb: &mut [f32]| -> Vec<Vec<f32>> {
        let [qp, kp, vp] = lay.operands(p);
        if d > 0 {
            gemm_into(
                pb,
                &qp,
                &kp,
                &MatmulSpec::single(l, s, d, false, true),
                false,
            );
        }
        let mb = mask.map(|(m, idx)| &m[idx[p] * l * s..(idx[p] + 1) * l * s]);
        for (i, row) in pb.chunks_exact_mut(s).enumerate() {
            for x in row.iter_mut() {
                *x *= scale;
            }
            if let Some(m) = mb {
                for (x, &a) in row.iter_mut().zip(&m[i * s..(i + 1) * s]) {
                    *x += a;
                }
            }
            if causal {
                row[(i + 1).min(s)..].fill(f32::NEG_INFINITY);
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if max == f32::NEG_INFINITY {
                row.fill(0.0);
                continue;
            }
            let mut sum = 0.0f32;
            for x in row.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            for x in row.iter_mut() {
                *x *= inv;
            }
        }
        let dropped: Cow<'_, [f32]> = match drop {
            Some(m) => Cow::Owned(
                pb.iter()
                    .zip(&m[p * l * s..(p + 1) * l * s])
                    .map(|(a, b)| a * b)
                    .collect(),
            ),
            None => Cow::Borrowed(pb),
        };
        let mut o = vec![0.0f32; l * dv];
        gemm_into(
            &mut o,
            &dropped,
            &vp,
            &MatmulSpec::single(l, dv, s, false, false),
            false,
        );
        vec![o]
    };
    let os: Vec<Vec<Vec<f32>>> = if split(batch, l * s * (d + dv)) {
        probs
            .par_chunks_mut(l * s)
            .enumerate()
            .map(|(p, pb)| one(p, pb))
            .collect()
    } else {
        probs
            .chunks_mut(l * s)
            .enumerate()
            .map(|(p, pb)| one(p, pb))
            .collect()
    };
    scatter(&mut out, &os, packed_heads, l, &[dv]);
    Ok((out, probs))
}

/// The gradients of [`train_forward`] from the output gradient `g` (in the layout of
/// `spec`), per problem with `Pd = P * drop`, `dPd = g v^T`, `dP = dPd * drop`:
/// `dv = Pd^T g`, `dS = P * (dP - rowsum(dP * P)) * scale`, `dq = dS k`, `dk = dS^T q`.
/// Returns `[dq, dk, dv]`, or `[dqkv]` (`[batch / heads, l, 3 heads d]`) when packed.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    drop: Option<&[f32]>,
    g: &[f32],
    spec: &AttentionSpec,
) -> Result<Vec<Vec<f32>>> {
    let AttentionSpec {
        batch,
        l,
        s,
        d,
        dv,
        scale,
        packed_heads,
        ..
    } = *spec;
    let op = "scaled_dot_product_attention_backward";
    let lay = Layout {
        q,
        k,
        v,
        heads: packed_heads,
        l,
        s,
        d,
        dv,
    };
    let one = |p: usize| -> Vec<Vec<f32>> {
        let [qp, kp, vp] = lay.operands(p);
        let gp = lay.out_block(g, p);
        let pp = &probs[p * l * s..(p + 1) * l * s];
        let dm = drop.map(|m| &m[p * l * s..(p + 1) * l * s]);
        // dPd = g v^T, then dP = dPd * drop
        let mut ds = vec![0.0f32; l * s];
        if dv > 0 {
            gemm_into(
                &mut ds,
                &gp,
                &vp,
                &MatmulSpec::single(l, s, dv, false, true),
                false,
            );
        }
        let pd: Cow<'_, [f32]> = match dm {
            Some(m) => {
                for (x, &a) in ds.iter_mut().zip(m) {
                    *x *= a;
                }
                Cow::Owned(pp.iter().zip(m).map(|(a, b)| a * b).collect())
            }
            None => Cow::Borrowed(pp),
        };
        let mut gv = vec![0.0f32; s * dv];
        gemm_into(
            &mut gv,
            &pd,
            &gp,
            &MatmulSpec::single(s, dv, l, true, false),
            false,
        );
        for (row, prow) in ds.chunks_exact_mut(s).zip(pp.chunks_exact(s)) {
            let dot: f32 = row.iter().zip(prow).map(|(a, b)| a * b).sum();
            for (x, &pv) in row.iter_mut().zip(prow) {
                *x = pv * (*x - dot) * scale;
            }
        }
        let mut gq = vec![0.0f32; l * d];
        let mut gk = vec![0.0f32; s * d];
        if d > 0 {
            gemm_into(
                &mut gq,
                &ds,
                &kp,
                &MatmulSpec::single(l, d, s, false, false),
                false,
            );
            gemm_into(
                &mut gk,
                &ds,
                &qp,
                &MatmulSpec::single(s, d, l, true, false),
                false,
            );
        }
        vec![gq, gk, gv]
    };
    let blocks: Vec<Vec<Vec<f32>>> = if split(batch, l * s * (2 * d + 2 * dv)) {
        (0..batch).into_par_iter().map(one).collect()
    } else {
        (0..batch).map(one).collect()
    };
    match packed_heads {
        Some(_) => {
            let mut dqkv = super::par::filled(batch * l * (2 * d + dv), 0.0, op)?;
            scatter(&mut dqkv, &blocks, packed_heads, l, &[d, d, dv]);
            Ok(vec![dqkv])
        }
        None => {
            let mut all = super::par::filled(batch * (l * d + s * d + s * dv), 0.0, op)?;
            // unpacked: q's, k's and v's gradients one after another, split below
            let (nq, nk) = (batch * l * d, batch * s * d);
            let mut at = [0usize; 3];
            for prob in &blocks {
                for (i, blk) in prob.iter().enumerate() {
                    let o = [0, nq, nq + nk][i] + at[i];
                    all[o..o + blk.len()].copy_from_slice(blk);
                    at[i] += blk.len();
                }
            }
            let gv = all.split_off(nq + nk);
            let gk = all.split_off(nq);
            Ok(vec![all, gk, gv])
        }
    }
}

/// Whether `batch` problems of `work` multiply-adds each go one per rayon task (several
/// problems, several threads, and enough work in all to pay for the hand-off).
fn split(batch: usize, work: usize) -> bool {
    batch > 1 && rayon::current_num_threads() > 1 && batch.saturating_mul(work) >= 1 << 18
}

/// One problem: `out` `[l, dv]` from `q` `[l, d]`, `k` `[s, d]`, `v` `[s, dv]`.
#[allow(clippy::too_many_arguments)]
fn problem(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    out: &mut [f32],
    (l, s, d, dv): (usize, usize, usize, usize),
    scale: f32,
    causal: bool,
) {
    let spec = |m: usize, n: usize, kk: usize, rhs_t: bool| MatmulSpec {
        batch: 1,
        m,
        n,
        k: kk,
        lhs_batch: vec![0],
        rhs_batch: vec![0],
        lhs_t: false,
        rhs_t,
    };
    let mut scores = vec![0.0f32; ROWS.min(l) * KEYS.min(s)];
    let mut run_max = vec![0.0f32; ROWS.min(l)];
    let mut run_sum = vec![0.0f32; ROWS.min(l)];
    for i0 in (0..l).step_by(ROWS) {
        let rows = ROWS.min(l - i0);
        let acc = &mut out[i0 * dv..(i0 + rows) * dv];
        run_max[..rows].fill(f32::NEG_INFINITY);
        run_sum[..rows].fill(0.0);
        for j0 in (0..s).step_by(KEYS) {
            if causal && j0 > i0 + rows - 1 {
                break;
            }
            let keys = KEYS.min(s - j0);
            let sc = &mut scores[..rows * keys];
            if d == 0 {
                sc.fill(0.0);
            } else {
                gemm_into(
                    sc,
                    &q[i0 * d..(i0 + rows) * d],
                    &k[j0 * d..(j0 + keys) * d],
                    &spec(rows, keys, d, true),
                    false,
                );
            }
            for r in 0..rows {
                let i = i0 + r;
                let row = &mut sc[r * keys..(r + 1) * keys];
                for x in row.iter_mut() {
                    *x *= scale;
                }
                if let Some(m) = mask {
                    let mr = &m[i * s + j0..i * s + j0 + keys];
                    for (x, &a) in row.iter_mut().zip(mr) {
                        *x += a;
                    }
                }
                if causal {
                    // keys j > i are masked: columns from i + 1 - j0 on
                    let from = (i + 1).saturating_sub(j0).min(keys);
                    row[from..].fill(f32::NEG_INFINITY);
                }
                let tile_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let m_new = run_max[r].max(tile_max);
                let o = &mut acc[r * dv..(r + 1) * dv];
                if m_new == f32::NEG_INFINITY {
                    // every key so far masked: nothing to add, the row stays 0
                    row.fill(0.0);
                    continue;
                }
                let c = (run_max[r] - m_new).exp();
                let mut sum = 0.0f32;
                for x in row.iter_mut() {
                    *x = (*x - m_new).exp();
                    sum += *x;
                }
                run_sum[r] = run_sum[r] * c + sum;
                run_max[r] = m_new;
                if c != 1.0 {
                    for y in o.iter_mut() {
                        *y *= c;
                    }
                }
            }
            gemm_into(
                acc,
                sc,
                &v[j0 * dv..(j0 + keys) * dv],
                &spec(rows, dv, keys, false),
                true,
            );
        }
        for r in 0..rows {
            let sum = run_sum[r];
            let o = &mut acc[r * dv..(r + 1) * dv];
            if sum == 0.0 {
                o.fill(0.0);
            } else {
                for y in o.iter_mut() {
                    *y /= sum;
                }
            }
        }
    }
}
