//! `BatchNorm1d`, `BatchNorm2d`: batch normalization with running statistics (PyTorch's).
//!
//! Shapes: `BatchNorm1d` x `[n, c]` or `[n, c, l]`, `BatchNorm2d` x `[n, c, h, w]`; y like
//! x. Per channel, over the m = n * (spatial size) values of the batch:
//!
//! ```text
//! mean = sum(x) / m,   var = sum((x - mean)^2) / m          (biased: used to normalize)
//! y = (x - mean) / sqrt(var + eps) * weight + bias
//! running_mean = (1 - f) running_mean + f mean
//! running_var  = (1 - f) running_var  + f var * m / (m - 1) (unbiased, as PyTorch)
//! num_batches_tracked += 1,   f = momentum, or 1 / num_batches_tracked when momentum
//! is None (a cumulative average)
//! ```
//!
//! In training mode (modules start in it) the batch statistics normalize and the running
//! ones are updated; in evaluation mode the running statistics normalize. Without
//! `track_running_stats` there are no buffers and batch statistics are always used.
//! Where the backend has a fused batch norm (the CPU), the forward, with the residual
//! add and ReLU of [`BatchNorm::forward_add_relu`] / [`BatchNorm::forward_relu`], is
//! one autograd node (`Tensor::batch_norm_fused` in `ops`): one statistics pass per channel
//! and one output pass, and a backward of the same shape (its gradient includes the
//! paths through mean and var). Elsewhere it is composed of primitives, which autograd
//! differentiates op by op; both give the same numbers within rounding.
//! `BatchNorm2d::lazy()` learns `c` at the first forward (PyTorch's `LazyBatchNorm2d`).
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::BatchNorm2d, Forward, ModuleExt, Tensor};
//! let mut bn = BatchNorm2d::new(3);
//! let y = bn.forward(&Tensor::randn(&[4, 3, 5, 5]))?;
//! assert!(y.mean()?.item()?.abs() < 1e-5);
//! let keys: Vec<String> = bn.state_dict()?.keys().map(|k| k.to_string()).collect();
//! assert_eq!(keys, ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
//! bn.eval();
//! # Ok::<(), nn::Error>(())
//! ```

use crate::init::Init;
use crate::module::{
    python_bool, python_float, Buffer, Forward, Module, Param, Visitor, VisitorMut,
};
use crate::ops::BatchNormArgs;
use crate::{DType, Error, Result, Tensor};

/// Batch normalization over `D` spatial dims' worth of input; use [`BatchNorm1d`] and
/// [`BatchNorm2d`].
#[derive(Debug, Clone)]
pub struct BatchNorm<const D: usize> {
    /// Scale `[c]` (absent without `affine`).
    pub weight: Option<Param>,
    /// Shift `[c]` (absent without `affine` or with `bias(false)`).
    pub bias: Option<Param>,
    /// Running mean `[c]` (absent without `track_running_stats`).
    pub running_mean: Option<Buffer>,
    /// Running (unbiased) variance `[c]`.
    pub running_var: Option<Buffer>,
    /// Batches seen in training mode, an i64 0-d tensor.
    pub num_batches_tracked: Option<Buffer>,
    num_features: Option<usize>,
    eps: f64,
    momentum: Option<f64>,
    training: bool,
}

/// Batch normalization of `[n, c]` or `[n, c, l]` (PyTorch's `nn.BatchNorm1d`).
pub type BatchNorm1d = BatchNorm<1>;
/// Batch normalization of `[n, c, h, w]` (PyTorch's `nn.BatchNorm2d`).
pub type BatchNorm2d = BatchNorm<2>;

fn stats_buffers(c: usize) -> Result<(Buffer, Buffer, Buffer)> {
    Ok((
        Buffer::new(Tensor::try_zeros(&[c])?),
        Buffer::new(Tensor::try_full(&[c], 1.0)?),
        Buffer::new(Tensor::from_vec(vec![0i64], &[])?),
    ))
}

