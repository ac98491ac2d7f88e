//! The schedules that scale the current lrs by a formula of the epoch (PyTorch's
//! chainable `get_lr`s), each with its closed form where PyTorch has one.

use super::{bad, nonneg, steps, Ctx, Rule, Scheduler};
use crate::optim::Optimizer;
use crate::Result;
use std::f64::consts::PI;

fn scaled(cur: &[f64], f: f64, lrs: &mut Vec<f64>) {
    lrs.extend(cur.iter().map(|lr| lr * f));
}

fn from_base(base: &[f64], f: impl Fn(f64) -> f64, lrs: &mut Vec<f64>) {
    lrs.extend(base.iter().map(|&b| f(b)));
}

/// [`StepLR`]'s rule.
#[derive(Debug, Clone)]
pub struct StepRule {
    step_size: i64,
    gamma: f64,
}

/// `StepLR`: the lr times `gamma` every `step_size` epochs.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{LrScheduler, StepLR};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = StepLR::new(&mut opt, 2, 0.5)?;
/// for _ in 0..4 { s.step(&mut opt)?; }
/// assert!((opt.lr() - 0.025).abs() < 1e-15);
/// # Ok::<(), nn::Error>(())
/// ```
pub type StepLR = Scheduler<StepRule>;

impl StepLR {
    /// PyTorch's `StepLR(optimizer, step_size, gamma)`.
    pub fn new(opt: &mut dyn Optimizer, step_size: usize, gamma: f64) -> Result<StepLR> {
        nonneg("StepLR", "gamma", gamma)?;
        if step_size == 0 {
            return Err(bad("StepLR", "step_size", 0, "must be positive"));
        }
        Scheduler::build(
            opt,
            StepRule {
                step_size: steps("StepLR", "step_size", step_size)?,
                gamma,
            },
        )
    }
}

impl Rule for StepRule {
    const NAME: &'static str = "StepLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        if c.epoch == 0 || c.epoch % self.step_size != 0 {
            scaled(c.cur, 1.0, lrs)
        } else {
            scaled(c.cur, self.gamma, lrs)
        }
        Ok(())
    }
    fn closed_form(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>) -> bool {
        let k = c.epoch.div_euclid(self.step_size) as f64;
        from_base(c.base_lrs, |b| b * self.gamma.powf(k), lrs);
        true
    }
}

/// [`MultiStepLR`]'s rule.
#[derive(Debug, Clone)]
pub struct MultiStepRule {
    milestones: Vec<i64>,
    gamma: f64,
}

/// `MultiStepLR`: the lr times `gamma` at each milestone (a milestone listed twice
/// multiplies twice).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{LrScheduler, MultiStepLR};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 1.0)?;
/// let mut s = MultiStepLR::new(&mut opt, &[1, 3], 0.1)?;
/// for _ in 0..3 { s.step(&mut opt)?; }
/// assert!((opt.lr() - 0.01).abs() < 1e-15);
/// # Ok::<(), nn::Error>(())
/// ```
pub type MultiStepLR = Scheduler<MultiStepRule>;

impl MultiStepLR {
    /// PyTorch's `MultiStepLR(optimizer, milestones, gamma)`.
    pub fn new(opt: &mut dyn Optimizer, milestones: &[usize], gamma: f64) -> Result<MultiStepLR> {
        nonneg("MultiStepLR", "gamma", gamma)?;
        let mut milestones = milestones
            .iter()
            .map(|&m| steps("MultiStepLR", "milestones", m))
            .collect::<Result<Vec<i64>>>()?;
        milestones.sort_unstable();
        Scheduler::build(opt, MultiStepRule { milestones, gamma })
    }
}

impl Rule for MultiStepRule {
    const NAME: &'static str = "MultiStepLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        let k = self.milestones.iter().filter(|&&m| m == c.epoch).count();
        if k == 0 {
            scaled(c.cur, 1.0, lrs)
        } else {
            scaled(c.cur, self.gamma.powf(k as f64), lrs)
        }
        Ok(())
    }
    fn closed_form(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>) -> bool {
        let k = self.milestones.partition_point(|&m| m <= c.epoch) as f64;
        from_base(c.base_lrs, |b| b * self.gamma.powf(k), lrs);
        true
    }
}

