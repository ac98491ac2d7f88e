//! The backend seam: what a device must implement for nn-core to run on it.
//!
//! Storage is always contiguous and row-major; shapes travel with each call. nn-core
//! implements this trait for the CPU ([`crate::cpu`]); the `nn-cuda` crate implements it
//! for CUDA devices without nn-core naming any CUDA type. Backward passes are written with
//! [`crate::Tensor`] ops, so a backend only implements forward primitives, plus the
//! in-place updates optimizers run where a parameter lives.
//!
//! Host data crosses the seam as [`HostData`]; no code outside a backend names its
//! storage type. Every method validates its shapes, axes and lengths and returns `Err`
//! on a mismatch, never panics.

use crate::{DType, HostData, Result};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

mod optim_step;
mod spec;

pub use optim_step::{AdamStep, OptimStep, SgdStep};
pub use spec::{
    AttentionSpec, BatchNormGrads, BatchNormOperands, BatchNormSpec, Conv2dGrads, Conv2dSpec,
    Im2ColSpec, LayerNormGrads, MatmulSpec,
};

/// Elementwise unary primitives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `e^x`
    Exp,
    /// natural log
    Log,
    /// `|x|`
    Abs,
    /// square root
    Sqrt,
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// hyperbolic tangent
    Tanh,
    /// `sign(x)` in {-1, 0, 1}
    Sign,
    /// 1 where `x > 0`, else 0 (ReLU's derivative)
    Step,
    /// `x^e` for a scalar exponent
    Powf(f32),
    /// `x * mul + add`
    Affine {
        /// Multiplier.
        mul: f32,
        /// Offset added after the multiplication.
        add: f32,
    },
    /// the error function `erf(x) = 2/sqrt(pi) int_0^x e^(-t^2) dt` (exact GELU)
    Erf,
}

/// Elementwise binary primitives (with NumPy broadcasting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// elementwise maximum
    Maximum,
    /// elementwise minimum
    Minimum,
    /// `a == b` as an i64 mask
    Eq,
    /// `a != b` as an i64 mask
    Ne,
    /// `a < b` as an i64 mask
    Lt,
    /// `a <= b` as an i64 mask
    Le,
    /// `a > b` as an i64 mask
    Gt,
    /// `a >= b` as an i64 mask
    Ge,
}

impl BinaryOp {
    /// Whether the op returns an i64 0/1 mask.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

/// Reductions over a set of axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// sum
    Sum,
    /// maximum
    Max,
    /// minimum
    Min,
    /// index of the maximum (i64), one axis only
    ArgMax,
}

/// Storage of one tensor on one device: contiguous, row-major, one dtype.
pub trait BackendStorage: Send + Sync + fmt::Debug + Any {
    /// The device holding this storage.
    fn device(&self) -> crate::Device;
    /// Element type.
    fn dtype(&self) -> DType;
    /// Number of elements.
    fn len(&self) -> usize;
    /// Whether it holds no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies the data to host memory.
    fn to_host(&self) -> Result<HostData>;
    /// The data itself when this storage lives in host memory (no copy); `None` on
    /// devices with memory of their own.
    fn as_host(&self) -> Option<&HostData> {
        None
    }
    /// Like [`BackendStorage::as_host`], mutable (in-place loading of files).
    fn as_host_mut(&mut self) -> Option<&mut HostData> {
        None
    }
    /// The elements' little-endian bytes when this storage can lend them without a copy
    /// (host memory on a little-endian host, a file mapping), for writers; `None`
    /// otherwise (the caller copies through [`BackendStorage::to_host`]).
    fn as_le_bytes(&self) -> Option<&[u8]> {
        None
    }
    /// `self` as `Any`, for a backend to downcast its own operands.
    fn as_any(&self) -> &dyn Any;
    /// `self` as mutable `Any`, for a backend to downcast its own in-place operands.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// A copy of the data on the same device (for copy-on-write). The default narrows
    /// the whole storage, which every backend implements as a copy.
    fn deep_copy(&self) -> Result<Storage> {
        let n = self.len();
        self.narrow(&[n], 0, 0, n)
    }

