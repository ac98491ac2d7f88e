//! Optimizers with PyTorch's update rules ([`Sgd`], [`Adam`], [`AdamW`], [`RmsProp`],
//! [`Adagrad`]), parameter groups ([`ParamGroup`]), learning-rate schedules
//! ([`lr_scheduler`]), behind one [`Optimizer`] trait.
//!
//! Updates run without recording a graph, in place, on the device where each parameter
//! lives: one fused pass per parameter through the backend's
//! [`crate::backend::BackendStorage::sgd_step`] / `adam_step` / `optim_step` (on the CPU
//! with no allocation, on CUDA one kernel where the backend has it). When the data is
//! shared with a tensor the user still holds, the update runs on a copy that becomes the
//! data (copy-on-write). A backend without a fused update gets the same rule with tensor
//! ops.
//!
//! Parameters are numbered as PyTorch numbers them: group after group, each in the order
//! given (`named_parameters()` order for a whole model). `state_dict()` /
//! `load_state_dict()` use PyTorch's layout flattened to dotted keys, so the state read
//! from a PyTorch checkpoint ([`from_torch`]) loads: `state.{i}.step`,
//! `state.{i}.exp_avg` ... per parameter index, and `param_groups.{g}.lr`,
//! `param_groups.{g}.betas`, `param_groups.{g}.params` ... per group (f64 scalars and
//! lists, booleans as 0 / 1, `params` int64). Loading restores the groups'
//! hyper-parameters as PyTorch does.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::optim::{Optimizer, Sgd, SgdConfig};
//! use nn::{Linear, ModuleExt, Forward, Tensor};
//! let net = Linear::new(3, 1);
//! let mut opt = Sgd::new(net.parameters(), SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })?;
//! let loss = net.forward(&Tensor::ones(&[4, 3]))?.square()?.mean()?;
//! opt.zero_grad();
//! loss.backward()?;
//! opt.step()?;
//! # Ok::<(), nn::Error>(())
//! ```

mod adagrad;
mod adam;
mod group;
pub mod lr_scheduler;
mod rmsprop;
mod sgd;
pub mod swa_utils;
mod torch_state;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig, AdamW, AdamWConfig};
pub use group::{partition_by_name, ParamGroup};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};
pub use torch_state::from_torch;

use crate::{DType, Error, Param, Result, StateDict, Tensor};
use std::collections::HashSet;

/// A rule that updates parameters from their gradients, over one or more parameter
/// groups.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient (others are skipped,
    /// as PyTorch does).
    fn step(&mut self) -> Result<()>;
    /// Forgets every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`, its
    /// default): `grad()` is `None` afterwards and the next backward writes a fresh
    /// gradient instead of adding to zeros. On the CPU the freed buffers go to the
    /// thread's cache ([`crate::cpu::pool`]), where that next backward finds them: a
    /// steady-state step allocates no gradient memory.
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
    /// The learning rate of the first group.
    fn lr(&self) -> f64 {
        self.group_lr(0).unwrap_or(0.0)
    }
    /// Sets the learning rate of every group; a NaN, infinite or negative rate is an
    /// [`Error::InvalidConfig`] and leaves the rates unchanged.
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_hyper("set_lr", "lr", lr)?;
        for g in 0..self.num_groups() {
            self.set_group_lr(g, lr)?;
        }
        Ok(())
    }
    /// Every parameter, group after group: the indices of the state dict.
    fn params(&self) -> &[Param];
    /// How many parameter groups there are.
    fn num_groups(&self) -> usize;
    /// The learning rate of group `g` (`None` past the last group).
    fn group_lr(&self, g: usize) -> Option<f64>;
    /// Sets the learning rate of group `g` (schedulers call it); an error for a bad
    /// rate or index, nothing changed then.
    fn set_group_lr(&mut self, g: usize, lr: f64) -> Result<()>;
    /// The momentum schedulers cycle in group `g`: `momentum` (SGD, RMSprop) or
    /// `betas.0` (Adam, AdamW); `None` for a rule without one.
    fn group_momentum(&self, g: usize) -> Option<f64>;
    /// Sets that momentum; an error for a rule without one.
    fn set_group_momentum(&mut self, g: usize, momentum: f64) -> Result<()>;
    /// The learning rate a scheduler started group `g` from (PyTorch's `initial_lr`).
    fn group_initial_lr(&self, g: usize) -> Option<f64>;
    /// Records group `g`'s `initial_lr` (schedulers do, at construction).
    fn set_group_initial_lr(&mut self, g: usize, lr: Option<f64>) -> Result<()>;
    /// A snapshot of the state in PyTorch's layout (copies, unaffected by later
    /// steps). Every buffer is in it: a buffer that cannot be copied is an error, never
    /// silently left out.
    fn state_dict(&self) -> Result<StateDict>;
    /// Restores a snapshot taken from an optimizer of the same kind over parameters of
    /// the same shapes in groups of the same sizes (or read from PyTorch); all problems
    /// are reported together and nothing is changed on error.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;
}

