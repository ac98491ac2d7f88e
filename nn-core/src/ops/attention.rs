//! `scaled_dot_product_attention`, PyTorch's `F.scaled_dot_product_attention`:
//! `softmax(q k^T * scale + mask) v` over the last two dims, batch dims in front.
//!
//! With A the weights, D the dropout's mask-and-scale, Ad = A * D, o = Ad v and g the
//! output gradient: dAd = g v^T, dv = Ad^T g, dA = dAd * D,
//! dS = A * (dA - sum(dA * A)), dq = scale dS k, dk = scale dS^T q. Without gradients
//! or dropout the CPU runs a fused tile-by-tile forward that never stores the
//! `[.., L, S]` weights; with them, one autograd node that stores A (and D) and runs
//! that backward per (batch, head) problem. A backend without those kernels composes
//! the op from primitives (scale, matmul, add, the fused softmax, dropout, matmul) and
//! autograd differentiates it, with the same dropout draws.
//!
//! NOTE: a query row whose keys are all masked gives 0, as PyTorch's SDPA does (its
//! "safe softmax"; the plain softmax gives NaN there, as `MultiheadAttention` with
//! `need_weights` does in PyTorch).

use crate::autograd::{backward_fn, record};
use crate::backend::AttentionSpec;
use crate::layers::Dropout;
use crate::shape::{broadcast_shapes, Dims};
use crate::{DType, Error, Result, Tensor};

const OP: &str = "scaled_dot_product_attention";

/// Attention of `query` `[*, L, E]` over `key` `[*, S, E]` and `value` `[*, S, Ev]`
/// (the same batch dims `*`), `[*, L, Ev]` out: `softmax(q k^T * scale + mask) v`,
/// PyTorch's `F.scaled_dot_product_attention` with its arguments and semantics.
///
/// - `attn_mask` broadcasts to `[*, L, S]`: bool, true = may attend (false gets -inf),
///   or f32, added to the scores.
/// - `dropout_p`: dropout on the weights (applied whenever > 0, as in PyTorch: pass 0
///   in eval).
/// - `is_causal`: query `i` attends keys `j <= i` (top-left aligned); not with a mask.
/// - `scale`: defaults to `1 / sqrt(E)`.
///
/// A query row whose keys are all masked gives 0, as in PyTorch.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{functional as F, Tensor};
/// let (q, k, v) = (Tensor::randn(&[2, 4, 5, 8]), Tensor::randn(&[2, 4, 7, 8]), Tensor::randn(&[2, 4, 7, 3]));
/// let o = F::scaled_dot_product_attention(&q, &k, &v, None, 0.0, false, None)?;
/// assert_eq!(o.shape(), &[2, 4, 5, 3]);
/// // a bool mask: true = attend; the first query row sees key 0 only
/// let mut keep = vec![true; 5 * 7];
/// keep[1..7].fill(false);
/// let mask = Tensor::from_vec(keep, &[5, 7])?;
/// let o = F::scaled_dot_product_attention(&q, &k, &v, Some(&mask), 0.0, false, None)?;
/// let first = o.narrow(2, 0, 1)?.to_vec::<f32>()?;
/// let v0 = v.narrow(2, 0, 1)?.to_vec::<f32>()?;
/// assert!(first.iter().zip(&v0).all(|(a, b)| (a - b).abs() < 1e-5));
/// # Ok::<(), nn::Error>(())
/// ```
pub fn scaled_dot_product_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    attn_mask: Option<&Tensor>,
    dropout_p: f32,
    is_causal: bool,
    scale: Option<f32>,
) -> Result<Tensor> {
    let r = query.rank();
    let bad = |t: &Tensor, msg: String| Err(Error::bad_shape(OP, t.shape(), msg));
    if r < 2 || key.rank() != r || value.rank() != r {
        return bad(
            query,
            format!(
                "query, key and value must be [*, L, E], [*, S, E], [*, S, Ev] of one rank >= 2, got ranks {}, {}, {}",
                r,
                key.rank(),
                value.rank()
            ),
        );
    }
    let (qs, ks, vs) = (query.shape(), key.shape(), value.shape());
    if qs[..r - 2] != ks[..r - 2] || ks[..r - 1] != vs[..r - 1] || qs[r - 1] != ks[r - 1] {
        return Err(Error::ShapeMismatch {
            op: "scaled_dot_product_attention (query [*, L, E], key [*, S, E], value [*, S, Ev])",
            lhs: qs.to_vec(),
            rhs: [ks, vs].concat(),
        });
    }
    for t in [query, key, value] {
        if t.dtype() != DType::F32 {
            return bad(
                t,
                format!("query, key and value must be f32, not {}", t.dtype()),
            );
        }
        super::same_device(OP, query, t)?;
    }
    if !(0.0..=1.0).contains(&dropout_p) {
        return Err(Error::invalid_config(
            OP,
            "dropout_p",
            dropout_p,
            "must be in [0, 1]",
        ));
    }
    if is_causal && attn_mask.is_some() {
        return Err(Error::invalid_config(
            OP,
            "is_causal",
            true,
            "an explicit attn_mask cannot be combined with is_causal (as in PyTorch)",
        ));
    }
    let (l, s, e, ev) = (qs[r - 2], ks[r - 2], qs[r - 1], vs[r - 1]);
    let scale = scale.unwrap_or(1.0 / (e as f32).sqrt());
    let mask = additive_mask(attn_mask, query, &qs[..r - 2], l, s)?;
    let needs_grad = crate::autograd::is_grad_enabled()
        && (query.requires_grad() || key.requires_grad() || value.requires_grad());
    if !needs_grad && dropout_p == 0.0 {
        let batch: usize = qs[..r - 2].iter().product();
        let mask_batch = mask
            .as_ref()
            .map(|m| mask_index(&m.shape()[..r - 2], &qs[..r - 2]));
        let spec = AttentionSpec {
            batch,
            l,
            s,
            d: e,
            dv: ev,
            scale,
            causal: is_causal,
            mask_batch,
            packed_heads: None,
        };
        let fused = query.storage().attention(
            key.storage().as_ref(),
            value.storage().as_ref(),
            mask.as_ref().map(|m| m.storage().as_ref()),
            &spec,
        )?;
        if let Some(o) = fused {
            let out: Vec<usize> = [&qs[..r - 1], &[ev]].concat();
            return Tensor::from_storage(o, &out);
        }
    }
    let batch_dims = &qs[..r - 2];
    let drop = drop_mask(dropout_p, &[batch_dims, &[l, s]].concat(), &query.device())?;
    let spec = AttentionSpec {
        batch: batch_dims.iter().product(),
        l,
        s,
        d: e,
        dv: ev,
        scale,
        causal: is_causal,
        mask_batch: mask
            .as_ref()
            .map(|m| mask_index(&m.shape()[..r - 2], batch_dims)),
        packed_heads: None,
    };
    let out: Vec<usize> = [&qs[..r - 1], &[ev]].concat();
    if let Some(o) = fused_train(
        &[query, key, value],
        mask.as_ref(),
        drop.as_ref(),
        spec,
        &out,
    )? {
        return Ok(o);
    }
    composed(query, key, value, mask, drop, is_causal, scale)
}

