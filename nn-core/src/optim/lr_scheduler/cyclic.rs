//! The schedules that compute the lr from the epoch alone, cycling it (and the
//! momentum): [`OneCycleLR`], [`CyclicLR`], [`CosineAnnealingWarmRestarts`].

use super::{bad, nonneg, per_group, read_int, steps, Ctx, Rule, Scheduler};
use crate::optim::Optimizer;
use crate::{Error, Result, StateDict};
use std::f64::consts::PI;

/// How [`OneCycleLR`] moves between two values.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{AnnealStrategy, OneCycleLR};
/// let mut b = OneCycleLR::builder(&[0.1], 100);
/// b.anneal_strategy = AnnealStrategy::Linear;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnealStrategy {
    /// Half a cosine (PyTorch's `"cos"`, the default).
    Cos,
    /// A straight line (`"linear"`).
    Linear,
}

impl AnnealStrategy {
    fn anneal(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            AnnealStrategy::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            AnnealStrategy::Linear => (end - start) * pct + start,
        }
    }
}

/// Which per-group value a phase starts or ends at.
#[derive(Debug, Clone, Copy)]
enum Level {
    Initial,
    Max,
    Min,
}

#[derive(Debug, Clone, Copy)]
struct Phase {
    end_step: f64,
    lr: (Level, Level),
    /// `true`: from max to base momentum; `false`: base to max; `None`: stays at max.
    mom: (Level, Level),
}

/// [`OneCycleLR`]'s rule and parameters.
#[derive(Debug, Clone)]
pub struct OneCycleRule {
    total_steps: i64,
    phases: Vec<Phase>,
    anneal: AnnealStrategy,
    initial_lr: Vec<f64>,
    max_lr: Vec<f64>,
    min_lr: Vec<f64>,
    /// `(base, max)` momentum per group when cycling.
    momentum: Option<(Vec<f64>, Vec<f64>)>,
}

/// `OneCycleLR`: the 1cycle policy: from `max_lr / div_factor` up to `max_lr` over
/// `pct_start` of the steps, then down to `initial / final_div_factor`; the momentum
/// cycles the other way. Stepping past `total_steps` is an error, as in PyTorch.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{LrScheduler, OneCycleLR};
/// use nn::optim::{Optimizer, Sgd, SgdConfig};
/// use nn::{Linear, ModuleExt};
/// let cfg = SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() };
/// let mut opt = Sgd::new(Linear::new(2, 1).parameters(), cfg)?;
/// let mut s = OneCycleLR::builder(&[1.0], 10).build(&mut opt)?;
/// assert!((opt.lr() - 0.04).abs() < 1e-15);
/// for _ in 0..10 { s.step(&mut opt)?; }
/// assert!(s.step(&mut opt).is_err());
/// # Ok::<(), nn::Error>(())
/// ```
pub type OneCycleLR = Scheduler<OneCycleRule>;

/// The arguments of [`OneCycleLR`], PyTorch's defaults preset.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::OneCycleLR;
/// use nn::optim::{Sgd, SgdConfig};
/// use nn::{Linear, ModuleExt};
/// let cfg = SgdConfig { momentum: 0.9, ..Default::default() };
/// let mut opt = Sgd::new(Linear::new(2, 1).parameters(), cfg)?;
/// let mut b = OneCycleLR::builder(&[0.1], 100);
/// b.three_phase = true;
/// let s = b.build(&mut opt)?;
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OneCycleBuilder {
    /// One value, or one per group.
    pub max_lr: Vec<f64>,
    /// Total steps of the cycle.
    pub total_steps: usize,
    /// Fraction of the steps spent increasing the lr (0.3).
    pub pct_start: f64,
    /// Cosine or linear annealing (cosine).
    pub anneal_strategy: AnnealStrategy,
    /// Cycle the momentum (or `betas.0`) inversely (true).
    pub cycle_momentum: bool,
    /// Lowest momentum, one value or one per group (0.85).
    pub base_momentum: Vec<f64>,
    /// Highest momentum (0.95).
    pub max_momentum: Vec<f64>,
    /// `initial_lr = max_lr / div_factor` (25).
    pub div_factor: f64,
    /// `min_lr = initial_lr / final_div_factor` (1e4).
    pub final_div_factor: f64,
    /// The three-phase schedule of fast.ai (false).
    pub three_phase: bool,
}