    /// Overwrites `src.len()` elements starting at `offset` with `src` (same dtype), in
    /// place.
    fn write_at(&mut self, offset: usize, src: &HostData) -> Result<()>;
    /// One fused SGD update of this f32 parameter in place, from `grad` and the optional
    /// momentum buffer `buf` (updated in place), all of the same length and on this
    /// device: one pass over the data. `Ok(false)` when this backend has no fused
    /// update (the default): the optimizer then runs the same rule with tensor ops.
    fn sgd_step(
        &mut self,
        grad: &dyn BackendStorage,
        buf: Option<&mut dyn BackendStorage>,
        step: &SgdStep,
    ) -> Result<bool> {
        let _ = (grad, buf, step);
        Ok(false)
    }
    /// One fused Adam update of this f32 parameter in place, with the moment estimates
    /// `m` and `v` updated in place, all of the same length and on this device: one pass
    /// over the data. `Ok(false)` when this backend has no fused update (the default).
    fn adam_step(
        &mut self,
        grad: &dyn BackendStorage,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        step: &AdamStep,
    ) -> Result<bool> {
        let _ = (grad, m, v, step);
        Ok(false)
    }
    /// One fused update of this f32 parameter in place by one of the rules of
    /// [`OptimStep`], its state buffers (same length, this device) updated in place.
    /// `Ok(false)` when this backend has no fused update for it (the default): the
    /// optimizer then runs the same rule with tensor ops.
    fn optim_step(
        &mut self,
        grad: &dyn BackendStorage,
        state: &mut [&mut dyn BackendStorage],
        step: &OptimStep,
    ) -> Result<bool> {
        let _ = (grad, state, step);
        Ok(false)
    }