impl<const D: usize> BatchNorm<D> {
    fn build(c: Option<usize>) -> Self {
        let param = |init: Init, name: &str| {
            let p = match c {
                Some(c) => Param::init(&[c], init.clone())
                    .unwrap_or_else(|_| Param::deferred(&[Some(c)], init)),
                None => Param::deferred(&[None], init),
            };
            p.set_name(name);
            p
        };
        let stats = match c {
            // a size too large to allocate leaves the buffers to the first forward
            Some(c) => stats_buffers(c).ok(),
            // sized by the first forward or by a state-dict load
            None => stats_buffers(0).ok().map(|(m, v, count)| {
                (
                    Buffer::deferred(m.get(), &[None]),
                    Buffer::deferred(v.get(), &[None]),
                    count,
                )
            }),
        };
        BatchNorm {
            weight: Some(param(Init::Ones, "weight")),
            bias: Some(param(Init::Zeros, "bias")),
            running_mean: stats.as_ref().map(|s| s.0.clone()),
            running_var: stats.as_ref().map(|s| s.1.clone()),
            num_batches_tracked: stats.map(|s| s.2),
            num_features: c,
            eps: 1e-5,
            momentum: Some(0.1),
            training: true,
        }
    }

    /// Over `num_features` channels: eps 1e-5, momentum 0.1, affine, tracking running
    /// statistics (PyTorch's defaults).
    pub fn new(num_features: usize) -> Self {
        Self::build(Some(num_features))
    }

    /// Channels learned at the first forward (PyTorch's `LazyBatchNorm`), or from the
    /// shapes of a state dict loaded before it: the weight, bias and running statistics
    /// must then agree on one channel count (else the load fails, naming the key).
    pub fn lazy() -> Self {
        Self::build(None)
    }

    /// Sets `eps`, added to the variance.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the momentum of the running statistics; `None` is a cumulative average.
    pub fn momentum(mut self, momentum: Option<f64>) -> Self {
        self.momentum = momentum;
        self
    }

    /// Without `weight` and `bias` (`affine=False`).
    pub fn no_affine(mut self) -> Self {
        self.weight = None;
        self.bias = None;
        self
    }

    /// Without the `bias` (PyTorch 2.15's `bias=False`), keeping the weight.
    pub fn no_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// Without running statistics (`track_running_stats=False`): batch statistics in
    /// both modes, no buffers.
    pub fn no_running_stats(mut self) -> Self {
        self.running_mean = None;
        self.running_var = None;
        self.num_batches_tracked = None;
        self
    }