impl OneCycleLR {
    /// The arguments with PyTorch's defaults for `max_lr` (one value or one per group)
    /// over `total_steps`; change fields, then [`OneCycleBuilder::build`].
    pub fn builder(max_lr: &[f64], total_steps: usize) -> OneCycleBuilder {
        OneCycleBuilder {
            max_lr: max_lr.to_vec(),
            total_steps,
            pct_start: 0.3,
            anneal_strategy: AnnealStrategy::Cos,
            cycle_momentum: true,
            base_momentum: vec![0.85],
            max_momentum: vec![0.95],
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }
}

impl OneCycleBuilder {
    /// The schedule over `opt`: sets the groups' `initial_lr` (and momentum), then the
    /// lr of step 0.
    pub fn build(self, opt: &mut dyn Optimizer) -> Result<OneCycleLR> {
        const N: &str = "OneCycleLR";
        if self.total_steps == 0 {
            return Err(bad(N, "total_steps", 0, "must be positive"));
        }
        if !(0.0..=1.0).contains(&self.pct_start) {
            return Err(bad(N, "pct_start", self.pct_start, "must be in [0, 1]"));
        }
        nonneg(N, "div_factor", self.div_factor)?;
        nonneg(N, "final_div_factor", self.final_div_factor)?;
        if self.div_factor == 0.0 || self.final_div_factor == 0.0 {
            return Err(bad(
                N,
                "div_factor",
                self.div_factor,
                "div factors must be positive",
            ));
        }
        let n = opt.num_groups();
        let max_lr = per_group(N, "max_lr", &self.max_lr, n)?;
        for &x in &max_lr {
            nonneg(N, "max_lr", x)?;
        }
        let initial_lr: Vec<f64> = max_lr.iter().map(|m| m / self.div_factor).collect();
        let min_lr: Vec<f64> = initial_lr
            .iter()
            .map(|i| i / self.final_div_factor)
            .collect();
        let total = self.total_steps as f64;
        let p = self.pct_start;
        use Level::*;
        let phases = if self.three_phase {
            vec![
                Phase {
                    end_step: p * total - 1.0,
                    lr: (Initial, Max),
                    mom: (Max, Initial),
                },
                Phase {
                    end_step: 2.0 * p * total - 2.0,
                    lr: (Max, Initial),
                    mom: (Initial, Max),
                },
                Phase {
                    end_step: total - 1.0,
                    lr: (Initial, Min),
                    mom: (Max, Max),
                },
            ]
        } else {
            vec![
                Phase {
                    end_step: p * total - 1.0,
                    lr: (Initial, Max),
                    mom: (Max, Initial),
                },
                Phase {
                    end_step: total - 1.0,
                    lr: (Max, Min),
                    mom: (Initial, Max),
                },
            ]
        };
        let momentum = if self.cycle_momentum {
            if opt.group_momentum(0).is_none() && n > 0 {
                return Err(bad(
                    N,
                    "cycle_momentum",
                    true,
                    "the optimizer has no momentum or betas",
                ));
            }
            let base = per_group(N, "base_momentum", &self.base_momentum, n)?;
            let max = per_group(N, "max_momentum", &self.max_momentum, n)?;
            for &x in base.iter().chain(&max) {
                nonneg(N, "momentum", x)?;
            }
            Some((base, max))
        } else {
            None
        };
        let rule = OneCycleRule {
            total_steps: steps(N, "total_steps", self.total_steps)?,
            phases,
            anneal: self.anneal_strategy,
            initial_lr: initial_lr.clone(),
            max_lr,
            min_lr,
            momentum,
        };
        // what PyTorch writes into the groups before its first step, undone on error
        let saved: Vec<(Option<f64>, Option<f64>)> = (0..n)
            .map(|g| (opt.group_initial_lr(g), opt.group_momentum(g)))
            .collect();
        let r = (|| {
            for (g, lr) in initial_lr.iter().enumerate() {
                opt.set_group_initial_lr(g, Some(*lr))?;
                if let Some((_, max)) = &rule.momentum {
                    opt.set_group_momentum(g, max[g])?;
                }
            }
            Scheduler::build(opt, rule)
        })();
        if r.is_err() {
            for (g, (lr, m)) in saved.into_iter().enumerate() {
                let _ = opt.set_group_initial_lr(g, lr);
                if let Some(m) = m {
                    let _ = opt.set_group_momentum(g, m);
                }
            }
        }
        r
    }
}

impl OneCycleRule {
    fn level(&self, l: Level, g: usize) -> f64 {
        match l {
            Level::Initial => self.initial_lr[g],
            Level::Max => self.max_lr[g],
            Level::Min => self.min_lr[g],
        }
    }
}

impl Rule for OneCycleRule {
    const NAME: &'static str = "OneCycleLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, moms: &mut Vec<f64>) -> Result<()> {
        let step = c.epoch;
        if step > self.total_steps {
            return Err(Error::invalid_config(
                "OneCycleLR.step",
                "step",
                step,
                format!(
                    "Tried to step {step} times. The specified number of total steps is {}",
                    self.total_steps
                ),
            ));
        }
        let s = step as f64;
        for g in 0..c.cur.len() {
            let mut start = 0.0;
            for (i, ph) in self.phases.iter().enumerate() {
                if s <= ph.end_step || i == self.phases.len() - 1 {
                    let pct = (s - start) / (ph.end_step - start);
                    lrs.push(self.anneal.anneal(
                        self.level(ph.lr.0, g),
                        self.level(ph.lr.1, g),
                        pct,
                    ));
                    if let Some((base, max)) = &self.momentum {
                        // Initial stands for base momentum, Max for max momentum
                        let m = |l: Level| match l {
                            Level::Max => max[g],
                            _ => base[g],
                        };
                        moms.push(self.anneal.anneal(m(ph.mom.0), m(ph.mom.1), pct));
                    }
                    break;
                }
                start = ph.end_step;
            }
        }
        Ok(())
    }
}

