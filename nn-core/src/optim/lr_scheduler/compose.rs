//! Schedules made of schedules: [`SequentialLR`] (one after the other, switching at
//! milestones) and [`ChainedScheduler`] (all at once, their factors multiplying).

use super::{bad, f64_tensor, read_int, read_list, steps, LrScheduler};
use crate::optim::Optimizer;
use crate::{Result, StateDict};

/// Copies the entries of `sd` under `{prefix}.` into a new state dict, prefix removed.
fn sub(sd: &StateDict, prefix: &str) -> StateDict {
    crate::io::select(sd, prefix, "")
}

/// Adds `child`'s entries to `sd` under `{prefix}.`.
fn nest(sd: &mut StateDict, prefix: &str, child: StateDict) {
    for (k, t) in child.iter() {
        sd.insert(format!("{prefix}.{k}"), t.clone());
    }
}

/// `SequentialLR`: `schedulers[i]` runs from `milestones[i - 1]` on; at a milestone the
/// next one starts from its epoch 0.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{ConstantLR, ExponentialLR, LrScheduler, SequentialLR};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 1.0)?;
/// let a = ConstantLR::new(&mut opt, 0.1, 2)?;
/// let b = ExponentialLR::new(&mut opt, 0.5)?;
/// let mut s = SequentialLR::new(&mut opt, vec![Box::new(a), Box::new(b)], &[2])?;
/// assert!((opt.lr() - 0.1).abs() < 1e-15);
/// for _ in 0..3 { s.step(&mut opt)?; }
/// assert!((opt.lr() - 0.5).abs() < 1e-15);
/// # Ok::<(), nn::Error>(())
/// ```
pub struct SequentialLR {
    schedulers: Vec<Box<dyn LrScheduler>>,
    milestones: Vec<i64>,
    last_epoch: i64,
    last_lr: Vec<f64>,
}

impl std::fmt::Debug for SequentialLR {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequentialLR")
            .field("milestones", &self.milestones)
            .field("last_epoch", &self.last_epoch)
            .field("last_lr", &self.last_lr)
            .finish_non_exhaustive()
    }
}

impl SequentialLR {
    /// PyTorch's `SequentialLR(optimizer, schedulers, milestones)`: the schedulers were
    /// built on `opt`; the groups' lrs go back to `initial_lr` and the first scheduler
    /// takes its first step again.
    pub fn new(
        opt: &mut dyn Optimizer,
        mut schedulers: Vec<Box<dyn LrScheduler>>,
        milestones: &[usize],
    ) -> Result<SequentialLR> {
        const N: &str = "SequentialLR";
        if schedulers.is_empty() {
            return Err(bad(N, "schedulers", 0, "expects at least one scheduler"));
        }
        if milestones.len() + 1 != schedulers.len() {
            return Err(bad(
                N,
                "milestones",
                milestones.len(),
                &format!(
                    "expects one fewer milestone than schedulers ({})",
                    schedulers.len()
                ),
            ));
        }
        let milestones = milestones
            .iter()
            .map(|&m| steps("SequentialLR", "milestones", m))
            .collect::<Result<Vec<i64>>>()?;
        let n = opt.num_groups();
        let mut initial = Vec::with_capacity(n);
        for g in 0..n {
            match opt.group_initial_lr(g) {
                Some(lr) => initial.push(lr),
                None => {
                    return Err(bad(
                        N,
                        "initial_lr",
                        g,
                        "a group has no initial_lr: build the schedulers on this optimizer first",
                    ))
                }
            }
        }
        let saved: Vec<f64> = (0..n).map(|g| opt.group_lr(g).unwrap_or(0.0)).collect();
        for (g, lr) in initial.iter().enumerate() {
            opt.set_group_lr(g, *lr)?;
        }
        for s in &mut schedulers {
            s.undo();
        }
        let idx = milestones.partition_point(|&m| m <= 0);
        if let Err(e) = schedulers[idx].initial_step(opt) {
            for (g, lr) in saved.iter().enumerate() {
                let _ = opt.set_group_lr(g, *lr);
            }
            return Err(e);
        }
        let last_lr = schedulers[idx].get_last_lr().to_vec();
        Ok(SequentialLR {
            schedulers,
            milestones,
            last_epoch: 0,
            last_lr,
        })
    }
}

