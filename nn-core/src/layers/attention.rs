//! `MultiheadAttention`: scaled dot-product attention over `num_heads` heads, with
//! PyTorch's parameters, names, masks and layouts.
//!
//! With E = `embed_dim`, H = `num_heads`, D = E / H, query `[B, L, E]`, key and value
//! `[B, S, E]` (`batch_first`; `[L, B, E]` / `[S, B, E]` otherwise; `[L, E]` unbatched):
//!
//! ```text
//! [q; k; v] = [query Wq^T + bq; key Wk^T + bk; value Wv^T + bv]   in_proj_weight [3E, E] = [Wq; Wk; Wv]
//! per head h: A_h = softmax(q_h k_h^T / sqrt(D) + mask)           [B, H, L, S]
//!             o_h = dropout(A_h) v_h
//! out = concat_h(o_h) Wo^T + bo                                   out_proj [E, E]
//! ```
//!
//! Masks follow PyTorch: `attn_mask` is `[L, S]` or `[B*H, L, S]`, `key_padding_mask`
//! `[B, S]`; a bool mask (or a uint8 or int64 one, nonzero as true) marks with true the
//! positions that may NOT be attended (they get -inf), an f32 mask is added to the scores. A row with every
//! position masked gives NaN with `need_weights` and 0 (then out_proj's bias) without,
//! as in PyTorch, whose path without weights is `scaled_dot_product_attention` (so is
//! ours: [`crate::functional::scaled_dot_product_attention`], fused and tile by tile
//! under `no_grad` on the CPU). `need_weights` returns the attention weights averaged
//! over heads, `[B, L, S]`. Init: `in_proj_weight` Xavier uniform, the
//! biases zero, `out_proj.weight` a Linear's default. Backward: from the primitives, and the fused
//! attention node's own (self-attention without weights reads the heads from the packed
//! projection and writes its gradient packed).
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::{causal_mask, MultiheadAttention}, Tensor};
//! let mha = MultiheadAttention::new(16, 4)?.batch_first(true);
//! let x = Tensor::randn(&[2, 5, 16]);
//! let (y, w) = mha.attend(&x, &x, &x, &nn::layers::AttnMasks {
//!     attn_mask: Some(&causal_mask(5)?),
//!     need_weights: true,
//!     ..Default::default()
//! })?;
//! assert_eq!((y.shape(), w.map(|w| w.shape().to_vec())), (&[2, 5, 16][..], Some(vec![2, 5, 5])));
//! # Ok::<(), nn::Error>(())
//! ```
//!
//! Through [`Forward`], without masks: `forward(&x)` is self-attention and
//! `forward(&(query, key, value))` attention of the query over key and value.

use super::{Dropout, Linear};
use crate::init::{Fans, Init};
use crate::module::{Forward, Module, Param, Visitor, VisitorMut};
use crate::ops::{
    packed_self_attention, packed_self_attention_train, scaled_dot_product_attention,
};
use crate::{DType, Error, Result, Tensor};

/// `[len, len]` f32 additive causal mask: 0 on and below the diagonal, -inf above
/// (PyTorch's `nn.Transformer.generate_square_subsequent_mask`).
pub fn causal_mask(len: usize) -> Result<Tensor> {
    Tensor::try_full(&[len, len], f32::NEG_INFINITY)?.triu(1)
}

/// The optional arguments of [`MultiheadAttention::attend`] (PyTorch's keyword
/// arguments of `MultiheadAttention.forward`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnMasks<'a> {
    /// `[L, S]` or `[B*H, L, S]`: bool, uint8 or int64 (true / nonzero = masked) or f32
    /// (added to the scores).
    pub attn_mask: Option<&'a Tensor>,
    /// `[B, S]`: bool, uint8 or int64 (true / nonzero = padding, ignored) or f32 (added).
    pub key_padding_mask: Option<&'a Tensor>,
    /// Also return the attention weights averaged over heads, `[B, L, S]`.
    pub need_weights: bool,
}

/// PyTorch's name for the output projection of attention: a [`Linear`] that prints as
/// `NonDynamicallyQuantizableLinear`, so printed trees match PyTorch's.
#[derive(Debug, Clone)]
pub struct NonDynamicallyQuantizableLinear(pub Linear);

impl std::ops::Deref for NonDynamicallyQuantizableLinear {
    type Target = Linear;
    fn deref(&self) -> &Linear {
        &self.0
    }
}

impl Module for NonDynamicallyQuantizableLinear {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        self.0.visit(v)
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        self.0.visit_mut(v)
    }
    fn module_name(&self) -> String {
        "NonDynamicallyQuantizableLinear".into()
    }
    fn extra_repr(&self) -> String {
        self.0.extra_repr()
    }
}

