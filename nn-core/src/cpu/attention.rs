//! Fused attention forward on the host (no gradients): per (batch, head) problem, blocks
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
/// contiguous scratch and runs the same [`problem`] as [`forward`] on them, so the
/// result is bit-identical to splitting the heads first.
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
    let n = batch / heads.max(1);
    let e = heads * dv;
    let mut out = try_filled(n * l * e, 0.0f32, "scaled_dot_product_attention")?;
    if l == 0 || dv == 0 {
        return Ok(out);
    }
    let row = 3 * heads * d;
    let one = |p: usize| {
        let (b, h) = (p / heads, p % heads);
        let rows = &qkv[b * l * row..(b + 1) * l * row];
        let gather = |off: usize, w: usize| {
            let mut t = Vec::with_capacity(l * w);
            for r in rows.chunks_exact(row) {
                t.extend_from_slice(&r[off..off + w]);
            }
            t
        };
        let q = gather(h * d, d);
        let k = gather(heads * d + h * d, d);
        let v = gather(2 * heads * d + h * dv, dv);
        let mut o = vec![0.0f32; l * dv];
        let mb = mask.map(|(m, idx)| &m[idx[p] * l * l..(idx[p] + 1) * l * l]);
        problem(&q, &k, &v, mb, &mut o, (l, l, d, dv), scale, causal);
        o
    };
    // the problems' outputs `[l, dv]` into their columns of `[l, e]`, one sample
    let merge = |ob: &mut [f32], os: &[Vec<f32>]| {
        for (h, o) in os.iter().enumerate() {
            for (dst, src) in ob.chunks_exact_mut(e).zip(o.chunks_exact(dv)) {
                dst[h * dv..(h + 1) * dv].copy_from_slice(src);
            }
        }
    };
    if split(batch, l * l * (d + dv)) {
        let os: Vec<Vec<f32>> = (0..batch).into_par_iter().map(one).collect();
        out.par_chunks_mut(l * e)
            .zip(os.par_chunks(heads))
            .for_each(|(ob, os)| merge(ob, os));
    } else {
        for (b, ob) in out.chunks_mut(l * e).enumerate() {
            let os: Vec<Vec<f32>> = (b * heads..(b + 1) * heads).map(one).collect();
            merge(ob, &os);
        }
    }
    Ok(out)
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
