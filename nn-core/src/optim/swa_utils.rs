//! Averaged weights, PyTorch's `torch.optim.swa_utils`: [`AveragedModel`] keeps a
//! running average of a model's parameters (and optionally buffers), as stochastic
//! weight averaging (the default) or an exponential moving average
//! ([`get_ema_multi_avg_fn`]); [`update_bn`] recomputes batch-norm statistics for the
//! averaged weights.
//!
//! With `n` the number of models averaged so far, each update of a float tensor is
//! PyTorch's `lerp(avg, model, w)`, `w = 1 / (n + 1)` for SWA and `1 - decay` for EMA;
//! the first update copies the model. Integer buffers (`num_batches_tracked`) average
//! as `avg * (1 - w) + model * w` truncated, as PyTorch's integer path does.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::optim::swa_utils::{get_ema_multi_avg_fn, AveragedModel};
//! use nn::{Forward, Linear, ModuleExt, Tensor};
//! let model = Linear::new(3, 2);
//! let mut ema = AveragedModel::new(&model, get_ema_multi_avg_fn(0.9), true);
//! for _ in 0..3 {
//!     // ... an optimizer step on `model` ...
//!     ema.update_parameters(&model)?;
//! }
//! assert_eq!(ema.n_averaged()?, 3);
//! let y = ema.forward(&Tensor::ones(&[1, 3]))?;
//! # Ok::<(), nn::Error>(())
//! ```

use crate::layers::{BatchNorm1d, BatchNorm2d};
use crate::module::{Buffer, Forward, Module, ModuleExt, Param, Visitor, VisitorMut};
use crate::{no_grad, DType, Error, Result, Tensor};
use std::fmt;
use std::sync::Arc;

/// A user average: `(averaged, model, n_averaged) -> new averaged` (PyTorch's
/// `avg_fn`), on detached tensors.
pub type AvgFnCustom = Arc<dyn Fn(&Tensor, &Tensor, i64) -> Result<Tensor> + Send + Sync>;

/// How [`AveragedModel::update_parameters`] folds a model into the average.
#[derive(Clone)]
pub enum AvgFn {
    /// The equal-weight running mean of stochastic weight averaging (PyTorch's default,
    /// [`get_swa_multi_avg_fn`]).
    Swa,
    /// An exponential moving average, `avg + (1 - decay) (model - avg)`
    /// ([`get_ema_multi_avg_fn`]).
    Ema {
        /// Weight of the old average.
        decay: f64,
    },
    /// A function of the averaged tensor, the model's and the count so far.
    Custom(AvgFnCustom),
}