impl LrScheduler for SequentialLR {
    fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        let epoch = self.last_epoch + 1;
        let idx = self.milestones.partition_point(|&m| m <= epoch);
        let s = &mut self.schedulers[idx];
        if idx > 0 && self.milestones[idx - 1] == epoch {
            s.update_lr_at(opt, 0)?;
        } else {
            s.step(opt)?;
        }
        self.last_epoch = epoch;
        self.last_lr.clear();
        self.last_lr.extend_from_slice(s.get_last_lr());
        Ok(())
    }
    fn get_last_lr(&self) -> &[f64] {
        &self.last_lr
    }
    fn last_epoch(&self) -> i64 {
        self.last_epoch
    }
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        let m: Vec<f64> = self.milestones.iter().map(|&m| m as f64).collect();
        sd.insert("_milestones", f64_tensor(&m, true));
        sd.insert("last_epoch", f64_tensor(&[self.last_epoch as f64], false));
        sd.insert("_last_lr", f64_tensor(&self.last_lr, true));
        for (k, s) in self.schedulers.iter().enumerate() {
            nest(&mut sd, &format!("_schedulers.{k}"), s.state_dict());
        }
        sd
    }
    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let mut problems = Vec::new();
        let last_epoch = read_int(sd, "last_epoch", &mut problems);
        let last_lr = read_list(sd, "_last_lr", self.last_lr.len(), &mut problems);
        crate::optim::problems_to_result("SequentialLR", problems)?;
        load_children(&mut self.schedulers, sd)?;
        if let (Some(e), Some(l)) = (last_epoch, last_lr) {
            self.last_epoch = e;
            self.last_lr = l;
        }
        Ok(())
    }
    fn undo(&mut self) {
        for s in &mut self.schedulers {
            s.undo();
        }
    }
    fn initial_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.step(opt)
    }
    fn update_lr_at(&mut self, _opt: &mut dyn Optimizer, epoch: i64) -> Result<()> {
        Err(bad(
            "SequentialLR",
            "epoch",
            epoch,
            "a SequentialLR cannot jump to an epoch (PyTorch's has no get_lr)",
        ))
    }
}

/// Loads every child from `_schedulers.{k}.`; on any error none is changed (each
/// child's state is checked on a dry run first, by loading into it then restoring).
fn load_children(children: &mut [Box<dyn LrScheduler>], sd: &StateDict) -> Result<()> {
    let before: Vec<StateDict> = children.iter().map(|s| s.state_dict()).collect();
    for (k, s) in children.iter_mut().enumerate() {
        if let Err(e) = s.load_state_dict(&sub(sd, &format!("_schedulers.{k}"))) {
            for (s, b) in children.iter_mut().zip(&before).take(k) {
                let _ = s.load_state_dict(b);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// `ChainedScheduler`: every scheduler steps at every step, their effects composing.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::lr_scheduler::{ChainedScheduler, ConstantLR, ExponentialLR, LrScheduler};
/// use nn::optim::{Optimizer, Sgd};
/// use nn::{Linear, ModuleExt};
/// let mut opt = Sgd::with_lr(Linear::new(2, 1).parameters(), 1.0)?;
/// let a = ConstantLR::new(&mut opt, 0.5, 5)?;
/// let b = ExponentialLR::new(&mut opt, 0.9)?;
/// let mut s = ChainedScheduler::new(&mut opt, vec![Box::new(a), Box::new(b)])?;
/// s.step(&mut opt)?;
/// assert!((opt.lr() - 0.45).abs() < 1e-12);
/// # Ok::<(), nn::Error>(())
/// ```
pub struct ChainedScheduler {
    schedulers: Vec<Box<dyn LrScheduler>>,
    last_lr: Vec<f64>,
}

impl std::fmt::Debug for ChainedScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainedScheduler")
            .field("last_lr", &self.last_lr)
            .finish_non_exhaustive()
    }
}

impl ChainedScheduler {
    /// PyTorch's `ChainedScheduler(schedulers)`, the schedulers built on `opt`.
    pub fn new(opt: &mut dyn Optimizer, schedulers: Vec<Box<dyn LrScheduler>>) -> Result<Self> {
        if schedulers.is_empty() {
            return Err(bad(
                "ChainedScheduler",
                "schedulers",
                0,
                "expects at least one scheduler",
            ));
        }
        let last_lr = (0..opt.num_groups())
            .map(|g| opt.group_lr(g).unwrap_or(0.0))
            .collect();
        Ok(ChainedScheduler {
            schedulers,
            last_lr,
        })
    }
}

impl LrScheduler for ChainedScheduler {
    fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        for s in &mut self.schedulers {
            s.step(opt)?;
        }
        self.last_lr.clear();
        for g in 0..opt.num_groups() {
            self.last_lr.push(opt.group_lr(g).unwrap_or(0.0));
        }
        Ok(())
    }
    fn get_last_lr(&self) -> &[f64] {
        &self.last_lr
    }
    fn last_epoch(&self) -> i64 {
        self.schedulers.first().map_or(0, |s| s.last_epoch())
    }
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        sd.insert("_last_lr", f64_tensor(&self.last_lr, true));
        for (k, s) in self.schedulers.iter().enumerate() {
            nest(&mut sd, &format!("_schedulers.{k}"), s.state_dict());
        }
        sd
    }
    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let mut problems = Vec::new();
        let last_lr = read_list(sd, "_last_lr", self.last_lr.len(), &mut problems);
        crate::optim::problems_to_result("ChainedScheduler", problems)?;
        load_children(&mut self.schedulers, sd)?;
        if let Some(l) = last_lr {
            self.last_lr = l;
        }
        Ok(())
    }
    fn undo(&mut self) {
        for s in &mut self.schedulers {
            s.undo();
        }
    }
    fn initial_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.step(opt)
    }
    fn update_lr_at(&mut self, _opt: &mut dyn Optimizer, epoch: i64) -> Result<()> {
        Err(bad(
            "ChainedScheduler",
            "epoch",
            epoch,
            "a ChainedScheduler cannot jump to an epoch",
        ))
    }
}
