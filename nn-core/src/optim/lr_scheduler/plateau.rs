//! [`ReduceLROnPlateau`]: the lr cut by a factor when a metric stops improving.

use super::{bad, f64_tensor, nonneg, per_group, read_int, read_list, read_num};
use crate::optim::Optimizer;
use crate::{Error, Result, StateDict};

/// Whether a lower or a higher metric is better.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{PlateauMode, ReduceLROnPlateau};
/// use nn::optim::Sgd;
/// use nn::{Linear, ModuleExt};
/// let opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let s = ReduceLROnPlateau::new(&opt).with_mode(PlateauMode::Max);
/// assert_eq!(s.mode, PlateauMode::Max);
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (a loss; PyTorch's default `"min"`).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How `threshold` is compared.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{ReduceLROnPlateau, ThresholdMode};
/// use nn::optim::Sgd;
/// use nn::{Linear, ModuleExt};
/// let opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = ReduceLROnPlateau::new(&opt);
/// s.threshold_mode = ThresholdMode::Abs;
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Relative to the best value (`"rel"`, the default).
    Rel,
    /// Absolute (`"abs"`).
    Abs,
}

/// `ReduceLROnPlateau`: after `patience` epochs without improvement, every group's lr
/// times `factor` (not below its `min_lr`), then `cooldown` epochs of rest. Stepped with
/// the metric; a NaN metric is an error and changes nothing.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::ReduceLROnPlateau;
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 0.1)?;
/// let mut s = ReduceLROnPlateau::new(&opt);
/// s.patience = 1;
/// for _ in 0..3 { s.step(&mut opt, 1.0)?; }
/// assert!((opt.lr() - 0.01).abs() < 1e-12);
/// assert!(s.step(&mut opt, f64::NAN).is_err());
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ReduceLROnPlateau {
    /// Lower or higher is better.
    pub mode: PlateauMode,
    /// The lr multiplier (< 1).
    pub factor: f64,
    /// Epochs without improvement tolerated.
    pub patience: i64,
    /// Smallest change that counts as an improvement.
    pub threshold: f64,
    /// Relative or absolute threshold.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction.
    pub cooldown: i64,
    /// Changes smaller than this are not made.
    pub eps: f64,
    min_lrs: Vec<f64>,
    /// The best metric so far; `None`: none yet (PyTorch's `mode_worse`).
    best: Option<f64>,
    num_bad_epochs: i64,
    cooldown_counter: i64,
    last_epoch: i64,
    last_lr: Vec<f64>,
}

impl ReduceLROnPlateau {
    /// PyTorch's defaults: mode min, factor 0.1, patience 10, threshold 1e-4 relative,
    /// cooldown 0, min_lr 0, eps 1e-8. Change the public fields before the first step.
    pub fn new(opt: &dyn Optimizer) -> ReduceLROnPlateau {
        let n = opt.num_groups();
        ReduceLROnPlateau {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            eps: 1e-8,
            min_lrs: vec![0.0; n],
            best: None,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
            last_lr: (0..n).map(|g| opt.group_lr(g).unwrap_or(0.0)).collect(),
        }
    }

    /// Sets `min_lr`: one value or one per group.
    pub fn with_min_lr(mut self, min_lr: &[f64]) -> Result<Self> {
        let v = per_group("ReduceLROnPlateau", "min_lr", min_lr, self.min_lrs.len())?;
        for &x in &v {
            nonneg("ReduceLROnPlateau", "min_lr", x)?;
        }
        self.min_lrs = v;
        Ok(self)
    }

    /// Sets the mode.
    pub fn with_mode(mut self, mode: PlateauMode) -> Self {
        self.mode = mode;
        self
    }

