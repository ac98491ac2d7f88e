//! `TransformerEncoderLayer` and `TransformerEncoder`, PyTorch's, parameter for
//! parameter: both are `#[derive(Module)]` structs whose field names give PyTorch's state
//! dict keys (`layers.0.self_attn.in_proj_weight`, `layers.1.norm2.bias`).
//!
//! One layer, x `[B, T, E]` (`batch_first`) or `[T, B, E]`:
//!
//! ```text
//! post-norm (norm_first = false):  x = norm1(x + drop1(SA(x)));  x = norm2(x + drop2(FF(x)))
//! pre-norm  (norm_first = true):   x = x + drop1(SA(norm1(x)));  x = x + drop2(FF(norm2(x)))
//! SA(x) = self_attn(x, x, x, attn_mask, key_padding_mask)   FF(x) = linear2(dropout(act(linear1(x))))
//! ```
//!
//! The encoder stacks `num_layers` copies of one layer (deep copies: equal initial values,
//! as PyTorch's `_get_clones`), then an optional final norm. Backward: from the primitives.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::layers::{causal_mask, EncoderLayerConfig, TransformerEncoder, TransformerEncoderLayer};
//! use nn::{Forward, ModuleExt, Tensor};
//! let cfg = EncoderLayerConfig { dim_feedforward: 32, batch_first: true, ..EncoderLayerConfig::new(16, 4) };
//! let enc = TransformerEncoder::new(&TransformerEncoderLayer::new(&cfg)?, 2)?;
//! assert_eq!(enc.named_parameters()[0].0, "layers.0.self_attn.in_proj_weight");
//! let x = Tensor::randn(&[3, 5, 16]);
//! assert_eq!(enc.forward(&x)?.shape(), &[3, 5, 16]);
//! // with masks: (src, mask, src_key_padding_mask), PyTorch's positional arguments
//! let padding = Tensor::zeros_dtype(&[3, 5], nn::DType::Bool);
//! let y = enc.forward(&(x, Some(causal_mask(5)?), Some(padding)))?;
//! assert_eq!(y.shape(), &[3, 5, 16]);
//! # Ok::<(), nn::Error>(())
//! ```
//!
//! Both layers take `x` alone or `(src, mask, src_key_padding_mask)` (each mask an
//! `Option<Tensor>`) through [`Forward`]; see [`MultiheadAttention::attend`] for the
//! masks' meaning.

use super::{AttnMasks, Dropout, LayerNorm, Linear, MultiheadAttention};
use crate::module::{Forward, ModuleExt};
use crate::{Error, Result, Tensor};
use nn_macros::Module;

/// The feed-forward activation of an encoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `max(x, 0)` (PyTorch's default).
    #[default]
    Relu,
    /// Exact GELU.
    Gelu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
        }
    }
}

/// The arguments of PyTorch's `nn.TransformerEncoderLayer`, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderLayerConfig {
    /// Model width E.
    pub d_model: usize,
    /// Number of attention heads (must divide `d_model`).
    pub nhead: usize,
    /// Hidden width of the feed-forward block (2048).
    pub dim_feedforward: usize,
    /// Dropout probability everywhere in the layer (0.1).
    pub dropout: f32,
    /// The feed-forward activation (ReLU).
    pub activation: Activation,
    /// The LayerNorms' eps (1e-5).
    pub layer_norm_eps: f64,
    /// `[B, T, E]` inputs when true (false).
    pub batch_first: bool,
    /// Pre-norm when true, post-norm (the original Transformer) when false (false).
    pub norm_first: bool,
    /// Biases in the linear layers and attention (true).
    pub bias: bool,
}

impl EncoderLayerConfig {
    /// `d_model` and `nhead`, every other argument PyTorch's default.
    pub fn new(d_model: usize, nhead: usize) -> EncoderLayerConfig {
        EncoderLayerConfig {
            d_model,
            nhead,
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Activation::Relu,
            layer_norm_eps: 1e-5,
            batch_first: false,
            norm_first: false,
            bias: true,
        }
    }
}

