//! Batch normalization (with an optional residual add and ReLU) as one autograd node,
//! the training path of the `BatchNorm` layers where the backend has a fused kernel (the
//! CPU): one reduction pass per channel and one elementwise pass forward, the same
//! backward, instead of ~8 and ~15 full-size ops through the composite.
//!
//! For `x` `[outer, c, inner]`, per channel over its m = outer * inner values:
//! mean, biased var (or the running ones), invstd = (var + eps)^-0.5,
//! xhat = (x - mean) invstd, y = relu?(xhat w + b + residual). With g' = g (y > 0)
//! (the ReLU's mask read from the output), dw = sum g' xhat, db = sum g',
//! dresidual = g', and dx = w invstd (g' - db / m - xhat dw / m) with batch statistics
//! (their derivatives in x are the last two terms), `w invstd g'` with running ones.
//! The node saves nothing but `y`'s storage and the `[3, c]` statistics beyond its
//! inputs.

use crate::autograd::{backward_fn, record};
use crate::backend::{BatchNormOperands, BatchNormSpec, Storage};
use crate::{DType, Error, Result, Tensor};

/// The operands and options of [`Tensor::batch_norm_fused`].
#[derive(Clone, Copy)]
pub(crate) struct BatchNormArgs<'a> {
    /// Scale `[c]`.
    pub weight: Option<&'a Tensor>,
    /// Shift `[c]`.
    pub bias: Option<&'a Tensor>,
    /// Added before the ReLU, the input's shape.
    pub residual: Option<&'a Tensor>,
    /// The running `(mean, var)` `[c]` that normalize (evaluation); `None`: the batch's.
    pub running: Option<(&'a Tensor, &'a Tensor)>,
    /// Added to the variance.
    pub eps: f32,
    /// `max(y, 0)` last.
    pub relu: bool,
}

impl Tensor {
    /// Batch normalization of `self` `[n, c, ...]` as one node: the output and the
    /// statistics `[3, c]` (rows mean, invstd, biased var). `None` where the backend has
    /// no fused form, for an empty input, and for operands that are not all f32 on one
    /// device with the expected shapes (`[c]`; the residual `self`'s): the caller then
    /// runs the composite, which computes or reports the same.
    pub(crate) fn batch_norm_fused(
        &self,
        args: &BatchNormArgs<'_>,
    ) -> Result<Option<(Tensor, Tensor)>> {
        if self.rank() < 2 || self.numel() == 0 {
            return Ok(None);
        }
        let c = self.shape()[1];
        let ok = |t: &Tensor, shape: &[usize]| {
            t.dtype() == DType::F32 && t.device() == self.device() && t.shape() == shape
        };
        let per_channel = [args.weight, args.bias]
            .into_iter()
            .chain(args.running.iter().flat_map(|(m, v)| [Some(*m), Some(*v)]))
            .flatten();
        let usable = self.dtype() == DType::F32
            && per_channel.into_iter().all(|t| ok(t, &[c]))
            && args.residual.is_none_or(|r| ok(r, self.shape()));
        if !usable {
            return Ok(None);
        }
        let spec = BatchNormSpec {
            shape: [
                self.shape()[0],
                c,
                self.shape()[2..].iter().product::<usize>(),
            ],
            eps: args.eps,
            relu: args.relu,
            batch_stats: args.running.is_none(),
        };
        fn st(t: Option<&Tensor>) -> Option<&dyn crate::backend::BackendStorage> {
            t.map(|t| t.storage().as_ref())
        }
        let operands = BatchNormOperands {
            weight: st(args.weight),
            bias: st(args.bias),
            residual: st(args.residual),
            running: args
                .running
                .map(|(m, v)| (m.storage().as_ref(), v.storage().as_ref())),
        };
        let Some((y, stats)) = self.storage().batch_norm(&spec, &operands)? else {
            return Ok(None);
        };
        let stats_t = Tensor::from_storage(stats.clone(), &[3, c])?;
        let inputs: Vec<&Tensor> = [Some(self), args.weight, args.bias, args.residual]
            .into_iter()
            .flatten()
            .collect();
        let (has_w, has_b, has_r) = (
            args.weight.is_some(),
            args.bias.is_some(),
            args.residual.is_some(),
        );
        let output = y.clone();
        let y = record(y, self.shape_dims(), &inputs, "batch_norm", move || {
            backward_fn(move |inp, g| {
                let mut rest = inp[1..].iter();
                let w = has_w.then(|| rest.next()).flatten();
                let b = has_b.then(|| rest.next()).flatten();
                let r = has_r.then(|| rest.next()).flatten();
                let x = &inp[0];
                let wants = |t: Option<&Tensor>| t.is_some_and(Tensor::requires_grad);
                // without the ReLU the residual's gradient is `g` itself
                let needs = [x.requires_grad(), wants(w), wants(b), spec.relu && wants(r)];
                let grads = x.storage().batch_norm_backward(
                    g.storage().as_ref(),
                    output.as_ref(),
                    stats.as_ref(),
                    w.map(|w| w.storage().as_ref()),
                    &spec,
                    needs,
                )?;
                let Some((dx, dw, db, dr)) = grads else {
                    return Err(Error::custom(format!(
                        "batch_norm: the backend of input {:?} computed the fused forward \
                         but has no batch_norm_backward",
                        x.shape()
                    )));
                };
                let wrap = |s: Option<Storage>, shape: &[usize]| {
                    s.map(|s| Tensor::from_storage(s, shape)).transpose()
                };
                let mut out = vec![wrap(dx, x.shape())?];
                if has_w {
                    out.push(wrap(dw, &[c])?);
                }
                if has_b {
                    out.push(wrap(db, &[c])?);
                }
                if has_r {
                    out.push(match spec.relu {
                        true => wrap(dr, x.shape())?,
                        false => wants(r).then(|| g.clone()),
                    });
                }
                Ok(out)
            })
        });
        Ok(Some((y, stats_t)))
    }
}

#[cfg(test)]
mod tests;