    /// Channels, `None` while lazy and neither run nor loaded.
    pub fn num_features(&self) -> Option<usize> {
        self.num_features
            .or_else(|| {
                self.weight
                    .as_ref()
                    .and_then(|w| w.partial_shape().first().copied().flatten())
            })
            .or_else(|| {
                self.running_mean
                    .as_ref()
                    .and_then(|b| b.partial_shape().first().copied().flatten())
            })
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The momentum of the running statistics (`None`: a cumulative average).
    pub fn get_momentum(&self) -> Option<f64> {
        self.momentum
    }

    /// Changes the momentum in place (what `bn.momentum = None` does in PyTorch).
    pub fn set_momentum(&mut self, momentum: Option<f64>) {
        self.momentum = momentum;
    }

    /// Running mean 0, running variance 1, no batch tracked (PyTorch's
    /// `reset_running_stats`); nothing without running statistics.
    pub fn reset_running_stats(&self) -> Result<()> {
        for (b, v) in [(&self.running_mean, 0.0), (&self.running_var, 1.0)] {
            if let Some(b) = b {
                let t = b.get();
                b.set(&Tensor::try_full(t.shape(), v)?.to_device(&t.device())?);
            }
        }
        if let Some(b) = &self.num_batches_tracked {
            let t = b.get();
            b.set(&Tensor::try_zeros_dtype(t.shape(), t.dtype())?.to_device(&t.device())?);
        }
        Ok(())
    }

    fn layer_name(&self) -> String {
        let desc = format!("{}({})", self.module_name(), self.extra_repr());
        let owner = self
            .weight
            .as_ref()
            .map(|w| w.name())
            .and_then(|n| n.strip_suffix(".weight").map(str::to_string));
        match owner {
            Some(o) if !o.is_empty() => format!("{o} ({desc})"),
            _ => desc,
        }
    }

    fn mismatch(&self, x: &Tensor, expected: String) -> Error {
        Error::InputMismatch {
            layer: self.layer_name(),
            expected,
            actual: x.shape().to_vec(),
        }
    }

    /// Checks the input's rank and channels; sizes a lazy layer. Returns `c`.
    fn check(&self, x: &Tensor) -> Result<usize> {
        let ok_rank = match D {
            1 => x.rank() == 2 || x.rank() == 3,
            _ => x.rank() == D + 2,
        };
        if !ok_rank {
            let want = match D {
                1 => "2 or 3 dims ([batch, channels] or [batch, channels, length])".to_string(),
                _ => format!("{} dims ([batch, channels, {D} spatial])", D + 2),
            };
            return Err(self.mismatch(x, want));
        }
        if x.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "batch_norm",
                dtype: x.dtype(),
                expected: Some(DType::F32),
            });
        }
        let c = x.shape()[1];
        match self.num_features() {
            Some(have) if have != c => {
                return Err(self.mismatch(x, format!("{have} channels (dim 1)")));
            }
            _ => {}
        }
        let shape = [c];
        super::lazy::materialize_pending(
            self.weight
                .iter()
                .chain(&self.bias)
                .map(|p| (p, &shape[..], None)),
        )?;
        if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
            // both: a racing first forward may have set the mean and not yet the variance
            if rm.get().shape() != [c] || rv.get().shape() != [c] {
                let (m, v, _) = stats_buffers(c)?;
                let dev = x.device();
                rm.set(&m.get().to_device(&dev)?);
                rv.set(&v.get().to_device(&dev)?);
            }
        }
        Ok(c)
    }

    /// Updates the running statistics from the batch's `mean` and biased `var` `[c]`
    /// over `m` values per channel.
    fn update_stats(&self, mean: &Tensor, var: &Tensor, m: usize) -> Result<()> {
        let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) else {
            return Ok(());
        };
        crate::no_grad(|| {
            let mut count = 0i64;
            if let Some(nbt) = &self.num_batches_tracked {
                let t = nbt.get();
                count = t.to_vec::<i64>()?.first().copied().unwrap_or(0) + 1;
                nbt.set(&Tensor::from_vec(vec![count], &[])?.to_device(&t.device())?);
            }
            let f = match self.momentum {
                Some(f) => f,
                None => 1.0 / count.max(1) as f64,
            } as f32;
            let unbias = m as f32 / (m as f32 - 1.0);
            let (old_m, old_v) = (rm.get(), rv.get());
            rm.set(
                &old_m
                    .affine(1.0 - f, 0.0)?
                    .add(&mean.detach().mul_scalar(f)?)?,
            );
            rv.set(
                &old_v
                    .affine(1.0 - f, 0.0)?
                    .add(&var.detach().mul_scalar(f * unbias)?)?,
            );
            Ok(())
        })
    }
}