/// The dropout's mask-and-scale for weights of `shape` on `dev`, drawn as
/// [`Dropout`]'s forward draws it (`None` for `p = 0`, which draws nothing).
fn drop_mask(p: f32, shape: &[usize], dev: &crate::Device) -> Result<Option<Tensor>> {
    if p == 0.0 {
        return Ok(None);
    }
    Ok(Some(Dropout::new(p).mask(shape)?.to_device(dev)?))
}

/// The fused training forward as one autograd node with its own backward
/// ([`crate::backend::BackendStorage::attention_train`] /
/// [`attention_backward`](crate::backend::BackendStorage::attention_backward)), on
/// `inputs` `[q, k, v]` or the packed projection `[qkv]`; `None` where the backend has
/// no fused form or an f32 mask wants its own gradient.
fn fused_train(
    inputs: &[&Tensor],
    mask: Option<&Tensor>,
    drop: Option<&Tensor>,
    spec: AttentionSpec,
    out_shape: &[usize],
) -> Result<Option<Tensor>> {
    if mask.is_some_and(|m| m.requires_grad()) && crate::autograd::is_grad_enabled() {
        return Ok(None);
    }
    let (q, k, v) = match *inputs {
        [qkv] => (qkv, qkv, qkv),
        [q, k, v] => (q, k, v),
        _ => return Ok(None),
    };
    let Some((o, probs)) = q.storage().attention_train(
        k.storage().as_ref(),
        v.storage().as_ref(),
        mask.map(|m| m.storage().as_ref()),
        drop.map(|m| m.storage().as_ref()),
        &spec,
    )?
    else {
        return Ok(None);
    };
    let drop = drop.cloned();
    let y = record(o, Dims::from_slice(out_shape), inputs, OP, move || {
        backward_fn(move |inp, g| {
            let (q, k, v) = match inp {
                [qkv] => (qkv, qkv, qkv),
                [q, k, v] => (q, k, v),
                _ => {
                    return Err(Error::custom(format!(
                        "{OP}: backward of {} inputs",
                        inp.len()
                    )))
                }
            };
            let grads = q
                .storage()
                .attention_backward(
                    k.storage().as_ref(),
                    v.storage().as_ref(),
                    probs.as_ref(),
                    drop.as_ref().map(|m| m.storage().as_ref()),
                    g.storage().as_ref(),
                    &spec,
                )?
                .ok_or_else(|| {
                    Error::custom(format!(
                        "{OP}: the backend ran the fused forward but has no fused backward"
                    ))
                })?;
            if grads.len() != inp.len() {
                return Err(Error::custom(format!(
                    "{OP}: the backward gave {} gradients for {} inputs",
                    grads.len(),
                    inp.len()
                )));
            }
            grads
                .into_iter()
                .zip(inp)
                .map(|(s, t)| Tensor::from_storage(s, t.shape()).map(Some))
                .collect()
        })
    });
    Ok(Some(y))
}