/// [`ConstantLR`]'s rule.
#[derive(Debug, Clone)]
pub struct ConstantRule {
    factor: f64,
    total_iters: i64,
}

/// `ConstantLR`: the lr times `factor` until `total_iters`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{ConstantLR, LrScheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = ConstantLR::new(&mut opt, 0.5, 2)?;
/// assert!((opt.lr() - 0.05).abs() < 1e-15);
/// for _ in 0..2 { s.step(&mut opt)?; }
/// assert!((opt.lr() - 0.1).abs() < 1e-15);
/// # Ok::<(), nn::Error>(())
/// ```
pub type ConstantLR = Scheduler<ConstantRule>;

impl ConstantLR {
    /// PyTorch's `ConstantLR(optimizer, factor, total_iters)` (defaults 1/3, 5).
    pub fn new(opt: &mut dyn Optimizer, factor: f64, total_iters: usize) -> Result<ConstantLR> {
        if !(0.0..=1.0).contains(&factor) {
            return Err(bad("ConstantLR", "factor", factor, "must be in [0, 1]"));
        }
        Scheduler::build(
            opt,
            ConstantRule {
                factor,
                total_iters: steps("ConstantLR", "total_iters", total_iters)?,
            },
        )
    }
}

impl Rule for ConstantRule {
    const NAME: &'static str = "ConstantLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        if c.epoch == 0 {
            scaled(c.cur, self.factor, lrs)
        } else if c.epoch != self.total_iters {
            scaled(c.cur, 1.0, lrs)
        } else {
            scaled(c.cur, 1.0 / self.factor, lrs)
        }
        Ok(())
    }
    fn closed_form(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>) -> bool {
        let done = if c.epoch >= self.total_iters {
            1.0
        } else {
            0.0
        };
        from_base(
            c.base_lrs,
            |b| b * (self.factor + done * (1.0 - self.factor)),
            lrs,
        );
        true
    }
}

/// [`LinearLR`]'s rule.
#[derive(Debug, Clone)]
pub struct LinearRule {
    start: f64,
    end: f64,
    total_iters: i64,
}

/// `LinearLR`: the lr factor goes linearly from `start_factor` to `end_factor` over
/// `total_iters` steps (a warmup).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{LinearLR, LrScheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = LinearLR::new(&mut opt, 0.5, 1.0, 2)?;
/// s.step(&mut opt)?;
/// assert!((opt.lr() - 0.075).abs() < 1e-12);
/// # Ok::<(), nn::Error>(())
/// ```
pub type LinearLR = Scheduler<LinearRule>;

impl LinearLR {
    /// PyTorch's `LinearLR(optimizer, start_factor, end_factor, total_iters)` (defaults
    /// 1/3, 1.0, 5).
    pub fn new(
        opt: &mut dyn Optimizer,
        start_factor: f64,
        end_factor: f64,
        total_iters: usize,
    ) -> Result<LinearLR> {
        if !(start_factor > 0.0 && start_factor <= 1.0) {
            return Err(bad(
                "LinearLR",
                "start_factor",
                start_factor,
                "must be in (0, 1]",
            ));
        }
        if !(0.0..=1.0).contains(&end_factor) {
            return Err(bad(
                "LinearLR",
                "end_factor",
                end_factor,
                "must be in [0, 1]",
            ));
        }
        if total_iters == 0 {
            return Err(bad("LinearLR", "total_iters", 0, "must be positive"));
        }
        Scheduler::build(
            opt,
            LinearRule {
                start: start_factor,
                end: end_factor,
                total_iters: steps("LinearLR", "total_iters", total_iters)?,
            },
        )
    }
}

