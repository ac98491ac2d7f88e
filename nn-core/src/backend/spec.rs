//! The geometry of the backend calls that take more than a shape: matrix products,
//! im2col windows, fused convolutions, fused attention, and what layer norm's backward returns.

use super::{BackendStorage, Storage};

/// A (batched) matrix product `out[b] = op(lhs[b]) @ op(rhs[b])` on contiguous operands,
/// `op` being an optional transpose of the last two dims.
#[derive(Debug, Clone, PartialEq)]
pub struct MatmulSpec {
    /// Number of output matrices.
    pub batch: usize,
    /// Rows of the output.
    pub m: usize,
    /// Columns of the output.
    pub n: usize,
    /// Contracted size.
    pub k: usize,
    /// For each output batch, the index of the lhs matrix (broadcast batch dims).
    pub lhs_batch: Vec<usize>,
    /// For each output batch, the index of the rhs matrix.
    pub rhs_batch: Vec<usize>,
    /// lhs is stored as `[k, m]` (transposed).
    pub lhs_t: bool,
    /// rhs is stored as `[n, k]` (transposed).
    pub rhs_t: bool,
}

impl MatmulSpec {
    /// One product `[m, k] @ [k, n]`, either side stored transposed (`lhs_t`: `[k, m]`,
    /// `rhs_t`: `[n, k]`).
    pub fn single(m: usize, n: usize, k: usize, lhs_t: bool, rhs_t: bool) -> MatmulSpec {
        MatmulSpec {
            batch: 1,
            m,
            n,
            k,
            lhs_batch: vec![0],
            rhs_batch: vec![0],
            lhs_t,
            rhs_t,
        }
    }
}

/// The window geometry of an im2col ([`BackendStorage::im2col`](super::BackendStorage::im2col)) and of its adjoint
/// col2im: an image `[batch, channels, h, w]` (contiguous f32) and the columns holding,
/// for every channel `c`, tap `(p, q)` and output position `(i, j)`, the padded input at
/// row `i*sh + p*dh - pad_top`, column `j*sw + q*dw - pad_left` (`pad_value` outside the
/// image). The caller computed `output` from the rest and checked every size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Im2ColSpec {
    /// Samples `n`.
    pub batch: usize,
    /// Channels `c`.
    pub channels: usize,
    /// Image size `[h, w]`.
    pub input: [usize; 2],
    /// Window size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Window step `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding `[[top, bottom], [left, right]]`.
    pub padding: [[usize; 2]; 2],
    /// Tap spacing `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Output positions `[oh, ow]`.
    pub output: [usize; 2],
    /// Columns laid out `[c, kh, kw, n, oh, ow]` (a convolution's product operand, one
    /// matrix for the whole batch) when true, `[n, c, kh, kw, oh, ow]` (pools) when false.
    pub batch_inner: bool,
    /// What the padding reads (0 for convolutions, -inf for max pooling).
    pub pad_value: f32,
}

impl Im2ColSpec {
    /// The spec of one sample laid out per sample, with the sample's image length,
    /// its taps `c * kh * kw` and its window positions `h_out * w_out` (the default
    /// implementations gather one sample's indices from every sample).
    pub(super) fn one_sample(&self) -> (Im2ColSpec, usize, usize, usize) {
        let one = Im2ColSpec {
            batch: 1,
            batch_inner: false,
            ..*self
        };
        (
            one,
            self.image_len() / self.batch.max(1),
            self.channels * self.kernel[0] * self.kernel[1],
            self.output[0] * self.output[1],
        )
    }
    /// Elements of the image, `n * c * h * w`.
    pub fn image_len(&self) -> usize {
        self.batch * self.channels * self.input[0] * self.input[1]
    }
    /// Elements of the columns, `n * c * kh * kw * oh * ow`.
    pub fn cols_len(&self) -> usize {
        self.batch
            * self.channels
            * self.kernel[0]
            * self.kernel[1]
            * self.output[0]
            * self.output[1]
    }
    /// Image row (`d = 0`) or column (`d = 1`) read at output position `o`, tap `k`;
    /// `None` in the padding.
    pub fn source(&self, d: usize, o: usize, k: usize) -> Option<usize> {
        let p = (o * self.stride[d] + k * self.dilation[d]).checked_sub(self.padding[d][0])?;
        (p < self.input[d]).then_some(p)
    }
    /// For each column element, its index into the flattened image, `image_len()` (one
    /// past the end) for the padding: the gather the default implementations run.
    pub fn indices(&self) -> Vec<i64> {
        let [h, w] = self.input;
        let [kh, kw] = self.kernel;
        let [oh, ow] = self.output;
        let (n, c) = (self.batch, self.channels);
        let pad = self.image_len() as i64;
        let mut idx = Vec::with_capacity(self.cols_len());
        let row = |b: usize, ch: usize, p: usize, q: usize, idx: &mut Vec<i64>| {
            let base = (b * c + ch) * h * w;
            for i in 0..oh {
                let r = self.source(0, i, p);
                for j in 0..ow {
                    idx.push(match (r, self.source(1, j, q)) {
                        (Some(r), Some(s)) => (base + r * w + s) as i64,
                        _ => pad,
                    });
                }
            }
        };
        if self.batch_inner {
            for ch in 0..c {
                for p in 0..kh {
                    for q in 0..kw {
                        for b in 0..n {
                            row(b, ch, p, q, &mut idx);
                        }
                    }
                }
            }
        } else {
            for b in 0..n {
                for ch in 0..c {
                    for p in 0..kh {
                        for q in 0..kw {
                            row(b, ch, p, q, &mut idx);
                        }
                    }
                }
            }
        }
        idx
    }
}