/// The scaling of [`CyclicLR`]'s amplitude.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::CyclicMode;
/// let m = CyclicMode::ExpRange { gamma: 0.99 };
/// assert_ne!(m, CyclicMode::Triangular);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CyclicMode {
    /// Constant amplitude.
    Triangular,
    /// Amplitude halved every cycle.
    Triangular2,
    /// Amplitude times `gamma^iterations`.
    ExpRange {
        /// The decay per iteration.
        gamma: f64,
    },
}

/// [`CyclicLR`]'s rule and parameters.
#[derive(Debug, Clone)]
pub struct CyclicRule {
    max_lrs: Vec<f64>,
    total_size: f64,
    step_ratio: f64,
    mode: CyclicMode,
    momentum: Option<(Vec<f64>, Vec<f64>)>,
}

/// `CyclicLR`: the lr cycles between `base_lr` and `max_lr` (up `step_size_up` steps,
/// down `step_size_down`), the momentum inversely between `max_momentum` and
/// `base_momentum` (PyTorch's defaults 0.9 and 0.8) when `cycle_momentum`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{CyclicLR, CyclicMode, LrScheduler};
/// use nn::optim::{Optimizer, Sgd, SgdConfig};
/// use nn::{Linear, ModuleExt};
/// let cfg = SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() };
/// let mut opt = Sgd::new(Linear::new(2, 1).parameters(), cfg)?;
/// let mut s = CyclicLR::new(&mut opt, &[0.01], &[0.1], 2, None, CyclicMode::Triangular, true)?;
/// for _ in 0..2 { s.step(&mut opt)?; }
/// assert!((opt.lr() - 0.1).abs() < 1e-12);
/// # Ok::<(), nn::Error>(())
/// ```
pub type CyclicLR = Scheduler<CyclicRule>;