/// Multi-head attention with a packed `[3E, E]` input projection.
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    /// `[3 * embed_dim, embed_dim]`: the query, key and value projections stacked.
    pub in_proj_weight: Param,
    /// `[3 * embed_dim]`, absent without bias.
    pub in_proj_bias: Option<Param>,
    /// The output projection, `[embed_dim, embed_dim]`.
    pub out_proj: NonDynamicallyQuantizableLinear,
    embed_dim: usize,
    num_heads: usize,
    dropout: f32,
    batch_first: bool,
    training: bool,
}

impl MultiheadAttention {
    /// `embed_dim` split over `num_heads` heads, with biases, no dropout, sequence-first
    /// layout (PyTorch's defaults; see [`MultiheadAttention::batch_first`]).
    pub fn new(embed_dim: usize, num_heads: usize) -> Result<MultiheadAttention> {
        MultiheadAttention::with_options(embed_dim, num_heads, 0.0, true)
    }

    /// With dropout probability `dropout` on the attention weights and optional biases.
    pub fn with_options(
        embed_dim: usize,
        num_heads: usize,
        dropout: f32,
        bias: bool,
    ) -> Result<MultiheadAttention> {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return Err(Error::invalid_config(
                "MultiheadAttention",
                "num_heads",
                num_heads,
                format!("embed_dim {embed_dim} must be divisible by num_heads"),
            ));
        }
        if !(0.0..=1.0).contains(&dropout) {
            return Err(Error::invalid_config(
                "MultiheadAttention",
                "dropout",
                dropout,
                "must be in [0, 1]",
            ));
        }
        let e3 = embed_dim.checked_mul(3).ok_or_else(|| {
            Error::invalid_config("MultiheadAttention", "embed_dim", embed_dim, "too large")
        })?;
        let fans = Fans {
            fan_in: embed_dim,
            fan_out: e3,
        };
        let in_proj_weight = Param::init_with_fans(&[e3, embed_dim], Init::xavier_uniform(), fans)?;
        in_proj_weight.set_name("in_proj_weight");
        let in_proj_bias = if bias {
            let b = Param::init(&[e3], Init::Zeros)?;
            b.set_name("in_proj_bias");
            Some(b)
        } else {
            None
        };
        let out_proj = if bias {
            let l = Linear::new(embed_dim, embed_dim);
            l.bias
                .as_ref()
                .map(|b| b.reinit(&Init::Zeros))
                .transpose()?;
            l
        } else {
            Linear::no_bias(embed_dim, embed_dim)
        };
        Ok(MultiheadAttention {
            in_proj_weight,
            in_proj_bias,
            out_proj: NonDynamicallyQuantizableLinear(out_proj),
            embed_dim,
            num_heads,
            dropout,
            batch_first: false,
            training: true,
        })
    }

    /// Sets the layout: `[B, L, E]` when true, `[L, B, E]` when false (the default).
    pub fn batch_first(mut self, on: bool) -> MultiheadAttention {
        self.batch_first = on;
        self
    }

    /// The model width E.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }
    /// The number of heads H.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }
    /// Whether inputs are `[B, L, E]`.
    pub fn is_batch_first(&self) -> bool {
        self.batch_first
    }

    /// `layers.0.self_attn (MultiheadAttention(embed_dim=64, num_heads=4))`.
    fn layer_name(&self) -> String {
        let desc = format!(
            "MultiheadAttention(embed_dim={}, num_heads={})",
            self.embed_dim, self.num_heads
        );
        match self.in_proj_weight.name().strip_suffix(".in_proj_weight") {
            Some(owner) if !owner.is_empty() => format!("{owner} ({desc})"),
            _ => desc,
        }
    }

    fn bad_input(&self, what: &str, expected: String, t: &Tensor) -> Error {
        Error::InputMismatch {
            layer: self.layer_name(),
            expected: format!("{what} {expected}"),
            actual: t.shape().to_vec(),
        }
    }

    /// `[B, T, E]` of an input in this layer's layout (`[T, E]` unbatched = B 1).
    fn to_batch_first(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        let e = self.embed_dim;
        match t.shape() {
            [_, _, d] if *d == e => {
                if self.batch_first {
                    Ok(t.clone())
                } else {
                    t.transpose(0, 1)
                }
            }
            [_, d] if *d == e => t.unsqueeze(0),
            _ => Err(self.bad_input(what, format!("[*, *, {e}] or [*, {e}]"), t)),
        }
    }

    /// A mask as f32 additive scores broadcastable to `[B, H, L, S]`, from `shape`'s rows.
    fn additive(&self, what: &str, m: &Tensor, want: &[usize], view: &[usize]) -> Result<Tensor> {
        if m.shape() != want {
            return Err(self.bad_input(what, format!("of shape {want:?}"), m));
        }
        let m = match m.dtype() {
            DType::Bool | DType::U8 | DType::I64 => Tensor::try_zeros(m.shape())?
                .to_device(&m.device())?
                .masked_fill(m, f32::NEG_INFINITY)?,
            DType::F32 => m.clone(),
            d => {
                return Err(self.bad_input(
                    what,
                    format!("of dtype bool, uint8, int64 (as bool) or f32, not {d}"),
                    m,
                ))
            }
        };
        m.reshape(view)
    }

    /// Attention of `query` over `key`/`value` with optional masks; returns the output
    /// (in the input's layout) and, with `need_weights`, the head-averaged weights
    /// `[B, L, S]` (`[L, S]` unbatched).
    pub fn attend(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        masks: &AttnMasks<'_>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let unbatched = query.rank() == 2;
        if key.rank() != query.rank() || value.rank() != query.rank() {
            return Err(self.bad_input(
                "key and value",
                format!("of the query's rank {}", query.rank()),
                key,
            ));
        }
        let q_in = self.to_batch_first("query", query)?;
        let k_in = self.to_batch_first("key", key)?;
        let v_in = self.to_batch_first("value", value)?;
        let (b, l, s) = (q_in.shape()[0], q_in.shape()[1], k_in.shape()[1]);
        if k_in.shape()[..2] != v_in.shape()[..2] || k_in.shape()[0] != b {
            return Err(self.bad_input(
                "key and value",
                format!("batch {b} and one length, value {:?}", v_in.shape()),
                &k_in,
            ));
        }
        let (e, h) = (self.embed_dim, self.num_heads);
        let d = e / h;
        let w = self.in_proj_weight.tensor()?;
        let bias = self.in_proj_bias.as_ref().map(Param::tensor).transpose()?;
        // one tensor passed three times (storage is contiguous, so storage and shape
        // identify it): one packed projection instead of three
        let self_attention = query.same_storage(key)
            && key.same_storage(value)
            && query.shape() == key.shape()
            && key.shape() == value.shape();
        // self-attention keeps the packed [B, L, 3E] projection: the fused no-grad path
        // reads the heads from it, the others split it
        let (qkv, split) = if self_attention {
            (Some(q_in.linear(&w, bias.as_ref())?), None)
        } else {
            let ws = w.chunk(3, 0)?;
            let bs = bias.map(|b| b.chunk(3, 0)).transpose()?;
            let bi = |i: usize| bs.as_ref().map(|b| b[i].clone());
            let q = q_in.linear(&ws[0], bi(0).as_ref())?;
            let k = k_in.linear(&ws[1], bi(1).as_ref())?;
            let v = v_in.linear(&ws[2], bi(2).as_ref())?;
            (None, Some((q, k, v)))
        };
        let dev = match (&qkv, &split) {
            (Some(t), _) | (None, Some((t, _, _))) => t.device(),
            (None, None) => q_in.device(),
        };
        // [B, T, E] -> [B, H, T, D]
        let heads = |t: &Tensor, len: usize| t.reshape(&[b, len, h, d])?.permute(&[0, 2, 1, 3]);
        let scale = 1.0 / (d as f32).sqrt();
        let mut mask: Option<Tensor> = None;
        if let Some(m) = masks.attn_mask {
            let m = match m.rank() {
                2 => self.additive("attn_mask", m, &[l, s], &[1, 1, l, s])?,
                _ => self.additive("attn_mask", m, &[b * h, l, s], &[b, h, l, s])?,
            };
            // a bool mask cannot live on a device without bool storage: its additive
            // form is made where it is and moved to the scores
            mask = Some(m.to_device(&dev)?);
        }
        if let Some(m) = masks.key_padding_mask {
            let want: &[usize] = if unbatched { &[s] } else { &[b, s] };
            let m = self.additive("key_padding_mask", m, want, &[b, 1, 1, s])?;
            let m = m.to_device(&dev)?;
            mask = Some(match mask {
                Some(a) => a.add(&m)?,
                None => m,
            });
        }
        let p = if self.training { self.dropout } else { 0.0 };
        let fused = match &qkv {
            Some(qkv) if !masks.need_weights && p == 0.0 => {
                packed_self_attention(qkv, h, mask.as_ref(), scale)?
            }
            _ => None,
        };
        // the heads' blocks of the packed projection (split already without it)
        let split = || -> Result<(Tensor, Tensor, Tensor)> {
            match (&split, &qkv) {
                (Some((q, k, v)), _) => Ok((q.clone(), k.clone(), v.clone())),
                (None, Some(qkv)) => {
                    let p = qkv.chunk(3, -1)?;
                    Ok((p[0].clone(), p[1].clone(), p[2].clone()))
                }
                (None, None) => Err(self.bad_input("query", "projected".into(), query)),
            }
        };
        let (o, attn) = if let Some(o) = fused {
            (o, None)
        } else if masks.need_weights {
            let (q, k, v) = split()?;
            let q = heads(&q.mul_scalar(scale)?, l)?;
            let (k, v) = (heads(&k, s)?, heads(&v, s)?);
            let mut scores = q.matmul(&k.transpose(-2, -1)?)?;
            if let Some(m) = &mask {
                scores = scores.add(m)?;
            }
            // no keys: nothing to normalize (the max of an empty row is an error), and
            // the empty product below gives zeros, as in PyTorch
            let attn = if s == 0 { scores } else { scores.softmax(-1)? };
            let dropped = if p > 0.0 {
                Dropout::new(p).forward(&attn)?
            } else {
                attn.clone()
            };
            let o = dropped.matmul(&v)?;
            (o.permute(&[0, 2, 1, 3])?.reshape(&[b, l, e])?, Some(attn))
        } else if let Some(qkv) = &qkv {
            // PyTorch's path without weights: a row with every key masked gives 0
            let o = packed_self_attention_train(qkv, h, mask.as_ref(), p, scale)?;
            (o, None)
        } else {
            let (q, k, v) = split()?;
            let (q, k, v) = (heads(&q, l)?, heads(&k, s)?, heads(&v, s)?);
            let o = scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), p, false, Some(scale))?;
            (o.permute(&[0, 2, 1, 3])?.reshape(&[b, l, e])?, None)
        };
        let mut out = self.out_proj.forward(&o)?;
        let mut weights = attn.map(|a| a.mean_dim(1, false)).transpose()?;
        if unbatched {
            out = out.squeeze(0)?;
            weights = weights.map(|w| w.squeeze(0)).transpose()?;
        } else if !self.batch_first {
            out = out.transpose(0, 1)?;
        }
        Ok((out, weights))
    }
}