impl fmt::Debug for AvgFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AvgFn::Swa => f.write_str("Swa"),
            AvgFn::Ema { decay } => write!(f, "Ema {{ decay: {decay} }}"),
            AvgFn::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The EMA average with `decay` (PyTorch's `get_ema_multi_avg_fn(decay=0.999)`).
pub fn get_ema_multi_avg_fn(decay: f64) -> AvgFn {
    AvgFn::Ema { decay }
}

/// The SWA running mean (PyTorch's `get_swa_multi_avg_fn()`).
pub fn get_swa_multi_avg_fn() -> AvgFn {
    AvgFn::Swa
}

/// A copy of a model whose weights are an average of the model's weights over updates
/// (PyTorch's `torch.optim.swa_utils.AveragedModel`). It is a module: its state dict
/// holds `n_averaged` and the copy's tensors under `module.`, as PyTorch's, and it runs
/// forward as the copy.
#[derive(Debug, Clone)]
pub struct AveragedModel<M> {
    /// The averaged copy (PyTorch's `.module`).
    pub module: M,
    n_averaged: Buffer,
    avg: AvgFn,
    use_buffers: bool,
}

/// PyTorch's `torch.lerp(a, b, w)`: `a + w (b - a)`, or `b - (b - a)(1 - w)` for
/// `|w| >= 0.5` (its two formulas, for the same rounding).
fn lerp(a: &Tensor, b: &Tensor, w: f64) -> Result<Tensor> {
    let d = b.sub(a)?;
    if w.abs() < 0.5 {
        a.add(&d.mul_scalar(w as f32)?)
    } else {
        b.sub(&d.mul_scalar((1.0 - w) as f32)?)
    }
}

/// The tensors averaged: `(name, tensor, writer)` of parameters, then buffers when asked.
enum Slot {
    P(Param),
    B(Buffer),
}

impl Slot {
    fn get(&self) -> Result<Tensor> {
        match self {
            Slot::P(p) => p.data(),
            Slot::B(b) => Ok(b.get()),
        }
    }
    fn set(&self, t: &Tensor) -> Result<()> {
        match self {
            Slot::P(p) => p.set_data(t),
            Slot::B(b) => {
                b.set(t);
                Ok(())
            }
        }
    }
}

fn slots(m: &dyn Module, params: bool, buffers: bool) -> Vec<(String, Slot)> {
    let mut out: Vec<(String, Slot)> = Vec::new();
    if params {
        out.extend(
            m.named_parameters()
                .into_iter()
                .map(|(n, p)| (n, Slot::P(p))),
        );
    }
    if buffers {
        out.extend(m.named_buffers().into_iter().map(|(n, b)| (n, Slot::B(b))));
    }
    out
}

impl<M: Module + Clone> AveragedModel<M> {
    /// An average starting from a deep copy of `model` (nothing averaged yet), folding
    /// models in with `avg`; `use_buffers` averages the buffers too (else they are
    /// copied from the model at each update), PyTorch's `AveragedModel(model,
    /// multi_avg_fn=..., use_buffers=...)`.
    pub fn new(model: &M, avg: AvgFn, use_buffers: bool) -> Self {
        AveragedModel {
            module: model.deep_copy(),
            n_averaged: Buffer::new(Tensor::zeros_dtype(&[], DType::I64)),
            avg,
            use_buffers,
        }
    }
}

impl<M: Module> AveragedModel<M> {
    /// How many models have been averaged (PyTorch's `n_averaged` buffer).
    pub fn n_averaged(&self) -> Result<i64> {
        Ok(self
            .n_averaged
            .get()
            .to_dtype(DType::I64)?
            .to_vec::<i64>()?
            .first()
            .copied()
            .unwrap_or(0))
    }

    /// Folds `model` (the same architecture) into the average: the first call copies
    /// it, later ones average with the rule given at creation. A model whose parameters
    /// or buffers do not match the copy's (count, names or shapes) is an error naming
    /// the first mismatch, and nothing changes.
    pub fn update_parameters(&mut self, model: &M) -> Result<()> {
        const OP: &str = "AveragedModel::update_parameters";
        let n = self.n_averaged()?;
        let (ub, ours_m) = (self.use_buffers, &self.module as &dyn Module);
        let ours = slots(ours_m, true, ub);
        let theirs = slots(model, true, ub);
        // buffers kept in sync with the model when they are not averaged
        let (our_bufs, their_bufs) = if ub {
            (Vec::new(), Vec::new())
        } else {
            (slots(ours_m, false, true), slots(model, false, true))
        };
        let mut pairs = Vec::with_capacity(ours.len());
        for (mine, other) in [(&ours, &theirs), (&our_bufs, &their_bufs)] {
            if mine.len() != other.len() {
                return Err(Error::invalid_config(
                    OP,
                    "model",
                    format!("{} tensors", other.len()),
                    format!("the averaged copy has {}", mine.len()),
                ));
            }
            for ((na, a), (nb, b)) in mine.iter().zip(other.iter()) {
                let (ta, tb) = (a.get()?, b.get()?);
                if na != nb || ta.shape() != tb.shape() {
                    return Err(Error::invalid_config(
                        OP,
                        "model",
                        format!("`{nb}` of shape {:?}", tb.shape()),
                        format!("the averaged copy has `{na}` of shape {:?}", ta.shape()),
                    ));
                }
                let tb = tb.detach().to_device(&ta.device())?;
                pairs.push((a, ta, tb));
            }
        }
        let n_avg = ours.len();
        no_grad(|| -> Result<()> {
            for (k, (slot, a, b)) in pairs.iter().enumerate() {
                let averaged = k < n_avg;
                let new = if !averaged || n == 0 {
                    b.to_dtype(a.dtype())?
                } else {
                    self.fold(a, b, n)?
                };
                slot.set(&new)?;
            }
            Ok(())
        })?;
        self.n_averaged
            .set(&Tensor::from_vec(vec![n + 1], &[])?.to_device(&self.n_averaged.get().device())?);
        Ok(())
    }

    /// One average step of `a` with the model's `b`, `n` models averaged so far.
    fn fold(&self, a: &Tensor, b: &Tensor, n: i64) -> Result<Tensor> {
        let w = match &self.avg {
            AvgFn::Custom(f) => return f(a, b, n),
            AvgFn::Swa => 1.0 / (n as f64 + 1.0),
            AvgFn::Ema { decay } => 1.0 - decay,
        };
        if a.dtype() == DType::F32 {
            return lerp(a, b, w);
        }
        // integers: in f32, truncated back (PyTorch's copy_ of a float result)
        let (af, bf) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
        af.mul_scalar((1.0 - w) as f32)?
            .add(&bf.mul_scalar(w as f32)?)?
            .to_dtype(a.dtype())
    }
}

impl<M: Module> Module for AveragedModel<M> {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.buffer("n_averaged", &self.n_averaged);
        v.module("module", &self.module);
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        v.buffer("n_averaged", &mut self.n_averaged);
        v.module("module", &mut self.module);
    }
}