impl Rule for LinearRule {
    const NAME: &'static str = "LinearLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        let (s, e, t) = (self.start, self.end, self.total_iters as f64);
        if c.epoch == 0 {
            scaled(c.cur, s, lrs)
        } else if c.initial || c.epoch > self.total_iters {
            scaled(c.cur, 1.0, lrs)
        } else {
            let f = 1.0 + (e - s) / (t * s + (c.epoch - 1) as f64 * (e - s));
            scaled(c.cur, f, lrs)
        }
        Ok(())
    }
    fn closed_form(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>) -> bool {
        let k = c.epoch.min(self.total_iters) as f64;
        let t = self.total_iters as f64;
        from_base(
            c.base_lrs,
            |b| b * (self.start + (self.end - self.start) * k / t),
            lrs,
        );
        true
    }
}

/// [`ExponentialLR`]'s rule.
#[derive(Debug, Clone)]
pub struct ExponentialRule {
    gamma: f64,
}

/// `ExponentialLR`: the lr times `gamma` every epoch.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{ExponentialLR, LrScheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = ExponentialLR::new(&mut opt, 0.5)?;
/// s.step(&mut opt)?;
/// assert!((opt.lr() - 0.05).abs() < 1e-15);
/// # Ok::<(), nn::Error>(())
/// ```
pub type ExponentialLR = Scheduler<ExponentialRule>;

impl ExponentialLR {
    /// PyTorch's `ExponentialLR(optimizer, gamma)`.
    pub fn new(opt: &mut dyn Optimizer, gamma: f64) -> Result<ExponentialLR> {
        nonneg("ExponentialLR", "gamma", gamma)?;
        Scheduler::build(opt, ExponentialRule { gamma })
    }
}

impl Rule for ExponentialRule {
    const NAME: &'static str = "ExponentialLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        scaled(c.cur, if c.initial { 1.0 } else { self.gamma }, lrs);
        Ok(())
    }
    fn closed_form(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>) -> bool {
        from_base(c.base_lrs, |b| b * self.gamma.powf(c.epoch as f64), lrs);
        true
    }
}

/// [`PolynomialLR`]'s rule.
#[derive(Debug, Clone)]
pub struct PolynomialRule {
    total_iters: i64,
    power: f64,
}

/// `PolynomialLR`: the lr decays as `(1 - t / total_iters)^power`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{LrScheduler, PolynomialLR};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = PolynomialLR::new(&mut opt, 2, 1.0)?;
/// for _ in 0..2 { s.step(&mut opt)?; }
/// assert_eq!(opt.lr(), 0.0);
/// # Ok::<(), nn::Error>(())
/// ```
pub type PolynomialLR = Scheduler<PolynomialRule>;

impl PolynomialLR {
    /// PyTorch's `PolynomialLR(optimizer, total_iters, power)` (defaults 5, 1.0).
    pub fn new(opt: &mut dyn Optimizer, total_iters: usize, power: f64) -> Result<PolynomialLR> {
        nonneg("PolynomialLR", "power", power)?;
        if total_iters == 0 {
            return Err(bad("PolynomialLR", "total_iters", 0, "must be positive"));
        }
        Scheduler::build(
            opt,
            PolynomialRule {
                total_iters: steps("PolynomialLR", "total_iters", total_iters)?,
                power,
            },
        )
    }
}

impl Rule for PolynomialRule {
    const NAME: &'static str = "PolynomialLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        if c.initial || c.epoch > self.total_iters {
            scaled(c.cur, 1.0, lrs);
        } else {
            let (e, t) = (c.epoch as f64, self.total_iters as f64);
            let f = ((1.0 - e / t) / (1.0 - (e - 1.0) / t)).powf(self.power);
            scaled(c.cur, f, lrs);
        }
        Ok(())
    }
    fn closed_form(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>) -> bool {
        let (k, t) = (
            c.epoch.min(self.total_iters) as f64,
            self.total_iters as f64,
        );
        from_base(c.base_lrs, |b| b * (1.0 - k / t).powf(self.power), lrs);
        true
    }
}

/// [`CosineAnnealingLR`]'s rule.
#[derive(Debug, Clone)]
pub struct CosineRule {
    t_max: i64,
    eta_min: f64,
}