/// The geometry of a fused 2-d convolution ([`BackendStorage::conv2d`](super::BackendStorage::conv2d)):
/// the image `[batch, channels, h, w]` and its windows as `window` gives them
/// (`batch_inner` and `pad_value` unused: the padding reads 0), the weight
/// `[out_channels, channels / groups, kh, kw]`, the output `[batch, out_channels, oh,
/// ow]`. The caller checked every size and that `groups` divides both channel counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conv2dSpec {
    /// The image and window geometry.
    pub window: Im2ColSpec,
    /// Output channels `o`.
    pub out_channels: usize,
    /// Channel groups `g`.
    pub groups: usize,
}

impl Conv2dSpec {
    /// Elements of the weight, `o * (c / g) * kh * kw`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.taps()
    }
    /// Taps of one output channel, `(c / g) * kh * kw`.
    pub fn taps(&self) -> usize {
        let w = &self.window;
        (w.channels / self.groups.max(1)) * w.kernel[0] * w.kernel[1]
    }
    /// Elements of the output, `n * o * oh * ow`.
    pub fn output_len(&self) -> usize {
        let w = &self.window;
        w.batch * self.out_channels * w.output[0] * w.output[1]
    }
}

/// The gradients [`BackendStorage::conv2d_backward`](super::BackendStorage::conv2d_backward)
/// returns: the input's, the weight's and the bias's, each when asked for.
pub type Conv2dGrads = (Option<Storage>, Option<Storage>, Option<Storage>);

/// The gradients [`BackendStorage::layer_norm_backward`](super::BackendStorage::layer_norm_backward) returns: the input's, the
/// weight's (when given) and the bias's (when asked for).
pub type LayerNormGrads = (Storage, Option<Storage>, Option<Storage>);

/// The geometry of a fused attention forward ([`BackendStorage::attention`](super::BackendStorage::attention)): `batch`
/// independent problems, query `[l, d]`, key `[s, d]`, value `[s, dv]`, output `[l, dv]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    /// Number of (batch, head) problems.
    pub batch: usize,
    /// Query length L.
    pub l: usize,
    /// Key and value length S.
    pub s: usize,
    /// Query and key width.
    pub d: usize,
    /// Value width.
    pub dv: usize,
    /// The factor on `q k^T`.
    pub scale: f32,
    /// Query `i` attends keys `j <= i` only.
    pub causal: bool,
    /// With an additive f32 mask: for each problem, the index of its `[l, s]` mask matrix.
    pub mask_batch: Option<Vec<usize>>,
    /// `Some(h)`: self-attention on one packed projection, no head split or merge
    /// copies. The query storage is `[batch / h, l, 3 h d]` (per row the q, k and v
    /// column blocks, each `[h, d]`); key and value are that same storage, `s == l`,
    /// `dv == d`; problem `b h + j` is head `j` of sample `b`; the output is
    /// `[batch / h, l, h dv]` (heads merged). `None`: separate `[batch, l, d]`,
    /// `[batch, s, d]` and `[batch, s, dv]` operands, `[batch, l, dv]` out.
    pub packed_heads: Option<usize>,
}

/// The geometry and options of a fused batch normalization
/// ([`BackendStorage::batch_norm`](super::BackendStorage::batch_norm) and its backward):
/// the input viewed as `[outer, c, inner]` (`shape`: samples, channels, the product of
/// the spatial dims), normalized per channel over its `outer * inner` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormSpec {
    /// `[outer, c, inner]`.
    pub shape: [usize; 3],
    /// Added to the variance under the square root.
    pub eps: f32,
    /// `max(y, 0)` after the affine map and the residual.
    pub relu: bool,
    /// Normalize by the batch's statistics (training, or no running statistics): the
    /// backward then differentiates through them. False: by given (running) statistics,
    /// constants to the backward.
    pub batch_stats: bool,
}

/// The optional operands of [`BackendStorage::batch_norm`](super::BackendStorage::batch_norm):
/// per-channel `weight` and `bias` `[c]`, a `residual` of the input's length added before
/// the ReLU, and the running `(mean, var)` `[c]` that normalize when the spec's
/// `batch_stats` is false.
#[derive(Clone, Copy, Default)]
pub struct BatchNormOperands<'a> {
    /// Scale `[c]` (1 when absent).
    pub weight: Option<&'a dyn BackendStorage>,
    /// Shift `[c]` (0 when absent).
    pub bias: Option<&'a dyn BackendStorage>,
    /// Added to the normalized output before the ReLU.
    pub residual: Option<&'a dyn BackendStorage>,
    /// The running mean and (unbiased) variance, used instead of the batch's.
    pub running: Option<(&'a dyn BackendStorage, &'a dyn BackendStorage)>,
}

/// The gradients [`BackendStorage::batch_norm_backward`](super::BackendStorage::batch_norm_backward)
/// returns, each when asked for: the input's, the weight's, the bias's and the residual's.
pub type BatchNormGrads = (
    Option<Storage>,
    Option<Storage>,
    Option<Storage>,
    Option<Storage>,
);