impl CyclicLR {
    /// PyTorch's `CyclicLR(optimizer, base_lr, max_lr, step_size_up, step_size_down,
    /// mode, cycle_momentum=...)` with `base_momentum` 0.8 and `max_momentum` 0.9;
    /// `base_lr` and `max_lr` one value or one per group.
    pub fn new(
        opt: &mut dyn Optimizer,
        base_lr: &[f64],
        max_lr: &[f64],
        step_size_up: usize,
        step_size_down: Option<usize>,
        mode: CyclicMode,
        cycle_momentum: bool,
    ) -> Result<CyclicLR> {
        Self::with_momentum(
            opt,
            base_lr,
            max_lr,
            step_size_up,
            step_size_down,
            mode,
            cycle_momentum.then_some((&[0.8][..], &[0.9][..])),
        )
    }

    /// [`CyclicLR::new`] with the momentum range `(base_momentum, max_momentum)`
    /// (`None`: no momentum cycling).
    #[allow(clippy::too_many_arguments)]
    pub fn with_momentum(
        opt: &mut dyn Optimizer,
        base_lr: &[f64],
        max_lr: &[f64],
        step_size_up: usize,
        step_size_down: Option<usize>,
        mode: CyclicMode,
        momentum: Option<(&[f64], &[f64])>,
    ) -> Result<CyclicLR> {
        const N: &str = "CyclicLR";
        let n = opt.num_groups();
        let base = per_group(N, "base_lr", base_lr, n)?;
        let max_lrs = per_group(N, "max_lr", max_lr, n)?;
        for &x in base.iter().chain(&max_lrs) {
            nonneg(N, "lr", x)?;
        }
        if let CyclicMode::ExpRange { gamma } = mode {
            nonneg(N, "gamma", gamma)?;
        }
        let up = step_size_up as f64;
        let down = step_size_down.map(|d| d as f64).unwrap_or(up);
        if up + down <= 0.0 {
            return Err(bad(
                N,
                "step_size_up",
                step_size_up,
                "the cycle must have a length",
            ));
        }
        let momentum = match momentum {
            Some((b, m)) => {
                if opt.group_momentum(0).is_none() && n > 0 {
                    return Err(bad(
                        N,
                        "cycle_momentum",
                        true,
                        "the optimizer has no momentum or betas",
                    ));
                }
                let (b, m) = (
                    per_group(N, "base_momentum", b, n)?,
                    per_group(N, "max_momentum", m, n)?,
                );
                for &x in b.iter().chain(&m) {
                    nonneg(N, "momentum", x)?;
                }
                Some((b, m))
            }
            None => None,
        };
        let rule = CyclicRule {
            max_lrs,
            total_size: up + down,
            step_ratio: up / (up + down),
            mode,
            momentum,
        };
        let saved: Vec<(Option<f64>, Option<f64>)> = (0..n)
            .map(|g| (opt.group_lr(g), opt.group_momentum(g)))
            .collect();
        let r = (|| {
            for (g, lr) in base.iter().enumerate() {
                opt.set_group_lr(g, *lr)?;
                if let Some((_, max)) = &rule.momentum {
                    opt.set_group_momentum(g, max[g])?;
                }
            }
            let mut s = Scheduler::build(opt, rule)?;
            *s.base_lrs_mut() = base.clone();
            Ok(s)
        })();
        if r.is_err() {
            for (g, (lr, m)) in saved.into_iter().enumerate() {
                if let Some(lr) = lr {
                    let _ = opt.set_group_lr(g, lr);
                }
                if let Some(m) = m {
                    let _ = opt.set_group_momentum(g, m);
                }
            }
        }
        r
    }
}

impl Rule for CyclicRule {
    const NAME: &'static str = "CyclicLR";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, moms: &mut Vec<f64>) -> Result<()> {
        let e = c.epoch as f64;
        let cycle = (1.0 + e / self.total_size).floor();
        let x = 1.0 + e / self.total_size - cycle;
        let scale = if x <= self.step_ratio {
            x / self.step_ratio
        } else {
            (x - 1.0) / (self.step_ratio - 1.0)
        };
        let f = match self.mode {
            CyclicMode::Triangular => 1.0,
            CyclicMode::Triangular2 => 1.0 / 2f64.powf(cycle - 1.0),
            CyclicMode::ExpRange { gamma } => gamma.powf(e),
        };
        for (b, m) in c.base_lrs.iter().zip(&self.max_lrs) {
            lrs.push(b + (m - b) * scale * f);
        }
        if let Some((base, max)) = &self.momentum {
            for (b, m) in base.iter().zip(max) {
                moms.push(m - (m - b) * scale * f);
            }
        }
        Ok(())
    }
}