/// One encoder block: self-attention then a feed-forward network, each with a residual
/// connection and a LayerNorm.
#[derive(Module, Debug, Clone)]
#[module(crate = crate)]
pub struct TransformerEncoderLayer {
    /// The self-attention.
    pub self_attn: MultiheadAttention,
    /// `d_model -> dim_feedforward`.
    pub linear1: Linear,
    /// Dropout inside the feed-forward block.
    pub dropout: Dropout,
    /// `dim_feedforward -> d_model`.
    pub linear2: Linear,
    #[module(skip)]
    norm_first: bool,
    /// The norm around the attention block.
    pub norm1: LayerNorm,
    /// The norm around the feed-forward block.
    pub norm2: LayerNorm,
    /// Dropout on the attention block's output.
    pub dropout1: Dropout,
    /// Dropout on the feed-forward block's output.
    pub dropout2: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl TransformerEncoderLayer {
    /// A layer as PyTorch's constructor builds it from `cfg`.
    pub fn new(cfg: &EncoderLayerConfig) -> Result<TransformerEncoderLayer> {
        let (e, f) = (cfg.d_model, cfg.dim_feedforward);
        let lin = |i, o| {
            if cfg.bias {
                Linear::new(i, o)
            } else {
                Linear::no_bias(i, o)
            }
        };
        let norm = || LayerNorm::with_options(&[e], cfg.layer_norm_eps, true);
        Ok(TransformerEncoderLayer {
            self_attn: MultiheadAttention::with_options(e, cfg.nhead, cfg.dropout, cfg.bias)?
                .batch_first(cfg.batch_first),
            linear1: lin(e, f),
            dropout: Dropout::new(cfg.dropout),
            linear2: lin(f, e),
            norm_first: cfg.norm_first,
            norm1: norm()?,
            norm2: norm()?,
            dropout1: Dropout::new(cfg.dropout),
            dropout2: Dropout::new(cfg.dropout),
            activation: cfg.activation,
        })
    }

    /// Whether the norms come before the blocks (pre-norm).
    pub fn norm_first(&self) -> bool {
        self.norm_first
    }

    /// The layer on `src` with an optional attention mask (`[T, T]` or `[B*H, T, T]`) and
    /// key padding mask (`[B, T]`).
    fn encode(
        &self,
        src: &Tensor,
        src_mask: Option<&Tensor>,
        src_key_padding_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let masks = AttnMasks {
            attn_mask: src_mask,
            key_padding_mask: src_key_padding_mask,
            need_weights: false,
        };
        let sa = |x: &Tensor| -> Result<Tensor> {
            let y = self.self_attn.attend(x, x, x, &masks)?.0;
            self.dropout1.forward(&y)
        };
        let ff = |x: &Tensor| -> Result<Tensor> {
            let h = self.activation.apply(&self.linear1.forward(x)?)?;
            let y = self.linear2.forward(&self.dropout.forward(&h)?)?;
            self.dropout2.forward(&y)
        };
        if self.norm_first {
            let x = src.add(&sa(&self.norm1.forward(src)?)?)?;
            x.add(&ff(&self.norm2.forward(&x)?)?)
        } else {
            let x = self.norm1.forward(&src.add(&sa(src)?)?)?;
            self.norm2.forward(&x.add(&ff(&x)?)?)
        }
    }
}

impl Forward for TransformerEncoderLayer {
    /// The layer without masks.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.encode(x, None, None)
    }
}

impl Forward<(Tensor, Option<Tensor>, Option<Tensor>)> for TransformerEncoderLayer {
    /// The layer on `src` with an optional attention mask (`[T, T]` or `[B*H, T, T]`) and
    /// key padding mask (`[B, T]`): PyTorch's `layer(src, src_mask, src_key_padding_mask)`.
    /// See [`MultiheadAttention::attend`] for the masks' meaning.
    fn forward(
        &self,
        (src, src_mask, src_key_padding_mask): &(Tensor, Option<Tensor>, Option<Tensor>),
    ) -> Result<Tensor> {
        self.encode(src, src_mask.as_ref(), src_key_padding_mask.as_ref())
    }
}

