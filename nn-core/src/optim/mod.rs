//! Optimizers: [`Sgd`] and [`Adam`] with PyTorch's update rules, behind one [`Optimizer`]
//! trait.
//!
//! Updates run without recording a graph, in place, on the device where each parameter
//! lives: one fused pass per parameter through the backend's
//! [`crate::backend::BackendStorage::sgd_step`] / `adam_step` (on the CPU with no
//! allocation, on CUDA one kernel). When the data is shared with a tensor the user still
//! holds, the update runs on a copy that becomes the data (copy-on-write). A backend
//! without a fused update gets the same rule with tensor ops.
//!
//! `state_dict()` / `load_state_dict()` save and restore the optimizer state exactly
//! (momentum buffers, moment estimates, step counts) under PyTorch-like keys:
//! `"{i}.momentum_buffer"`, `"{i}.exp_avg"`, `"{i}.exp_avg_sq"`, `"{i}.step"` and `"step"`,
//! `i` being the parameter's position. Hyperparameters live in code, as the architecture
//! does; set a changed learning rate with [`Optimizer::set_lr`].
//!
//! ```
//! use nn_core::optim::{Optimizer, Sgd, SgdConfig};
//! use nn_core::{Linear, ModuleExt, Forward, Tensor};
//! let net = Linear::new(3, 1);
//! let mut opt = Sgd::new(net.parameters(), SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })?;
//! let loss = net.forward(&Tensor::ones(&[4, 3]))?.square()?.mean()?;
//! opt.zero_grad();
//! loss.backward()?;
//! opt.step()?;
//! # Ok::<(), nn_core::Error>(())
//! ```

mod adam;
mod sgd;
pub mod swa_utils;

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::{DType, Error, Param, Result, StateDict, Tensor};
use std::collections::HashSet;

/// A rule that updates parameters from their gradients.
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
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Changes the learning rate (for schedules); a NaN, infinite or negative rate is
    /// an [`Error::InvalidConfig`] and leaves the rate unchanged.
    fn set_lr(&mut self, lr: f64) -> Result<()>;
    /// The parameters, in the order the state keys number them.
    fn params(&self) -> &[Param];
    /// A snapshot of the state (copies, unaffected by later steps). Every buffer is in
    /// it: a buffer that cannot be copied is an error, never silently left out.
    fn state_dict(&self) -> Result<StateDict>;
    /// Restores a snapshot taken from an optimizer of the same kind over parameters of the
    /// same shapes; all problems are reported together and nothing is changed on error.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;
}

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

/// Reads a step count saved by [`step_tensor`].
pub(crate) fn read_step(key: &str, t: &Tensor, problems: &mut Vec<String>) -> u64 {
    let v = match t.dtype() {
        DType::I64 => t.to_vec::<i64>().ok().and_then(|v| v.first().copied()),
        _ => None,
    };
    match v {
        Some(s) if s >= 0 && t.numel() == 1 => s as u64,
        _ => {
            problems.push(format!(
                "`{key}` must be a one-element non-negative int64 tensor, got {:?} {}",
                t.shape(),
                t.dtype()
            ));
            0
        }
    }
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

/// Splits `"{i}.{name}"` into its index and name.
pub(crate) fn split_key(key: &str) -> Option<(usize, &str)> {
    let (i, name) = key.split_once('.')?;
    Some((i.parse().ok()?, name))
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