/// [`CosineAnnealingWarmRestarts`]' rule and position in the current cycle.
#[derive(Debug, Clone)]
pub struct WarmRestartsRule {
    t_0: i64,
    t_mult: i64,
    eta_min: f64,
    t_i: i64,
    t_cur: i64,
}

/// `CosineAnnealingWarmRestarts` (SGDR): a cosine from the base lr to `eta_min` over
/// `t_0` epochs, restarted with cycles `t_mult` times longer each time.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{CosineAnnealingWarmRestarts, LrScheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = CosineAnnealingWarmRestarts::new(&mut opt, 4, 1, 0.0)?;
/// for _ in 0..4 { s.step(&mut opt)?; }
/// assert!((opt.lr() - 0.1).abs() < 1e-15);
/// # Ok::<(), nn::Error>(())
/// ```
pub type CosineAnnealingWarmRestarts = Scheduler<WarmRestartsRule>;

impl CosineAnnealingWarmRestarts {
    /// PyTorch's `CosineAnnealingWarmRestarts(optimizer, T_0, T_mult, eta_min)`.
    pub fn new(opt: &mut dyn Optimizer, t_0: usize, t_mult: usize, eta_min: f64) -> Result<Self> {
        const N: &str = "CosineAnnealingWarmRestarts";
        if t_0 == 0 {
            return Err(bad(N, "T_0", 0, "Expected positive integer T_0"));
        }
        if t_mult == 0 {
            return Err(bad(N, "T_mult", 0, "Expected integer T_mult >= 1"));
        }
        nonneg(N, "eta_min", eta_min)?;
        let rule = WarmRestartsRule {
            t_0: steps(N, "T_0", t_0)?,
            t_mult: steps(N, "T_mult", t_mult)?,
            eta_min,
            t_i: steps(N, "T_0", t_0)?,
            t_cur: -1,
        };
        Scheduler::build(opt, rule)
    }
}

impl WarmRestartsRule {
    /// `(T_cur, T_i)` for the context: advanced on a step, as they are on a jump.
    fn position(&self, c: &Ctx<'_>) -> (i64, i64) {
        if !c.advancing {
            return (self.t_cur, self.t_i);
        }
        if c.epoch == 0 {
            // PyTorch's first step is `step(epoch=0)`
            return (0, self.t_0);
        }
        let (mut t_cur, mut t_i) = (self.t_cur + 1, self.t_i);
        if t_cur >= t_i {
            t_cur %= t_i;
            t_i = t_i.saturating_mul(self.t_mult);
        }
        (t_cur, t_i)
    }
}

impl Rule for WarmRestartsRule {
    const NAME: &'static str = "CosineAnnealingWarmRestarts";
    fn get_lr(&self, c: &Ctx<'_>, lrs: &mut Vec<f64>, _: &mut Vec<f64>) -> Result<()> {
        let (t_cur, t_i) = self.position(c);
        let eta = self.eta_min;
        for b in c.base_lrs {
            lrs.push(eta + (b - eta) * (1.0 + (PI * t_cur as f64 / t_i as f64).cos()) / 2.0);
        }
        Ok(())
    }
    fn commit(&mut self, c: &Ctx<'_>) {
        (self.t_cur, self.t_i) = self.position(c);
    }
    fn save(&self, sd: &mut StateDict) {
        sd.insert("T_cur", super::f64_tensor(&[self.t_cur as f64], false));
        sd.insert("T_i", super::f64_tensor(&[self.t_i as f64], false));
    }
    fn load(&self, sd: &StateDict, problems: &mut Vec<String>) -> Option<Self> {
        let t_cur = read_int(sd, "T_cur", problems)?;
        let t_i = read_int(sd, "T_i", problems)?;
        if t_i <= 0 {
            problems.push(format!("`T_i`: {t_i} must be positive"));
            return None;
        }
        Some(WarmRestartsRule {
            t_cur,
            t_i,
            ..self.clone()
        })
    }
}