/// The composite form, differentiated by autograd: `mask` additive `[m*, L, S]` (or
/// none), `drop` the dropout's mask-and-scale of the weights, already drawn.
fn composed(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    mask: Option<Tensor>,
    drop: Option<Tensor>,
    is_causal: bool,
    scale: f32,
) -> Result<Tensor> {
    let (r, l, s) = (
        query.rank(),
        query.shape()[query.rank() - 2],
        key.shape()[key.rank() - 2],
    );
    let mut scores = query.mul_scalar(scale)?.matmul(&key.transpose(-2, -1)?)?;
    let mask = match (mask, is_causal) {
        (Some(m), _) => Some(m),
        (None, true) => Some(
            Tensor::try_full(&[l, s], f32::NEG_INFINITY)?
                .triu(1)?
                .to_device(&query.device())?,
        ),
        (None, false) => None,
    };
    if let Some(m) = &mask {
        scores = scores.add(m)?;
    }
    if s == 0 {
        // no keys: the empty product below gives zeros, as in PyTorch
        return scores.matmul(value);
    }
    let attn = match &mask {
        None => scores.softmax(-1)?,
        Some(_) => {
            // PyTorch's safe softmax: rows with every key masked give 0, not NaN.
            // NOTE: their scores are replaced before the softmax too, or its backward
            // (y (g - sum g y) with y NaN) would put NaN in every gradient.
            let dead = scores
                .detach()
                .max_axes_keepdim(&[r - 1])?
                .eq(&Tensor::try_full(&[], f32::NEG_INFINITY)?.to_device(&query.device())?)?;
            let zero = Tensor::try_zeros(&[])?.to_device(&query.device())?;
            let live = Tensor::where_cond(&dead, &zero, &scores)?;
            Tensor::where_cond(&dead, &zero, &live.softmax(-1)?)?
        }
    };
    match drop {
        Some(m) => attn.mul(&m)?.matmul(value),
        None => attn.matmul(value),
    }
}

/// Self-attention on one packed projection `qkv` `[B, L, 3 E]` (the q, k and v column
/// blocks, each `[H, D]` per row), `[B, L, E]` out with the heads merged: what
/// [`scaled_dot_product_attention`] gives on the heads `[B, H, L, D]` of each block
/// (no dropout, not causal, `attn_mask` broadcasting to `[B, H, L, L]`), merged back,
/// bit for bit, without the split and merge copies. `None` where that fused path does
/// not apply (gradients, a backend without it): the caller splits the heads itself.
pub(crate) fn packed_self_attention(
    qkv: &Tensor,
    heads: usize,
    attn_mask: Option<&Tensor>,
    scale: f32,
) -> Result<Option<Tensor>> {
    let &[b, l, e3] = qkv.shape() else {
        return Ok(None);
    };
    if qkv.dtype() != DType::F32
        || heads == 0
        || e3 % (3 * heads) != 0
        || (crate::autograd::is_grad_enabled() && qkv.requires_grad())
    {
        return Ok(None);
    }
    let d = e3 / (3 * heads);
    let mask = additive_mask(attn_mask, qkv, &[b, heads], l, l)?;
    let spec = packed_spec([b, heads, l, d], mask.as_ref(), scale);
    let st = qkv.storage();
    let fused = st.attention(
        st.as_ref(),
        st.as_ref(),
        mask.as_ref().map(|m| m.storage().as_ref()),
        &spec,
    )?;
    fused
        .map(|o| Tensor::from_storage(o, &[b, l, heads * d]))
        .transpose()
}