impl Module for MultiheadAttention {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.param("in_proj_weight", &self.in_proj_weight);
        if let Some(b) = &self.in_proj_bias {
            v.param("in_proj_bias", b);
        }
        v.module("out_proj", &self.out_proj);
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        v.param("in_proj_weight", &mut self.in_proj_weight);
        if let Some(b) = &mut self.in_proj_bias {
            v.param("in_proj_bias", b);
        }
        v.module("out_proj", &mut self.out_proj);
    }
    fn module_name(&self) -> String {
        "MultiheadAttention".into()
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl Forward for MultiheadAttention {
    /// Self-attention of `x` without masks.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.attend(x, x, x, &AttnMasks::default())?.0)
    }
}

impl Forward<(Tensor, Tensor, Tensor)> for MultiheadAttention {
    /// Attention of `query` over `key` and `value` without masks (PyTorch's
    /// `mha(query, key, value)[0]`); masks and weights: [`MultiheadAttention::attend`].
    fn forward(&self, (query, key, value): &(Tensor, Tensor, Tensor)) -> Result<Tensor> {
        Ok(self.attend(query, key, value, &AttnMasks::default())?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::grad_check::check_param_grads;
    use crate::ops::testing::check_grad;
    use crate::ModuleExt;

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let mha = MultiheadAttention::new(8, 2)?.batch_first(true);
        if let Some(b) = &mha.in_proj_bias {
            b.set_data(&Tensor::randn(&[24]))?;
        }
        let x = Tensor::randn(&[2, 3, 8]);
        let pad = Tensor::from_vec(vec![0i64, 0, 1, 0, 0, 0], &[2, 3])?;
        let causal = causal_mask(3)?;
        let masks = AttnMasks {
            attn_mask: Some(&causal),
            key_padding_mask: Some(&pad),
            need_weights: false,
        };
        check_param_grads(&mha, 10, || Ok(mha.attend(&x, &x, &x, &masks)?.0))?;
        check_grad(&[&[2, 3, 8]], |xs| {
            Ok(mha.attend(&xs[0], &xs[0], &xs[0], &masks)?.0)
        })?;
        // cross-attention through the split projection, sequence-first, weights too
        let mha = mha.batch_first(false);
        check_grad(&[&[3, 2, 8], &[4, 2, 8]], |xs| {
            let (o, w) = mha.attend(
                &xs[0],
                &xs[1],
                &xs[1],
                &AttnMasks {
                    need_weights: true,
                    ..Default::default()
                },
            )?;
            o.sum_dim(-1, false)?.add(
                &w.ok_or_else(|| Error::custom("need_weights: no weights returned"))?
                    .sum_dim(-1, false)?
                    .transpose(0, 1)?,
            )
        })?;
        Ok(())
    }

    #[test]
    fn packed_and_split_projections_agree() -> Result<()> {
        // key = a reshape of the query's storage: must not take the self-attention path
        let mha = MultiheadAttention::new(4, 2)?.batch_first(true);
        let q = Tensor::randn(&[2, 3, 4]);
        let k = q.reshape(&[3, 2, 4])?;
        let none = AttnMasks::default();
        assert!(mha.attend(&q, &k, &k, &none).is_err()); // batch 2 vs 3
        let (a, _) = mha.attend(&q, &q, &q, &none)?;
        let (b, _) = mha.attend(
            &q,
            &q.detach().add_scalar(0.0)?,
            &q.detach().add_scalar(0.0)?,
            &none,
        )?;
        for (x, y) in a.to_vec::<f32>()?.iter().zip(b.to_vec::<f32>()?) {
            assert!((x - y).abs() < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn the_three_input_forward_is_attend_without_masks() -> Result<()> {
        let mha = MultiheadAttention::new(4, 2)?.batch_first(true);
        let (q, kv) = (Tensor::randn(&[2, 3, 4]), Tensor::randn(&[2, 5, 4]));
        let none = AttnMasks::default();
        let (want, _) = mha.attend(&q, &kv, &kv, &none)?;
        let boxed: Box<dyn Forward<(Tensor, Tensor, Tensor)>> = Box::new(mha.clone());
        let got = boxed.forward(&(q.clone(), kv.clone(), kv))?;
        assert_eq!(got.to_vec::<f32>()?, want.to_vec::<f32>()?);
        // one tensor three times is self-attention, the single-input form
        let (want, _) = mha.attend(&q, &q, &q, &none)?;
        let got =
            Forward::<(Tensor, Tensor, Tensor)>::forward(&mha, &(q.clone(), q.clone(), q.clone()))?;
        assert_eq!(got.to_vec::<f32>()?, want.to_vec::<f32>()?);
        assert_eq!(mha.forward(&q)?.to_vec::<f32>()?, want.to_vec::<f32>()?);
        Ok(())
    }

    #[test]
    fn hand_derived_uniform_attention() -> Result<()> {
        // all keys equal -> uniform weights 1/S; value rows equal -> output independent of q
        let mha = MultiheadAttention::new(4, 2)?.batch_first(true);
        let q = Tensor::randn(&[1, 2, 4]);
        let kv = Tensor::ones(&[1, 3, 4]);
        let (_, w) = mha.attend(
            &q,
            &kv,
            &kv,
            &AttnMasks {
                need_weights: true,
                ..Default::default()
            },
        )?;
        let w = w
            .ok_or_else(|| Error::custom("need_weights: no weights returned"))?
            .to_vec::<f32>()?;
        assert!(w.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-6), "{w:?}");
        Ok(())
    }

    #[test]
    fn bad_configs_and_masks_are_errors_naming_the_layer() -> Result<()> {
        assert!(MultiheadAttention::new(10, 3).is_err());
        assert!(MultiheadAttention::new(10, 0).is_err());
        struct M(MultiheadAttention);
        impl Module for M {
            fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
                v.module("attn", &self.0)
            }
            fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
                v.module("attn", &mut self.0)
            }
        }
        let m = M(MultiheadAttention::new(8, 2)?.batch_first(true));
        let _ = m.named_parameters();
        let x = Tensor::randn(&[2, 3, 8]);
        let bad = [
            (Some(Tensor::zeros(&[3, 4])), None),
            (Some(Tensor::zeros(&[2, 3, 3])), None),
            (None, Some(Tensor::zeros(&[3, 2]))),
            (None, Some(Tensor::zeros(&[2]))),
        ];
        for (am, kpm) in &bad {
            let r = m.0.attend(
                &x,
                &x,
                &x,
                &AttnMasks {
                    attn_mask: am.as_ref(),
                    key_padding_mask: kpm.as_ref(),
                    need_weights: false,
                },
            );
            let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                msg.starts_with("attn (MultiheadAttention(embed_dim=8, num_heads=2))"),
                "{msg}"
            );
        }
        assert!(m.0.forward(&Tensor::zeros(&[2, 3, 7])).is_err());
        assert!(m.0.forward(&Tensor::zeros(&[8])).is_err());
        Ok(())
    }
}
