//! Learning-rate schedules with PyTorch's names, formulas and state
//! (`torch.optim.lr_scheduler`): [`StepLR`], [`MultiStepLR`], [`ExponentialLR`],
//! [`CosineAnnealingLR`], [`CosineAnnealingWarmRestarts`], [`LinearLR`], [`ConstantLR`],
//! [`PolynomialLR`], [`OneCycleLR`], [`CyclicLR`], [`LambdaLR`], [`SequentialLR`],
//! [`ChainedScheduler`] and [`ReduceLROnPlateau`].
//!
//! A scheduler does not hold its optimizer (Rust's borrow rules would lock it): it is
//! built on one, as in PyTorch (which records `initial_lr` in every group and sets the
//! lr for epoch 0), and `step(&mut opt)` is given it after each `opt.step()`. The lrs
//! follow PyTorch's own recurrences (`get_lr`, "chainable" form), not the closed forms,
//! so they equal PyTorch's to the last bits and schedules compose as PyTorch's do.
//!
//! `state_dict()` holds the progress in PyTorch's keys (`last_epoch`, `_step_count`,
//! `base_lrs`, `_last_lr`, ...; nested schedulers under `_schedulers.{k}.`), as
//! [`super::from_torch`] reads them from a PyTorch checkpoint; the hyper-parameters live
//! in code. A step allocates nothing per parameter (one lr per group).
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, LrScheduler, SequentialLR};
//! use nn::optim::{AdamW, AdamWConfig, Optimizer};
//! use nn::{Linear, ModuleExt};
//! let net = Linear::new(4, 2);
//! let mut opt = AdamW::new(net.parameters(), AdamWConfig { lr: 0.1, ..Default::default() })?;
//! let warmup = LinearLR::new(&mut opt, 0.1, 1.0, 5)?;
//! let cosine = CosineAnnealingLR::new(&mut opt, 95, 0.0)?;
//! let mut sched = SequentialLR::new(&mut opt, vec![Box::new(warmup), Box::new(cosine)], &[5])?;
//! for _ in 0..10 {
//!     opt.step()?;
//!     sched.step(&mut opt)?;
//! }
//! assert_eq!(sched.get_last_lr().len(), 1);
//! # Ok::<(), nn::Error>(())
//! ```

mod compose;
mod cyclic;
mod plateau;
mod rules;

pub use compose::{ChainedScheduler, SequentialLR};
pub use cyclic::{
    AnnealStrategy, CosineAnnealingWarmRestarts, CyclicLR, CyclicMode, CyclicRule, OneCycleBuilder,
    OneCycleLR, OneCycleRule, WarmRestartsRule,
};
pub use plateau::{PlateauMode, ReduceLROnPlateau, ThresholdMode};
pub use rules::{
    ConstantLR, ConstantRule, CosineAnnealingLR, CosineRule, ExponentialLR, ExponentialRule,
    LambdaLR, LambdaRule, LinearLR, LinearRule, MultiStepLR, MultiStepRule, PolynomialLR,
    PolynomialRule, StepLR, StepRule,
};

use super::group::{f64_tensor, read_f64s};
use super::Optimizer;
use crate::{Error, Result, StateDict};

/// A learning-rate schedule stepped once per optimizer step (or epoch).
pub trait LrScheduler: Send {
    /// Advances the schedule by one and sets the groups' lrs (and momenta, for the
    /// cyclic schedules) in `opt`. On error nothing has changed.
    fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()>;
    /// The lrs of the groups after the last step (PyTorch's `get_last_lr()`).
    fn get_last_lr(&self) -> &[f64];
    /// Steps taken: 0 right after construction (PyTorch's `last_epoch`).
    fn last_epoch(&self) -> i64;
    /// The progress, in PyTorch's keys.
    fn state_dict(&self) -> StateDict;
    /// Restores [`LrScheduler::state_dict`]'s output (or a PyTorch scheduler's state
    /// read by [`super::from_torch`]); nothing changes on error.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;
    /// SequentialLR's `recursive_undo`: one step back without touching the lrs.
    #[doc(hidden)]
    fn undo(&mut self);
    /// PyTorch's `_initial_step`: the step that construction takes.
    #[doc(hidden)]
    fn initial_step(&mut self, opt: &mut dyn Optimizer) -> Result<()>;
    /// PyTorch's `_update_lr(epoch)`: jump to `epoch` (closed form where there is one).
    #[doc(hidden)]
    fn update_lr_at(&mut self, opt: &mut dyn Optimizer, epoch: i64) -> Result<()>;
}

