//! Training utilities, PyTorch's `torch.nn.utils`: gradient clipping by total norm
//! ([`clip_grad_norm`]) and by value ([`clip_grad_value`]).
//!
//! Both act on the gradients of the parameters given (`model.parameters()`, or any
//! slice of parameters), each parameter once however often it is listed (a tied
//! parameter is one parameter), parameters without a gradient skipped. Gradients in
//! host memory are read and scaled in place with no allocation per parameter; on other
//! devices the same arithmetic runs as tensor ops where the gradient lives.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{utils, Linear, ModuleExt, Forward, Tensor};
//! let net = Linear::new(4, 2);
//! net.forward(&Tensor::randn(&[8, 4]))?.sum()?.mul_scalar(100.0)?.backward()?;
//! let total = utils::clip_grad_norm(&net.parameters(), 1.0, 2.0, false)?;
//! assert!(total > 1.0);
//! let after = utils::clip_grad_norm(&net.parameters(), f64::INFINITY, 2.0, false)?;
//! assert!((after - 1.0).abs() < 1e-4);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::{Device, Error, HostData, Param, Result, Tensor};
use std::collections::HashSet;

/// The parameters with a gradient, each once, with that gradient.
fn grads(params: &[Param]) -> Vec<(&Param, Tensor)> {
    let mut seen = HashSet::with_capacity(params.len());
    params
        .iter()
        .filter(|p| seen.insert(p.id()))
        .filter_map(|p| p.grad().map(|g| (p, g)))
        .collect()
}