/// `CosineAnnealingLR`: half a cosine from the base lr down to `eta_min` over `t_max`
/// epochs (and back up past it, as PyTorch's recurrence does).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{CosineAnnealingLR, LrScheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = CosineAnnealingLR::new(&mut opt, 10, 0.0)?;
/// for _ in 0..5 { s.step(&mut opt)?; }
/// assert!((opt.lr() - 0.05).abs() < 1e-12);
/// # Ok::<(), nn::Error>(())
/// ```
pub type CosineAnnealingLR = Scheduler<CosineRule>;

impl CosineAnnealingLR {
    /// PyTorch's `CosineAnnealingLR(optimizer, T_max, eta_min)`.
    pub fn new(opt: &mut dyn Optimizer, t_max: usize, eta_min: f64) -> Result<CosineAnnealingLR> {
        nonneg("CosineAnnealingLR", "eta_min", eta_min)?;
        if t_max == 0 {
            return Err(bad("CosineAnnealingLR", "T_max", 0, "must be positive"));
        }
        Scheduler::build(
            opt,
            CosineRule {
                t_max: steps("CosineAnnealingLR", "T_max", t_max)?,
                eta_min,
            },
        )
    }
}

impl Rule for CosineRule {
    const NAME: &'static str = "CosineAnnealingLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        let (e, t, eta) = (c.epoch as f64, self.t_max as f64, self.eta_min);
        if c.initial {
            scaled(c.cur, 1.0, lrs);
        } else if c.step_count == 1 && c.epoch > 0 {
            from_base(
                c.base_lrs,
                |b| eta + (b - eta) * (1.0 + (e * PI / t).cos()) / 2.0,
                lrs,
            );
        } else if (i128::from(c.epoch) - 1 - i128::from(self.t_max))
            .rem_euclid(2 * i128::from(self.t_max))
            == 0
        {
            lrs.extend(
                c.cur
                    .iter()
                    .zip(c.base_lrs)
                    .map(|(lr, b)| lr + (b - eta) * (1.0 - (PI / t).cos()) / 2.0),
            );
        } else {
            let f = (1.0 + (PI * e / t).cos()) / (1.0 + (PI * (e - 1.0) / t).cos());
            lrs.extend(c.cur.iter().map(|lr| f * (lr - eta) + eta));
        }
        Ok(())
    }
    fn closed_form(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>) -> bool {
        let (e, t, eta) = (c.epoch as f64, self.t_max as f64, self.eta_min);
        from_base(
            c.base_lrs,
            |b| eta + (b - eta) * (1.0 + (PI * e / t).cos()) / 2.0,
            lrs,
        );
        true
    }
}

/// [`LambdaLR`]'s rule: the closure.
pub struct LambdaRule {
    f: Box<dyn Fn(i64) -> f64 + Send>,
}

impl std::fmt::Debug for LambdaRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LambdaRule(<closure>)")
    }
}

/// `LambdaLR`: the base lr times `f(epoch)`, the same closure for every group.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{LambdaLR, LrScheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = LambdaLR::new(&mut opt, |e| 1.0 / (1 + e) as f64)?;
/// s.step(&mut opt)?;
/// assert!((opt.lr() - 0.05).abs() < 1e-15);
/// # Ok::<(), nn::Error>(())
/// ```
pub type LambdaLR = Scheduler<LambdaRule>;

impl LambdaLR {
    /// PyTorch's `LambdaLR(optimizer, lr_lambda)`; a factor that is NaN, infinite or
    /// negative makes that step an error.
    pub fn new(
        opt: &mut dyn Optimizer,
        f: impl Fn(i64) -> f64 + Send + 'static,
    ) -> Result<LambdaLR> {
        Scheduler::build(opt, LambdaRule { f: Box::new(f) })
    }
}

impl Rule for LambdaRule {
    const NAME: &'static str = "LambdaLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        let k = (self.f)(c.epoch);
        from_base(c.base_lrs, |b| b * k, lrs);
        Ok(())
    }
}