impl<const D: usize> Module for BatchNorm<D> {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        if let Some(w) = &self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
        if let Some(b) = &self.running_mean {
            v.buffer("running_mean", b);
        }
        if let Some(b) = &self.running_var {
            v.buffer("running_var", b);
        }
        if let Some(b) = &self.num_batches_tracked {
            v.buffer("num_batches_tracked", b);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        if let Some(w) = &mut self.weight {
            v.param("weight", w);
        }
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
        if let Some(b) = &mut self.running_mean {
            v.buffer("running_mean", b);
        }
        if let Some(b) = &mut self.running_var {
            v.buffer("running_var", b);
        }
        if let Some(b) = &mut self.num_batches_tracked {
            v.buffer("num_batches_tracked", b);
        }
    }
    fn module_name(&self) -> String {
        format!("BatchNorm{D}d")
    }
    /// PyTorch's: `64, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True`.
    fn extra_repr(&self) -> String {
        let c = self
            .num_features()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into());
        let momentum = self
            .momentum
            .map(python_float)
            .unwrap_or_else(|| "None".into());
        format!(
            "{c}, eps={}, momentum={momentum}, affine={}, bias={}, track_running_stats={}",
            python_float(self.eps),
            python_bool(self.weight.is_some()),
            python_bool(self.bias.is_some()),
            python_bool(self.running_mean.is_some())
        )
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl<const D: usize> BatchNorm<D> {
    /// `relu(bn(x))`, what a convolution block runs after its convolution. In eval mode
    /// without autograd (an inference forward under `no_grad`), the normalization and
    /// the ReLU are one pass over `x` with the same numbers; otherwise one fused node
    /// (training or recorded eval, where the backend has one), else `forward` then
    /// `relu`.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, None, true)
    }

    /// `relu(bn(x) + residual)`, the tail of a residual block (torchvision's
    /// `BasicBlock`); one pass over `x` in eval mode without autograd, one fused node
    /// otherwise for a residual of `x`'s shape, like [`BatchNorm::forward_relu`] (a
    /// residual that broadcasts goes through the composite).
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_then(x, Some(residual), true)
    }

    fn forward_then(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        if let Some(y) = self.eval_fused(x, residual, relu)? {
            return Ok(y);
        }
        if let Some(y) = self.node_fused(x, residual, relu)? {
            return Ok(y);
        }
        let mut y = self.composite(x)?;
        if let Some(r) = residual {
            y = y.add(r)?;
        }
        if relu {
            y = y.relu()?;
        }
        Ok(y)
    }

    /// The forward (plus residual and ReLU) as one autograd node
    /// (`Tensor::batch_norm_fused` in `ops`): batch statistics in training (the running ones
    /// updated from them as the composite does) or without running statistics, the
    /// running ones otherwise. `None` where the backend has no fused form or an operand
    /// does not fit it (the composite then runs); the input checks and errors are the
    /// composite's.
    fn node_fused(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
    ) -> Result<Option<Tensor>> {
        let c = self.check(x)?;
        let m = x.numel() / c.max(1);
        if m <= 1 && self.training {
            return Err(self.mismatch(x, "more than 1 value per channel when training".into()));
        }
        let running = match (&self.running_mean, &self.running_var) {
            _ if self.training => None,
            (Some(rm), Some(rv)) => Some((rm.get(), rv.get())),
            _ => None,
        };
        let (weight, bias) = (
            self.weight.as_ref().map(Param::tensor).transpose()?,
            self.bias.as_ref().map(Param::tensor).transpose()?,
        );
        let args = BatchNormArgs {
            weight: weight.as_ref(),
            bias: bias.as_ref(),
            residual,
            running: running.as_ref().map(|(m, v)| (m, v)),
            eps: self.eps as f32,
            relu,
        };
        let Some((y, stats)) = x.batch_norm_fused(&args)? else {
            return Ok(None);
        };
        if self.training {
            let row = |i: usize| stats.narrow(0, i, 1)?.reshape(&[c]);
            self.update_stats(&row(0)?, &row(2)?, m)?;
        }
        Ok(Some(y))
    }

    /// The eval-mode forward (plus residual and ReLU) as one backend pass, `None` where
    /// it does not apply: in training, without running statistics, when autograd would
    /// record (the fused pass has no backward), or for a residual of another shape.
    fn eval_fused(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
    ) -> Result<Option<Tensor>> {
        let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) else {
            return Ok(None);
        };
        if self.training || residual.is_some_and(|r| r.shape() != x.shape()) {
            return Ok(None);
        }
        let c = self.check(x)?;
        let (weight, bias) = (
            self.weight.as_ref().map(Param::tensor).transpose()?,
            self.bias.as_ref().map(Param::tensor).transpose()?,
        );
        let records = crate::autograd::is_grad_enabled()
            && (x.requires_grad()
                || residual.is_some_and(Tensor::requires_grad)
                || weight.as_ref().is_some_and(Tensor::requires_grad)
                || bias.as_ref().is_some_and(Tensor::requires_grad));
        if records {
            return Ok(None);
        }
        let (rm, rv) = (rm.get(), rv.get());
        // the same per-channel scale as `forward` computes, so the same numbers
        let mut scale = rv.add_scalar(self.eps as f32)?.powf(-0.5)?;
        if let Some(w) = &weight {
            scale = scale.mul(w)?;
        }
        let outer = x.shape()[0];
        let inner = x.shape()[2..].iter().product::<usize>();
        let y = x.storage().channel_affine(
            [outer, c, inner],
            rm.storage().as_ref(),
            scale.storage().as_ref(),
            bias.as_ref().map(|b| b.storage().as_ref()),
            residual.map(|r| r.storage().as_ref()),
            relu,
        )?;
        Ok(Some(Tensor::from_storage(y, x.shape())?))
    }
}