/// Rewrites `p`'s gradient `g` with `f` applied to every element: in place when it
/// lives in host memory and no other handle shares it, else as the tensor `tensor_op(g)`.
fn rewrite(
    p: &Param,
    mut g: Tensor,
    f: impl Fn(f32) -> f32,
    tensor_op: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<()> {
    // the slot's handle goes first, so `g` is the only one (no copy on write)
    p.set_grad(None);
    let done = match g.make_mut() {
        Ok(s) => match s.as_host_mut() {
            Some(HostData::F32(v)) => {
                v.iter_mut().for_each(|x| *x = f(*x));
                true
            }
            _ => false,
        },
        Err(_) => false,
    };
    let g = if done { g } else { tensor_op(&g)? };
    p.set_grad(Some(g));
    Ok(())
}

/// `sum |g|^p` (or `max |g|` for `p = inf`, or the count of nonzeros for `p = 0`) of one
/// gradient: `Ok(Some(v))` from host memory without allocating, `Ok(None)` when the
/// gradient lives elsewhere.
fn host_part(g: &Tensor, p: f64) -> Result<Option<f64>> {
    let Some(h) = g.storage().as_host() else {
        return Ok(None);
    };
    let v = h.f32s("clip_grad_norm")?;
    let it = v.iter().map(|&x| f64::from(x).abs());
    Ok(Some(if p == f64::INFINITY {
        it.fold(0.0, |m: f64, x| if x > m || x.is_nan() { x } else { m })
    } else if p == 0.0 {
        it.filter(|&x| x != 0.0).count() as f64
    } else if p == 2.0 {
        it.map(|x| x * x).sum()
    } else if p == 1.0 {
        it.sum()
    } else {
        it.map(|x| x.powf(p)).sum()
    }))
}

/// The same part as a 0-d tensor on the gradient's device (tensor ops).
fn device_part(g: &Tensor, p: f64) -> Result<Tensor> {
    let a = g.abs()?;
    if p == f64::INFINITY {
        a.max()
    } else if p == 0.0 {
        a.gt_scalar(0.0)?.to_dtype(crate::DType::F32)?.sum()
    } else {
        a.powf(p as f32)?.sum()
    }
}

/// Scales the gradients of `params` so that their total `norm_type`-norm (the norm of
/// all gradient elements taken as one vector) is at most `max_norm`, and returns the
/// total norm before clipping (PyTorch's `torch.nn.utils.clip_grad_norm_`).
///
/// `norm_type` is 2 for the Euclidean norm, `f64::INFINITY` for the largest magnitude,
/// any other p > 0 for `(sum |g|^p)^(1/p)`, 0 for the number of nonzero elements. As in
/// PyTorch every gradient is multiplied by `min(max_norm / (total + 1e-6), 1)`. A
/// non-finite total with `error_if_nonfinite` is an error and leaves the gradients
/// unchanged; without it the gradients are scaled all the same (to NaN or 0, as
/// PyTorch). No gradient at all gives a total norm of 0.
pub fn clip_grad_norm(
    params: &[Param],
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> Result<f64> {
    const OP: &str = "clip_grad_norm";
    if norm_type.is_nan() || norm_type < 0.0 {
        return Err(Error::invalid_config(
            OP,
            "norm_type",
            norm_type,
            "must be 0, a positive number or infinity",
        ));
    }
    if max_norm.is_nan() {
        return Err(Error::invalid_config(
            OP,
            "max_norm",
            max_norm,
            "must be a number",
        ));
    }
    let gs = grads(params);
    if gs.is_empty() {
        return Ok(0.0);
    }
    let inf = norm_type == f64::INFINITY;
    let mut acc = 0.0f64;
    // per device, the parts computed there: one read back per device at the end
    let mut remote: Vec<(Device, Tensor)> = Vec::new();
    for (_, g) in &gs {
        match host_part(g, norm_type)? {
            Some(v) if inf => acc = if v > acc || v.is_nan() { v } else { acc },
            Some(v) => acc += v,
            None => {
                let part = device_part(g, norm_type)?;
                let dev = g.device();
                match remote.iter_mut().find(|(d, _)| *d == dev) {
                    Some((_, t)) => {
                        *t = if inf {
                            t.maximum(&part)?
                        } else {
                            t.add(&part)?
                        }
                    }
                    None => remote.push((dev, part)),
                }
            }
        }
    }
    for (_, t) in &remote {
        let v = f64::from(t.item()?);
        acc = if inf {
            if v > acc || v.is_nan() {
                v
            } else {
                acc
            }
        } else {
            acc + v
        };
    }
    let total = if inf || norm_type == 0.0 {
        acc
    } else {
        acc.powf(1.0 / norm_type)
    };
    if error_if_nonfinite && !total.is_finite() {
        return Err(Error::invalid_config(
            OP,
            "total norm",
            total,
            format!(
                "the total norm of order {norm_type} of the gradients is non-finite, so it \
                 cannot be clipped; pass error_if_nonfinite = false to clip anyway"
            ),
        ));
    }
    let coef = (max_norm / (total + 1e-6)).min(1.0) as f32;
    for (p, g) in gs {
        rewrite(p, g, |x| x * coef, |g| g.mul_scalar(coef))?;
    }
    Ok(total)
}

/// Limits every gradient element of `params` to `[-clip_value, clip_value]` (PyTorch's
/// `torch.nn.utils.clip_grad_value_`); NaN stays NaN. A negative or NaN `clip_value` is
/// an error (PyTorch would set every gradient to `-clip_value`).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::{utils, Param, Tensor};
/// let p = Param::new(Tensor::zeros(&[3]))?;
/// p.set_grad(Some(Tensor::from_vec(vec![-5.0f32, 0.5, 2.0], &[3])?));
/// utils::clip_grad_value(&[p.clone()], 1.0)?;
/// assert_eq!(p.grad().unwrap().to_vec::<f32>()?, vec![-1.0, 0.5, 1.0]);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn clip_grad_value(params: &[Param], clip_value: f64) -> Result<()> {
    if clip_value.is_nan() || clip_value < 0.0 {
        return Err(Error::invalid_config(
            "clip_grad_value",
            "clip_value",
            clip_value,
            "must be non-negative",
        ));
    }
    let c = clip_value as f32;
    for (p, g) in grads(params) {
        rewrite(p, g, |x| x.clamp(-c, c), |g| g.clamp(-c, c))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "utils_tests.rs"]
mod tests;