impl<M: Module + Forward> Forward for AveragedModel<M> {
    /// The averaged copy's forward.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.module.forward(x)
    }
}

/// Finds every batch-norm layer under a module, for [`update_bn`].
struct BatchNorms<'v> {
    f: &'v mut dyn FnMut(&mut dyn Module) -> Result<()>,
    err: Option<Error>,
}

impl VisitorMut for BatchNorms<'_> {
    fn param(&mut self, _: &str, _: &mut Param) {}
    fn module(&mut self, _: &str, m: &mut dyn Module) {
        if let Err(e) = (self.f)(m) {
            self.err.get_or_insert(e);
        }
        m.visit_mut(self);
    }
}

/// Recomputes the running statistics of every batch-norm layer of `model` from the
/// inputs of `loader` (PyTorch's `torch.optim.swa_utils.update_bn`): statistics reset,
/// momentum `None` (a cumulative average over the batches), one forward per batch in
/// training mode, momenta restored. The model ends in training mode when its first
/// batch-norm layer was, else in evaluation mode. Nothing runs without batch-norm layers.
pub fn update_bn<M: Module + Forward>(
    loader: impl IntoIterator<Item = Tensor>,
    model: &mut M,
) -> Result<()> {
    let mut momenta: Vec<Option<f64>> = Vec::new();
    let mut was_training = None;
    let mut first_err = None;
    {
        let mut f = |m: &mut dyn Module| -> Result<()> {
            if let Some(b) = m.downcast_mut::<BatchNorm1d>() {
                b.reset_running_stats()?;
                was_training.get_or_insert(b.is_training());
                momenta.push(b.get_momentum());
                b.set_momentum(None);
            } else if let Some(b) = m.downcast_mut::<BatchNorm2d>() {
                b.reset_running_stats()?;
                was_training.get_or_insert(b.is_training());
                momenta.push(b.get_momentum());
                b.set_momentum(None);
            }
            Ok(())
        };
        let mut v = BatchNorms {
            f: &mut f,
            err: None,
        };
        (v.f)(model.as_module_mut())?;
        model.visit_mut(&mut v);
        first_err = first_err.or(v.err);
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let Some(was_training) = was_training else {
        return Ok(());
    };
    model.train();
    let run = loader
        .into_iter()
        .try_for_each(|x| no_grad(|| model.forward(&x)).map(|_| ()));
    // momenta back, in the same traversal order, whatever the forwards gave
    let mut it = momenta.into_iter();
    let mut f = |m: &mut dyn Module| -> Result<()> {
        if let Some(b) = m.downcast_mut::<BatchNorm1d>() {
            b.set_momentum(it.next().flatten());
        } else if let Some(b) = m.downcast_mut::<BatchNorm2d>() {
            b.set_momentum(it.next().flatten());
        }
        Ok(())
    };
    let mut v = BatchNorms {
        f: &mut f,
        err: None,
    };
    (v.f)(model.as_module_mut())?;
    model.visit_mut(&mut v);
    if was_training {
        model.train();
    } else {
        model.eval();
    }
    run
}

#[cfg(test)]
#[path = "swa_utils_tests.rs"]
mod tests;
