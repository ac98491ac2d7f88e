//! Test helper: central-difference checks of a layer's parameter gradients (the op-level
//! checker in `ops::testing` perturbs inputs; parameters hold their own graph leaves).

use crate::module::{Module, ModuleExt};
use crate::{Error, Result, Tensor};
use rand::RngExt;

/// Compares autograd's gradient of `sum(forward() * u)` (u random) with respect to
/// every parameter of `m` with central differences, on up to `per_param` entries of each.
pub(crate) fn check_param_grads(
    m: &impl Module,
    per_param: usize,
    forward: impl Fn() -> Result<Tensor>,
) -> Result<()> {
    let mut rng = crate::rng::stream(4242);
    let out = forward()?;
    let u: Vec<f32> = (0..out.numel())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let ut = Tensor::from_slice(&u, out.shape())?;
    m.zero_grad();
    out.mul(&ut)?.sum()?.backward()?;
    let objective = || -> Result<f64> {
        let y = crate::no_grad(&forward)?.to_vec::<f32>()?;
        Ok(y.iter().zip(&u).map(|(a, b)| *a as f64 * *b as f64).sum())
    };
    let eps = 1e-3f32;
    for (name, p) in m.named_parameters() {
        let n = p.numel();
        let analytic = p
            .grad()
            .map(|g| g.to_vec::<f32>())
            .transpose()?
            .unwrap_or_else(|| vec![0.0; n]);
        let step = (n / per_param.max(1)).max(1);
        for j in (0..n).step_by(step) {
            let nudge = |d: f32| -> Result<f64> {
                p.with_data_mut(|v| v[j] += d)?;
                let r = objective();
                p.with_data_mut(|v| v[j] -= d)?;
                r
            };
            let numeric = (nudge(eps)? - nudge(-eps)?) / (2.0 * eps as f64);
            let a = analytic[j] as f64;
            if (numeric - a).abs() > 2e-2 + 2e-2 * numeric.abs() {
                return Err(Error::NotClose {
                    what: format!("gradient check, parameter {name} element {j}"),
                    got: format!("autograd {a}"),
                    expected: format!("finite difference {numeric}"),
                });
            }
        }
    }
    Ok(())
}