    /// Elementwise unary op (f32).
    fn unary(&self, op: UnaryOp) -> Result<Storage>;
    /// Elementwise binary op with broadcasting of `lhs_shape` and `rhs_shape` to `out_shape`.
    fn binary(
        &self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs: &dyn BackendStorage,
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage>;
    /// Elementwise comparison (`op.is_comparison()`) with NumPy broadcasting, as a mask:
    /// `Bool` on a backend that stores bools (the CPU), else the i64 0/1 mask of
    /// [`BackendStorage::binary`] (the default), which every mask consumer accepts too.
    fn compare(
        &self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs: &dyn BackendStorage,
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        self.binary(op, lhs_shape, rhs, rhs_shape, out_shape)
    }
    /// `cond != 0 ? a : b`, all broadcast to `out_shape`; `self` (the condition) is an
    /// i64 mask, or a `Bool` / `U8` one on backends that store those.
    #[allow(clippy::too_many_arguments)]
    fn where_cond(
        &self,
        cond_shape: &[usize],
        a: &dyn BackendStorage,
        a_shape: &[usize],
        b: &dyn BackendStorage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage>;
    /// Batched matrix product.
    fn matmul(&self, rhs: &dyn BackendStorage, spec: &MatmulSpec) -> Result<Storage>;
    /// `self @ op(rhs) + bias` for a single (`batch == 1`) product, `bias` of length `n`
    /// added to every row: a fully connected layer's forward in one pass. The default runs
    /// [`BackendStorage::matmul`] then a broadcast add; backends override it to fuse.
    fn matmul_bias(
        &self,
        rhs: &dyn BackendStorage,
        spec: &MatmulSpec,
        bias: &dyn BackendStorage,
    ) -> Result<Storage> {
        let y = self.matmul(rhs, spec)?;
        let out = [spec.batch * spec.m, spec.n];
        y.binary(BinaryOp::Add, &out, bias, &[spec.n], &out)
    }
    /// Batch norm's eval-mode normalization in one pass: for `self` (f32) viewed as
    /// `[outer, c, inner]` (`shape`) and per-channel `[c]` vectors, `y = (x - mean[ch]) *
    /// scale[ch] + shift[ch]` (no shift when `None`), then `+ residual` (same shape as
    /// `self`) and `max(y, 0)` when `relu`, each step rounded as its own op would round
    /// it. The default runs those ops one by one (what nn-cuda uses); backends override it
    /// to fuse.
    fn channel_affine(
        &self,
        shape: [usize; 3],
        mean: &dyn BackendStorage,
        scale: &dyn BackendStorage,
        shift: Option<&dyn BackendStorage>,
        residual: Option<&dyn BackendStorage>,
        relu: bool,
    ) -> Result<Storage> {
        let [outer, c, inner] = shape;
        let (full, ch) = ([outer, c, inner], [1, c, 1]);
        let mut y = self.binary(BinaryOp::Sub, &full, mean, &ch, &full)?;
        y = y.binary(BinaryOp::Mul, &full, scale, &ch, &full)?;
        if let Some(b) = shift {
            y = y.binary(BinaryOp::Add, &full, b, &ch, &full)?;
        }
        if let Some(r) = residual {
            y = y.binary(BinaryOp::Add, &full, r, &full, &full)?;
        }
        if relu {
            y = y.unary(UnaryOp::Relu)?;
        }
        Ok(y)
    }
    /// ReLU's backward: `grad` where `self > 0`, else 0 (same length, f32). The default
    /// runs a step then a product; backends override it to do one pass.
    fn relu_backward(&self, grad: &dyn BackendStorage) -> Result<Storage> {
        let shape = [self.len()];
        let mask = self.unary(UnaryOp::Step)?;
        grad.binary(BinaryOp::Mul, &shape, mask.as_ref(), &shape, &shape)
    }
    /// ReLU's backward read from its output `self` (`rows x cols`), fused with the
    /// column sums of the result (the bias gradient of a linear layer before the ReLU):
    /// `(g * (self > 0), sum over rows of it)`.
    fn relu_backward_colsum(
        &self,
        grad: &dyn BackendStorage,
        rows: usize,
        cols: usize,
    ) -> Result<(Storage, Storage)> {
        let gm = self.relu_backward(grad)?;
        let sums = gm.reduce(ReduceOp::Sum, &[rows, cols], &[0])?;
        Ok((gm, sums))
    }
    /// Mean softmax cross-entropy of `self` as `[rows, classes]` f32 logits against the
    /// i64 class of each row in `targets` (the caller checked the classes are in range):
    /// the loss (one element) and the softmax probabilities (`[rows, classes]`, for the
    /// backward). `None` when the backend has no fused form (the caller then composes
    /// it from primitives).
    fn cross_entropy(
        &self,
        _targets: &dyn BackendStorage,
        _rows: usize,
        _classes: usize,
    ) -> Result<Option<(Storage, Storage)>> {
        Ok(None)
    }
    /// The gradient of [`BackendStorage::cross_entropy`] from its probabilities `self`:
    /// `grad * (probs - onehot(targets)) / rows`, `grad` holding one element; `None`
    /// without a fused form.
    fn cross_entropy_backward(
        &self,
        _targets: &dyn BackendStorage,
        _grad: &dyn BackendStorage,
        _rows: usize,
        _classes: usize,
    ) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// Softmax of each `cols`-long row of `self` (`[rows, cols]` f32), in one pass per
    /// row. `None` when the backend has no fused form (the caller then composes it from
    /// max, sub, exp, sum and div).
    fn softmax_last(&self, _rows: usize, _cols: usize) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// The input gradient of [`BackendStorage::softmax_last`] from its output `self` and
    /// the output gradient `grad`: `y * (grad - sum_row(grad * y))`; `None` without a
    /// fused form.
    fn softmax_last_backward(
        &self,
        _grad: &dyn BackendStorage,
        _rows: usize,
        _cols: usize,
    ) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// Layer normalization of each `cols`-long row of `self` (`[rows, cols]` f32):
    /// `(x - mean) * rstd * weight + bias`, `rstd = 1 / sqrt(var + eps)` (biased
    /// variance), `weight` and `bias` `[cols]` when given. Returns the output and the
    /// statistics `[rows, 2]` (mean, rstd) its backward reads; `None` when the backend has
    /// no fused form (the caller then composes it from primitives).
    fn layer_norm(
        &self,
        _weight: Option<&dyn BackendStorage>,
        _bias: Option<&dyn BackendStorage>,
        _rows: usize,
        _cols: usize,
        _eps: f32,
    ) -> Result<Option<(Storage, Storage)>> {
        Ok(None)
    }
    /// The gradients of [`BackendStorage::layer_norm`] from its input `self`, the output
    /// gradient `grad` and the saved `stats`: the input's, and the weight's and bias's
    /// (column sums over the rows) when `weight` is given / `with_bias`; `None` without
    /// a fused form.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(
        &self,
        _grad: &dyn BackendStorage,
        _stats: &dyn BackendStorage,
        _weight: Option<&dyn BackendStorage>,
        _with_bias: bool,
        _rows: usize,
        _cols: usize,
    ) -> Result<Option<LayerNormGrads>> {
        Ok(None)
    }
    /// Batch normalization of `self` (f32, `spec.shape` `[outer, c, inner]`) as one op:
    /// per channel the batch's `mean` and biased `var` (or the running ones of
    /// `operands.running` when `!spec.batch_stats`), `invstd = (var + eps)^-0.5`, then
    /// `y = relu?((x - mean) * (invstd * weight) + bias + residual)`. Returns `y` and the
    /// statistics `[3, c]` (rows mean, invstd, var) that the backward reads and the
    /// running-statistics update uses; `None` when the backend has no fused form (the
    /// caller then composes it from primitives; the default, what nn-cuda uses).
    fn batch_norm(
        &self,
        _spec: &BatchNormSpec,
        _operands: &BatchNormOperands<'_>,
    ) -> Result<Option<(Storage, Storage)>> {
        Ok(None)
    }
    /// The gradients of [`BackendStorage::batch_norm`] from its input `self`, the output
    /// gradient `grad`, its output `output` (the ReLU's mask `output > 0` when
    /// `spec.relu`), the saved `stats` and the `weight`: with `g' = grad * mask`,
    /// `xhat = (x - mean) invstd`, per channel `dweight = sum g' xhat`, `dbias = sum g'`,
    /// `dresidual = g'`, and `dx = weight invstd (g' - dbias / m - xhat dweight / m)`
    /// (`weight invstd g'` with running statistics), each computed when `needs` (dx,
    /// dweight, dbias, dresidual) asks for it; `None` without a fused form.
    fn batch_norm_backward(
        &self,
        _grad: &dyn BackendStorage,
        _output: &dyn BackendStorage,
        _stats: &dyn BackendStorage,
        _weight: Option<&dyn BackendStorage>,
        _spec: &BatchNormSpec,
        _needs: [bool; 4],
    ) -> Result<Option<BatchNormGrads>> {
        Ok(None)
    }
    /// Attention without gradients, `softmax(q k^T * scale + mask) v` per problem with
    /// query `self`, computed tile by tile with a running (online) softmax so the
    /// `[l, s]` weights of a problem are never stored whole; a row with every key masked
    /// gives 0 (PyTorch's `scaled_dot_product_attention`). `mask` holds the additive
    /// `[l, s]` matrices `spec.mask_batch` indexes. `None` when the backend has no fused
    /// form (the caller then composes it from primitives).
    fn attention(
        &self,
        _key: &dyn BackendStorage,
        _value: &dyn BackendStorage,
        _mask: Option<&dyn BackendStorage>,
        _spec: &AttentionSpec,
    ) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// Attention with gradients to come (the training forward), query `self`: per
    /// problem the weights `P = softmax(q k^T * scale + mask)` (0 for a row with every
    /// key masked), stored whole, and the output `(P * drop) v`, `drop` the dropout's
    /// `[batch, l, s]` mask-and-scale when given. Returns the output and `P`
    /// `[batch, l, s]`, which [`BackendStorage::attention_backward`] reads; `None` when
    /// the backend has no fused form (the caller composes it from primitives).
    fn attention_train(
        &self,
        _key: &dyn BackendStorage,
        _value: &dyn BackendStorage,
        _mask: Option<&dyn BackendStorage>,
        _drop: Option<&dyn BackendStorage>,
        _spec: &AttentionSpec,
    ) -> Result<Option<(Storage, Storage)>> {
        Ok(None)
    }
    /// The gradients of [`BackendStorage::attention_train`] from its operands (query
    /// `self`), the saved weights `probs`, the dropout mask `drop` and the output
    /// gradient `grad` (in the layout of `spec`): the query's, key's and value's, or the
    /// packed projection's alone with [`AttentionSpec::packed_heads`]. `None` without a
    /// fused form.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        _key: &dyn BackendStorage,
        _value: &dyn BackendStorage,
        _probs: &dyn BackendStorage,
        _drop: Option<&dyn BackendStorage>,
        _grad: &dyn BackendStorage,
        _spec: &AttentionSpec,
    ) -> Result<Option<Vec<Storage>>> {
        Ok(None)
    }
    /// Reduction over `axes` (sorted, unique); the result has the kept-dim shape.
    fn reduce(&self, op: ReduceOp, shape: &[usize], axes: &[usize]) -> Result<Storage>;
    /// Copy with permuted dims.
    fn permute(&self, shape: &[usize], perm: &[usize]) -> Result<Storage>;
    /// Copy of `len` entries starting at `start` along `axis`.
    fn narrow(&self, shape: &[usize], axis: usize, start: usize, len: usize) -> Result<Storage>;
    /// Concatenation along `axis` of `self` followed by `others`.
    fn cat(
        &self,
        shape: &[usize],
        others: &[(&dyn BackendStorage, &[usize])],
        axis: usize,
    ) -> Result<Storage>;
    /// Rows of `axis` picked by the i64 `indices`.
    fn index_select(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
    ) -> Result<Storage>;
    /// Zeros of `out_shape` with `self` (shaped like `index_select`'s output) added at
    /// `indices` along `axis`: the adjoint of `index_select`.
    fn index_add(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
        out_shape: &[usize],
    ) -> Result<Storage>;
    /// Conversion to another dtype.
    fn cast(&self, dtype: DType) -> Result<Storage>;
    /// The columns of the f32 image `self` (`spec.image_len()` elements) under `spec`
    /// (`spec.cols_len()` elements, laid out as `spec.batch_inner` says). The default
    /// gathers one sample's indices from every sample with
    /// [`BackendStorage::index_select`] (the padding value appended to each), then
    /// permutes the batch inside; backends override it with a direct copy.
    fn im2col(&self, spec: &Im2ColSpec) -> Result<Storage> {
        let (n, dev) = (spec.batch, self.device());
        let (one, per, taps, l) = spec.one_sample();
        let pad = dev.upload(HostData::F32(vec![spec.pad_value; n]))?;
        let src = self.cat(&[n, per], &[(pad.as_ref(), &[n, 1])], 1)?;
        let idx = dev.upload(HostData::I64(one.indices()))?;
        let cols = src.index_select(&[n, per + 1], 1, idx.as_ref())?;
        if spec.batch_inner {
            cols.permute(&[n, taps, l], &[1, 0, 2])
        } else {
            Ok(cols)
        }
    }
    /// The adjoint of [`BackendStorage::im2col`]: the image (`spec.image_len()`
    /// elements) with every column element of `self` added at the position it was read
    /// from (padding reads are dropped). The default scatters with
    /// [`BackendStorage::index_add`].
    fn col2im(&self, spec: &Im2ColSpec) -> Result<Storage> {
        let (n, dev) = (spec.batch, self.device());
        let (one, per, taps, l) = spec.one_sample();
        let idx = dev.upload(HostData::I64(one.indices()))?;
        let (shape, out) = ([n, taps * l], [n, per + 1]);
        let img = if spec.batch_inner {
            let cols = self.permute(&[taps, n, l], &[1, 0, 2])?;
            cols.index_add(&shape, 1, idx.as_ref(), &out)?
        } else {
            self.index_add(&shape, 1, idx.as_ref(), &out)?
        };
        img.narrow(&[n, per + 1], 1, 0, per)
    }
    /// 2-d convolution of the f32 image `self` with `weight` and the optional `bias`
    /// `[o]` under `spec` (PyTorch's `F.conv2d`), the output `[n, o, oh, ow]` written
    /// directly. `None` when the backend has no fused form (the default: the caller then
    /// composes it from im2col and a matrix product). A backend that implements it
    /// implements [`BackendStorage::conv2d_backward`] too.
    fn conv2d(
        &self,
        _weight: &dyn BackendStorage,
        _bias: Option<&dyn BackendStorage>,
        _spec: &Conv2dSpec,
    ) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// The gradients of [`BackendStorage::conv2d`] from its input `self`, `weight` and the
    /// output gradient `grad`: the input's, the weight's and the bias's, each computed
    /// only when `needs` (in that order) asks for it. `None` without a fused form.
    fn conv2d_backward(
        &self,
        _weight: &dyn BackendStorage,
        _grad: &dyn BackendStorage,
        _spec: &Conv2dSpec,
        _needs: [bool; 3],
    ) -> Result<Option<Conv2dGrads>> {
        Ok(None)
    }
}

/// A shared handle on backend storage.
pub type Storage = Arc<dyn BackendStorage>;

/// A non-CPU device implementation (a CUDA GPU ...), registered by a backend crate and
/// wrapped as [`crate::Device::Backend`]: nn-core knows no backend by name.
pub trait DeviceBackend: Send + Sync + fmt::Debug {
    /// The kind of device, e.g. `cuda` (what [`crate::Device::kind`] reports).
    fn kind(&self) -> &'static str;
    /// Device ordinal among devices of its kind.
    fn ordinal(&self) -> usize;
    /// Human-readable name, `kind:ordinal` (e.g. `cuda:0`).
    fn name(&self) -> String {
        format!("{}:{}", self.kind(), self.ordinal())
    }
    /// Whether two handles denote the same device.
    fn same(&self, other: &dyn DeviceBackend) -> bool {
        self.kind() == other.kind() && self.ordinal() == other.ordinal()
    }
    /// Copies host data to the device.
    fn upload(&self, data: &HostData) -> Result<Storage>;
    /// Zero-filled storage.
    fn zeros(&self, len: usize, dtype: DType) -> Result<Storage>;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<()>;
}