impl<const D: usize> Forward for BatchNorm<D> {
    /// One fused node where the backend has one (see [`BatchNorm::forward_relu`]), else
    /// the composite of primitives.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, None, false)
    }
}

impl<const D: usize> BatchNorm<D> {
    /// The forward from primitives (autograd differentiates it op by op): what backends
    /// without the fused op run, and the reference of the tests.
    fn composite(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.check(x)?;
        let axes: Vec<usize> = (0..x.rank()).filter(|&a| a != 1).collect();
        let mut bshape = vec![1; x.rank()];
        bshape[1] = c;
        let m = x.numel() / c.max(1);
        let use_batch = self.training || self.running_mean.is_none();
        let (xc, var) = if use_batch {
            if m <= 1 && self.training {
                return Err(self.mismatch(x, "more than 1 value per channel when training".into()));
            }
            let inv_m = 1.0 / m as f32;
            let mean = x.sum_axes_keepdim(&axes)?.mul_scalar(inv_m)?;
            let xc = x.sub(&mean)?;
            let var = xc.square()?.sum_axes_keepdim(&axes)?.mul_scalar(inv_m)?;
            if self.training {
                self.update_stats(&mean.reshape(&[c])?, &var.reshape(&[c])?, m)?;
            }
            (xc, var)
        } else {
            let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) else {
                return Err(self.mismatch(x, "running statistics".into()));
            };
            let xc = x.sub(&rm.get().reshape(&bshape)?)?;
            (xc, rv.get().reshape(&bshape)?)
        };
        // the weight joins the per-channel 1/sqrt(var + eps) before it meets the
        // activations: one full-size product (and its backward) instead of two
        let mut scale = var.add_scalar(self.eps as f32)?.powf(-0.5)?;
        if let Some(w) = &self.weight {
            scale = scale.mul(&w.tensor()?.reshape(&bshape)?)?;
        }
        channel_affine(xc.mul(&scale)?, None, self.bias.as_ref(), &bshape)
    }
}

/// `y * weight + bias` with the per-channel `[c]` parameters viewed as `bshape` (`c` on
/// axis 1, ones elsewhere): the affine tail of the channel normalizations.
pub(super) fn channel_affine(
    mut y: Tensor,
    weight: Option<&Param>,
    bias: Option<&Param>,
    bshape: &[usize],
) -> Result<Tensor> {
    if let Some(w) = weight {
        y = y.mul(&w.tensor()?.reshape(bshape)?)?;
    }
    if let Some(b) = bias {
        y = y.add(&b.tensor()?.reshape(bshape)?)?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests;