/// A stack of encoder layers (PyTorch's `nn.TransformerEncoder`).
#[derive(Module, Debug, Clone)]
#[module(crate = crate)]
pub struct TransformerEncoder {
    /// The layers, named `layers.0`, `layers.1`, ...
    pub layers: Vec<TransformerEncoderLayer>,
    /// An optional final norm.
    pub norm: Option<LayerNorm>,
}

impl TransformerEncoder {
    /// `num_layers` independent copies of `layer` (equal initial values), no final norm.
    pub fn new(layer: &TransformerEncoderLayer, num_layers: usize) -> Result<TransformerEncoder> {
        if num_layers == 0 {
            return Err(Error::invalid_config(
                "TransformerEncoder",
                "num_layers",
                0,
                "must be at least 1",
            ));
        }
        Ok(TransformerEncoder {
            layers: (0..num_layers).map(|_| layer.deep_copy()).collect(),
            norm: None,
        })
    }

    /// With a final norm after the last layer.
    pub fn with_norm(mut self, norm: LayerNorm) -> TransformerEncoder {
        self.norm = Some(norm);
        self
    }

    /// Every layer in turn with the same masks, then the final norm.
    fn encode(
        &self,
        src: &Tensor,
        mask: Option<&Tensor>,
        src_key_padding_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut x = src.clone();
        for l in &self.layers {
            x = l.encode(&x, mask, src_key_padding_mask)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

impl Forward for TransformerEncoder {
    /// The stack without masks.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.encode(x, None, None)
    }
}

impl Forward<(Tensor, Option<Tensor>, Option<Tensor>)> for TransformerEncoder {
    /// Every layer in turn with the same optional attention mask and key padding mask,
    /// then the final norm: PyTorch's `encoder(src, mask, src_key_padding_mask)` (see
    /// the layer's form for the shapes).
    fn forward(
        &self,
        (src, mask, src_key_padding_mask): &(Tensor, Option<Tensor>, Option<Tensor>),
    ) -> Result<Tensor> {
        self.encode(src, mask.as_ref(), src_key_padding_mask.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::causal_mask;
    use crate::layers::grad_check::check_param_grads;

    #[test]
    fn both_norm_placements_have_finite_difference_gradients() -> Result<()> {
        for norm_first in [false, true] {
            let cfg = EncoderLayerConfig {
                dim_feedforward: 6,
                dropout: 0.0,
                batch_first: true,
                norm_first,
                activation: Activation::Gelu,
                ..EncoderLayerConfig::new(4, 2)
            };
            let layer = TransformerEncoderLayer::new(&cfg)?;
            let x = Tensor::randn(&[2, 3, 4]);
            let mask = causal_mask(3)?;
            let masked = |x: &Tensor| layer.forward(&(x.clone(), Some(mask.clone()), None));
            check_param_grads(&layer, 6, || masked(&x))?;
            crate::ops::testing::check_grad(&[&[2, 3, 4]], |xs| masked(&xs[0]))?;
        }
        Ok(())
    }

    #[test]
    fn names_follow_pytorch() -> Result<()> {
        let cfg = EncoderLayerConfig::new(8, 2);
        let enc = TransformerEncoder::new(&TransformerEncoderLayer::new(&cfg)?, 2)?;
        let names: Vec<String> = enc.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 24);
        assert_eq!(names[0], "layers.0.self_attn.in_proj_weight");
        assert_eq!(names[4], "layers.0.linear1.weight");
        assert_eq!(names[23], "layers.1.norm2.bias");
        assert!(TransformerEncoder::new(&TransformerEncoderLayer::new(&cfg)?, 0).is_err());
        Ok(())
    }
}