/// The [`Optimizer`] methods about groups, for a type with a `groups: Groups<_>` field.
macro_rules! group_methods {
    () => {
        fn params(&self) -> &[crate::Param] {
            &self.groups.params
        }
        fn num_groups(&self) -> usize {
            self.groups.groups.len()
        }
        fn group_lr(&self, g: usize) -> Option<f64> {
            use super::group::GroupConfig;
            self.groups.groups.get(g).map(|x| x.cfg.lr())
        }
        fn set_group_lr(&mut self, g: usize, lr: f64) -> crate::Result<()> {
            self.groups.set_lr(g, lr)
        }
        fn group_momentum(&self, g: usize) -> Option<f64> {
            use super::group::GroupConfig;
            self.groups.groups.get(g).and_then(|x| x.cfg.momentum())
        }
        fn set_group_momentum(&mut self, g: usize, m: f64) -> crate::Result<()> {
            self.groups.set_momentum(g, m)
        }
        fn group_initial_lr(&self, g: usize) -> Option<f64> {
            self.groups.groups.get(g).and_then(|x| x.initial_lr)
        }
        fn set_group_initial_lr(&mut self, g: usize, lr: Option<f64>) -> crate::Result<()> {
            self.groups.set_initial_lr(g, lr)
        }
    };
}
pub(crate) use group_methods;

/// Parameters deduplicated by identity, first occurrence kept.
pub(crate) fn dedupe(params: Vec<Param>) -> Vec<Param> {
    let mut seen = HashSet::new();
    params.into_iter().filter(|p| seen.insert(p.id())).collect()
}

/// Fails unless `v` is finite and non-negative.
pub(crate) fn check_hyper(opt: &'static str, name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid_config(
            opt,
            name,
            v,
            "must be finite and non-negative",
        ))
    }
}

/// The largest step count a state dict can hold (it is saved as an int64); counters
/// saturate there instead of wrapping into a negative value the loader rejects.
pub(crate) const MAX_STEP: u64 = i64::MAX as u64;

/// The step count after `step`, saturating at [`MAX_STEP`].
pub(crate) fn next_step(step: u64) -> u64 {
    step.saturating_add(1).min(MAX_STEP)
}

/// A detached copy of `t` (new storage) on the same device, copied there.
pub(crate) fn snapshot(t: &Tensor) -> Result<Tensor> {
    Tensor::from_storage(t.storage().deep_copy()?, t.shape())
}

/// Zeros shaped like `t` on its device (a fresh optimizer buffer).
pub(crate) fn zeros_on_device(t: &Tensor) -> Result<Tensor> {
    Tensor::from_storage(t.device().zeros(t.numel(), DType::F32)?, t.shape())
}

/// Whether the fused update applies: an f32 gradient of the parameter's shape, on its
/// device (anything else takes the tensor-op path, which reports the problem).
pub(crate) fn fusable(p: &Param, g: &Tensor) -> bool {
    g.dtype() == DType::F32 && p.shape().as_deref() == Some(g.shape()) && p.device() == g.device()
}

/// The step count tensor (an int64 scalar); a count beyond `i64::MAX` is an error.
pub(crate) fn step_tensor(opt: &'static str, step: u64) -> Result<Tensor> {
    let v = i64::try_from(step).map_err(|_| {
        Error::invalid_config(opt, "step count", step, "does not fit an int64 state entry")
    })?;
    Ok(Tensor::leaf(
        crate::cpu::storage(crate::HostData::I64(vec![v])),
        crate::shape::Dims::new(),
    ))
}

/// Reads a step count saved by [`step_tensor`] (int64) or by PyTorch (a float32
/// scalar holding a whole number).
pub(crate) fn read_step(key: &str, t: &Tensor, problems: &mut Vec<String>) -> u64 {
    let v = match t.to_host() {
        _ if t.numel() != 1 => None,
        Ok(crate::HostData::I64(v)) => v.first().and_then(|&s| u64::try_from(s).ok()),
        Ok(crate::HostData::F32(v)) => v.first().map(|&s| f64::from(s)).and_then(whole),
        Ok(crate::HostData::F64(v)) => v.first().copied().and_then(whole),
        _ => None,
    };
    match v {
        Some(s) => s.min(MAX_STEP),
        None => {
            problems.push(format!(
                "`{key}` must be a one-element non-negative whole number, got {:?} {}",
                t.shape(),
                t.dtype()
            ));
            0
        }
    }
}

/// `s` as a count when it is a whole non-negative number an int64 holds.
fn whole(s: f64) -> Option<u64> {
    (s >= 0.0 && s.fract() == 0.0 && s < MAX_STEP as f64).then_some(s as u64)
}

/// Checks a saved per-parameter buffer against its parameter's shape; returns a copy on
/// the parameter's device.
pub(crate) fn read_buffer(
    key: &str,
    t: &Tensor,
    p: &Param,
    problems: &mut Vec<String>,
) -> Option<Tensor> {
    let want = p.shape();
    if t.dtype() != DType::F32 || want.as_deref() != Some(t.shape()) {
        problems.push(format!(
            "`{key}`: got {:?} {}, parameter `{}` has shape {}",
            t.shape(),
            t.dtype(),
            p.name(),
            crate::module::fmt_partial(&p.partial_shape())
        ));
        return None;
    }
    match snapshot(t).and_then(|c| c.to_device(&p.device())) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(format!("`{key}`: {e}"));
            None
        }
    }
}

/// Turns collected problems into one error.
pub(crate) fn problems_to_result(op: &'static str, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::OptimizerState { op, problems })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_prop;