/// The spec of a self-attention read from a packed projection `[b, l, 3 * heads * d]`.
fn packed_spec([b, heads, l, d]: [usize; 4], mask: Option<&Tensor>, scale: f32) -> AttentionSpec {
    AttentionSpec {
        batch: b * heads,
        l,
        s: l,
        d,
        dv: d,
        scale,
        causal: false,
        mask_batch: mask.map(|m| mask_index(&m.shape()[..2], &[b, heads])),
        packed_heads: Some(heads),
    }
}

/// [`packed_self_attention`] where that does not apply (gradients, dropout): the same
/// self-attention on the packed projection `qkv` `[B, L, 3 E]`, `[B, L, E]` out, with
/// dropout `dropout_p` on the weights (drawn as [`scaled_dot_product_attention`] on the
/// split heads draws it). One fused autograd node reading the heads from `qkv` and
/// writing its gradient packed where the backend has the kernels; otherwise the split,
/// the composite and the merge.
pub(crate) fn packed_self_attention_train(
    qkv: &Tensor,
    heads: usize,
    attn_mask: Option<&Tensor>,
    dropout_p: f32,
    scale: f32,
) -> Result<Tensor> {
    let (b, l, e3) = match *qkv.shape() {
        [b, l, e3] if heads > 0 && e3 % (3 * heads) == 0 => (b, l, e3),
        _ => {
            return Err(Error::bad_shape(
                OP,
                qkv.shape(),
                format!("a packed projection [B, L, 3 E] with E divisible by {heads} heads"),
            ))
        }
    };
    let d = e3 / (3 * heads);
    let mask = additive_mask(attn_mask, qkv, &[b, heads], l, l)?;
    let drop = drop_mask(dropout_p, &[b, heads, l, l], &qkv.device())?;
    if qkv.dtype() == DType::F32 {
        let spec = packed_spec([b, heads, l, d], mask.as_ref(), scale);
        if let Some(o) = fused_train(
            &[qkv],
            mask.as_ref(),
            drop.as_ref(),
            spec,
            &[b, l, heads * d],
        )? {
            return Ok(o);
        }
    }
    let p = qkv.chunk(3, -1)?;
    let split = |t: &Tensor| t.reshape(&[b, l, heads, d])?.permute(&[0, 2, 1, 3]);
    let o = composed(
        &split(&p[0])?,
        &split(&p[1])?,
        &split(&p[2])?,
        mask,
        drop,
        false,
        scale,
    )?;
    o.permute(&[0, 2, 1, 3])?.reshape(&[b, l, heads * d])
}

/// `attn_mask` as additive f32 scores `[m*, L, S]` on the query's device, `m*`
/// broadcasting to the batch dims `batch` (same rank).
fn additive_mask(
    attn_mask: Option<&Tensor>,
    query: &Tensor,
    batch: &[usize],
    l: usize,
    s: usize,
) -> Result<Option<Tensor>> {
    let r = batch.len() + 2;
    Ok(match attn_mask {
        None => None,
        Some(m) => {
            let full: Vec<usize> = [batch, &[l, s]].concat();
            let out = broadcast_shapes(OP, m.shape(), &full)?;
            if out.as_slice() != full.as_slice() {
                return Err(Error::mismatch(OP, m.shape(), &full));
            }
            // a bool mask cannot live on a device without bool storage: its additive
            // form is made where it is and moved to the query
            let add = match m.dtype() {
                DType::Bool => Tensor::try_zeros(m.shape())?
                    .to_device(&m.device())?
                    .masked_fill(&m.logical_not()?, f32::NEG_INFINITY)?,
                DType::F32 => m.clone(),
                d => {
                    return Err(Error::bad_shape(
                        OP,
                        m.shape(),
                        format!("attn_mask must be bool (true = attend) or f32, not {d}"),
                    ))
                }
            };
            let add = add.to_device(&query.device())?;
            // pad to the query's rank and spell out the last two dims
            let mut padded = vec![1usize; r - add.rank()];
            padded.extend_from_slice(add.shape());
            let lr = Tensor::try_zeros(&[l, s])?.to_device(&query.device())?;
            Some(add.reshape(&padded)?.add(&lr)?)
        }
    })
}

/// For each problem of the batch dims `batch`, the index of its mask matrix in a mask
/// with batch dims `mask` (each equal or 1, same rank): broadcasting's row-major index.
fn mask_index(mask: &[usize], batch: &[usize]) -> Vec<usize> {
    let n: usize = batch.iter().product();
    (0..n)
        .map(|mut flat| {
            let (mut idx, mut stride) = (0, 1);
            for (&m, &b) in mask.iter().zip(batch).rev() {
                let i = flat % b.max(1);
                flat /= b.max(1);
                if m != 1 {
                    idx += i * stride;
                }
                stride *= m;
            }
            idx
        })
        .collect()
}

#[cfg(test)]
mod tests;