/// What a rule sees when it computes the next lrs (see [`Rule`] for an example).
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The epoch being entered (`last_epoch` after this step).
    pub epoch: i64,
    /// `_step_count` after this step.
    pub step_count: i64,
    /// Within construction's first step.
    pub initial: bool,
    /// Whether this is a `step()` (false for a jump by `update_lr_at`).
    pub advancing: bool,
    /// The groups' `initial_lr`s.
    pub base_lrs: &'a [f64],
    /// The groups' lrs now.
    pub cur: &'a [f64],
}

/// One schedule's formula (PyTorch's `get_lr`), run by [`Scheduler`]: implement it
/// for a schedule of your own.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{Ctx, LrScheduler, Rule, Scheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// /// Halves the lr every step after the first.
/// struct Halve;
/// impl Rule for Halve {
///     const NAME: &'static str = "Halve";
///     fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> nn::Result<()> {
///         let f = if c.initial { 1.0 } else { 0.5 };
///         lrs.extend(c.cur.iter().map(|lr| lr * f));
///         Ok(())
///     }
/// }
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = Scheduler::with_rule(&mut opt, Halve)?;
/// s.step(&mut opt)?;
/// assert_eq!(s.get_last_lr(), &[0.05]);
/// # Ok::<(), nn::Error>(())
/// ```
pub trait Rule: Send {
    /// PyTorch's class name, for errors.
    const NAME: &'static str;
    /// The next lrs into `lrs` (one per group), and the groups' momenta into `moms`
    /// where the rule cycles them (left empty otherwise).
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, moms: &mut Vec<f64>) -> Result<()>;
    /// The closed form at `c.epoch`, for a jump; `false` when there is none.
    fn closed_form(&self, _c: &Ctx<'_>, _lrs: &mut Vec<f64>) -> bool {
        false
    }
    /// Called after a successful step with its context (state the rule keeps itself).
    fn commit(&mut self, _c: &Ctx<'_>) {}
    /// The rule's own state entries.
    fn save(&self, _sd: &mut StateDict) {}
    /// Reads the rule's own state entries into a copy, problems into `problems`.
    fn load(&self, _sd: &StateDict, _problems: &mut Vec<String>) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// A schedule: PyTorch's `LRScheduler` base (epoch counter, base lrs, last lrs) driving
/// a [`Rule`]. The public names ([`StepLR`] ...) are this type over their rule.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{LrScheduler, StepLR};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let s = StepLR::new(&mut opt, 5, 0.5)?;
/// assert_eq!((s.base_lrs(), s.last_epoch()), (&[0.1][..], 0));
/// assert_eq!(opt.group_initial_lr(0), Some(0.1));
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Scheduler<R> {
    rule: R,
    base_lrs: Vec<f64>,
    last_epoch: i64,
    step_count: i64,
    last_lr: Vec<f64>,
    scratch: (Vec<f64>, Vec<f64>, Vec<f64>),
}

impl<R: Rule> Scheduler<R> {
    /// A schedule of your own `rule` over `opt`: PyTorch's `LRScheduler.__init__`
    /// (`last_epoch=-1`) records `initial_lr` in the groups that have none and takes the
    /// first step.
    pub fn with_rule(opt: &mut dyn Optimizer, rule: R) -> Result<Self> {
        Self::build(opt, rule)
    }

    /// [`Scheduler::with_rule`].
    pub(crate) fn build(opt: &mut dyn Optimizer, rule: R) -> Result<Self> {
        let n = opt.num_groups();
        let mut base_lrs = Vec::with_capacity(n);
        for g in 0..n {
            let lr = match opt.group_initial_lr(g) {
                Some(lr) => lr,
                None => opt.group_lr(g).unwrap_or(0.0),
            };
            base_lrs.push(lr);
        }
        let mut s = Scheduler {
            rule,
            base_lrs,
            last_epoch: -1,
            step_count: 0,
            last_lr: Vec::with_capacity(n),
            scratch: (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            ),
        };
        s.run(opt, true, true, None)?;
        for (g, lr) in s.base_lrs.iter().enumerate() {
            if opt.group_initial_lr(g).is_none() {
                opt.set_group_initial_lr(g, Some(*lr))?;
            }
        }
        Ok(s)
    }

    /// The rule's parameters.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    /// The groups' base lrs (`initial_lr`).
    pub fn base_lrs(&self) -> &[f64] {
        &self.base_lrs
    }

    pub(crate) fn base_lrs_mut(&mut self) -> &mut Vec<f64> {
        &mut self.base_lrs
    }

    /// One step (`advancing`) or a jump to `jump`: computes everything first, then
    /// writes the optimizer and the counters.
    fn run(
        &mut self,
        opt: &mut dyn Optimizer,
        advancing: bool,
        initial: bool,
        jump: Option<i64>,
    ) -> Result<()> {
        let n = opt.num_groups();
        if n != self.base_lrs.len() {
            return Err(Error::invalid_config(
                R::NAME,
                "param groups",
                n,
                format!("the scheduler was built for {} groups", self.base_lrs.len()),
            ));
        }
        let (cur, lrs, moms) = &mut self.scratch;
        cur.clear();
        for g in 0..n {
            cur.push(opt.group_lr(g).unwrap_or(0.0));
        }
        let (epoch, step_count) = match jump {
            Some(e) => (e, self.step_count),
            None => (
                self.last_epoch.saturating_add(1),
                self.step_count.saturating_add(1),
            ),
        };
        let c = Ctx {
            epoch,
            step_count,
            initial,
            advancing,
            base_lrs: &self.base_lrs,
            cur,
        };
        lrs.clear();
        moms.clear();
        if jump.is_none() || !self.rule.closed_form(&c, lrs) {
            lrs.clear();
            self.rule.get_lr(&c, lrs, moms)?;
        }
        apply(R::NAME, opt, lrs, moms)?;
        self.rule.commit(&c);
        self.last_epoch = epoch;
        self.step_count = step_count;
        self.last_lr.clear();
        self.last_lr.extend_from_slice(lrs);
        Ok(())
    }
}

/// Checks every new lr and momentum, then sets them.
pub(crate) fn apply(
    name: &'static str,
    opt: &mut dyn Optimizer,
    lrs: &[f64],
    moms: &[f64],
) -> Result<()> {
    let n = opt.num_groups();
    if lrs.len() != n || (!moms.is_empty() && moms.len() != n) {
        return Err(Error::invalid_config(
            name,
            "lrs",
            lrs.len(),
            format!("one per group ({n})"),
        ));
    }
    for &x in lrs.iter().chain(moms) {
        super::check_hyper(name, "computed lr or momentum", x)?;
    }
    for (g, &lr) in lrs.iter().enumerate() {
        opt.set_group_lr(g, lr)?;
    }
    for (g, &m) in moms.iter().enumerate() {
        opt.set_group_momentum(g, m)?;
    }
    Ok(())
}

impl<R: Rule> LrScheduler for Scheduler<R> {
    fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.run(opt, true, false, None)
    }
    fn get_last_lr(&self) -> &[f64] {
        &self.last_lr
    }
    fn last_epoch(&self) -> i64 {
        self.last_epoch
    }
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        sd.insert("base_lrs", f64_tensor(&self.base_lrs, true));
        sd.insert("last_epoch", f64_tensor(&[self.last_epoch as f64], false));
        sd.insert("_step_count", f64_tensor(&[self.step_count as f64], false));
        sd.insert("_is_initial", f64_tensor(&[0.0], false));
        sd.insert("_last_lr", f64_tensor(&self.last_lr, true));
        self.rule.save(&mut sd);
        sd
    }
    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let mut problems = Vec::new();
        let n = self.base_lrs.len();
        let base_lrs = read_list(sd, "base_lrs", n, &mut problems);
        let last_lr = read_list(sd, "_last_lr", n, &mut problems);
        let last_epoch = read_int(sd, "last_epoch", &mut problems);
        let step_count = read_int(sd, "_step_count", &mut problems);
        let rule = self.rule.load(sd, &mut problems);
        super::problems_to_result(R::NAME, problems)?;
        if let (Some(b), Some(l), Some(e), Some(s)) = (base_lrs, last_lr, last_epoch, step_count) {
            self.base_lrs = b;
            self.last_lr = l;
            self.last_epoch = e;
            self.step_count = s;
        }
        if let Some(r) = rule {
            self.rule = r;
        }
        Ok(())
    }
    fn undo(&mut self) {
        self.last_epoch -= 1;
    }
    fn initial_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        let saved = self.step_count;
        self.step_count = 0;
        let r = self.run(opt, true, true, None);
        if r.is_err() {
            self.step_count = saved;
        }
        r
    }
    fn update_lr_at(&mut self, opt: &mut dyn Optimizer, epoch: i64) -> Result<()> {
        self.run(opt, false, false, Some(epoch))
    }
}