    fn worse(&self) -> f64 {
        match self.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        }
    }

    fn check(&self) -> Result<()> {
        const N: &str = "ReduceLROnPlateau";
        if !(0.0..1.0).contains(&self.factor) {
            return Err(bad(
                N,
                "factor",
                self.factor,
                "Factor should be < 1.0 (and >= 0)",
            ));
        }
        nonneg(N, "threshold", self.threshold)?;
        nonneg(N, "eps", self.eps)?;
        if self.patience < 0 || self.cooldown < 0 {
            return Err(bad(
                N,
                "patience",
                self.patience,
                "patience and cooldown must be >= 0",
            ));
        }
        Ok(())
    }

    fn is_better(&self, a: f64, best: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (self.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + self.threshold,
        }
    }

    /// One epoch with its metric; reduces the lrs when the patience runs out.
    pub fn step(&mut self, opt: &mut dyn Optimizer, metric: f64) -> Result<()> {
        if metric.is_nan() {
            return Err(Error::invalid_config(
                "ReduceLROnPlateau.step",
                "metric",
                metric,
                "is NaN",
            ));
        }
        self.check()?;
        let n = opt.num_groups();
        if n != self.min_lrs.len() {
            return Err(bad(
                "ReduceLROnPlateau",
                "param groups",
                n,
                &format!("built for {} groups", self.min_lrs.len()),
            ));
        }
        let epoch = self.last_epoch + 1;
        let mut best = self.best.unwrap_or_else(|| self.worse());
        let (mut bad_epochs, mut cooldown) = (self.num_bad_epochs, self.cooldown_counter);
        if self.is_better(metric, best) {
            best = metric;
            bad_epochs = 0;
        } else {
            bad_epochs += 1;
        }
        if cooldown > 0 {
            cooldown -= 1;
            bad_epochs = 0;
        }
        if bad_epochs > self.patience {
            for g in 0..n {
                let old = opt.group_lr(g).unwrap_or(0.0);
                let new = (old * self.factor).max(self.min_lrs[g]);
                if old - new > self.eps {
                    opt.set_group_lr(g, new)?;
                }
            }
            cooldown = self.cooldown;
            bad_epochs = 0;
        }
        self.best = Some(best);
        self.num_bad_epochs = bad_epochs;
        self.cooldown_counter = cooldown;
        self.last_epoch = epoch;
        self.last_lr.clear();
        for g in 0..n {
            self.last_lr.push(opt.group_lr(g).unwrap_or(0.0));
        }
        Ok(())
    }

    /// The lrs after the last step.
    pub fn get_last_lr(&self) -> &[f64] {
        &self.last_lr
    }

    /// Epochs stepped.
    pub fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    /// The progress in PyTorch's keys (`best`, `num_bad_epochs`, `cooldown_counter`,
    /// `last_epoch`, `_last_lr`).
    pub fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        sd.insert(
            "best",
            f64_tensor(&[self.best.unwrap_or_else(|| self.worse())], false),
        );
        sd.insert(
            "num_bad_epochs",
            f64_tensor(&[self.num_bad_epochs as f64], false),
        );
        sd.insert(
            "cooldown_counter",
            f64_tensor(&[self.cooldown_counter as f64], false),
        );
        sd.insert("last_epoch", f64_tensor(&[self.last_epoch as f64], false));
        sd.insert("_last_lr", f64_tensor(&self.last_lr, true));
        sd
    }

    /// Restores [`ReduceLROnPlateau::state_dict`]'s output; nothing changes on error.
    pub fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let mut p = Vec::new();
        let best = read_num(sd, "best", &mut p);
        let bad_epochs = read_int(sd, "num_bad_epochs", &mut p);
        let cooldown = read_int(sd, "cooldown_counter", &mut p);
        let epoch = read_int(sd, "last_epoch", &mut p);
        let last_lr = read_list(sd, "_last_lr", self.last_lr.len(), &mut p);
        crate::optim::problems_to_result("ReduceLROnPlateau", p)?;
        if let (Some(b), Some(n), Some(c), Some(e), Some(l)) =
            (best, bad_epochs, cooldown, epoch, last_lr)
        {
            (
                self.best,
                self.num_bad_epochs,
                self.cooldown_counter,
                self.last_epoch,
                self.last_lr,
            ) = (Some(b), n, c, e, l);
        }
        Ok(())
    }
}