/// A list of `n` finite numbers under `key`.
pub(crate) fn read_list(
    sd: &StateDict,
    key: &str,
    n: usize,
    problems: &mut Vec<String>,
) -> Option<Vec<f64>> {
    match sd.get(key).and_then(read_f64s) {
        Some(v) if v.len() == n && v.iter().all(|x| x.is_finite()) => Some(v),
        Some(v) => {
            problems.push(format!(
                "`{key}`: {v:?}, expected {n} finite numbers (one per group)"
            ));
            None
        }
        None => {
            problems.push(format!("`{key}` is missing or not a list of numbers"));
            None
        }
    }
}

/// A whole number under `key`.
pub(crate) fn read_int(sd: &StateDict, key: &str, problems: &mut Vec<String>) -> Option<i64> {
    read_num(sd, key, problems).and_then(|x| {
        if x.fract() == 0.0 && x.abs() < 9.0e15 {
            Some(x as i64)
        } else {
            problems.push(format!("`{key}`: {x} is not a whole number"));
            None
        }
    })
}

/// A number under `key`.
pub(crate) fn read_num(sd: &StateDict, key: &str, problems: &mut Vec<String>) -> Option<f64> {
    match sd.get(key).and_then(read_f64s).as_deref() {
        Some([x]) if !x.is_nan() => Some(*x),
        _ => {
            problems.push(format!("`{key}` is missing or not a number"));
            None
        }
    }
}

/// An error for a bad scheduler argument.
pub(crate) fn bad(
    name: &'static str,
    field: &'static str,
    v: impl std::fmt::Display,
    why: &str,
) -> Error {
    Error::invalid_config(name, field, v, why)
}

/// A step count as the schedulers' `i64` epochs: past `i64::MAX` it is an error, never
/// a count wrapped to a negative one.
pub(crate) fn steps(name: &'static str, field: &'static str, v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| bad(name, field, v, "must be at most i64::MAX"))
}

/// `v` finite and non-negative.
pub(crate) fn nonneg(name: &'static str, field: &'static str, v: f64) -> Result<()> {
    super::check_hyper(name, field, v)
}

/// One value per group: `v` repeated, or the list checked against the group count.
pub(crate) fn per_group(
    name: &'static str,
    field: &'static str,
    v: &[f64],
    n: usize,
) -> Result<Vec<f64>> {
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        k if k == n => Ok(v.to_vec()),
        k => Err(bad(
            name,
            field,
            format!("{k} values"),
            &format!("give 1 or one per group ({n})"),
        )),
    }
}
