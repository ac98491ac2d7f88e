//! The training recipe behind `--optimizer`, `--weight-decay`, `--scheduler`,
//! `--warmup-steps`, `--schedule-epochs`, `--clip-grad-norm`, `--label-smoothing` and
//! `--ema`: PyTorch's pieces (`torch.optim`, `lr_scheduler`, `clip_grad_norm_`,
//! `F.cross_entropy(label_smoothing=)`, `swa_utils.AveragedModel`) put together as a
//! PyTorch script would. With no flag given it is the job's original loop: Adam, a
//! constant lr, plain cross-entropy, no clipping, no average.

use crate::model::Net;
use nn::functional as F;
use nn::io::TrainingCheckpoint;
use nn::optim::lr_scheduler::{
    CosineAnnealingLR, LinearLR, LrScheduler, OneCycleLR, SequentialLR, StepLR,
};
use nn::optim::swa_utils::{get_ema_multi_avg_fn, AveragedModel};
use nn::optim::{Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
use nn::{Error, Forward, LoadOptions, ModuleExt, Param, Reduction, Result, Tensor};
use std::fmt;

/// `--optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    /// `torch.optim.Adam` (L2 weight decay).
    #[default]
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay, default 0.01).
    AdamW,
    /// `torch.optim.SGD` with momentum 0.9.
    Sgd,
}

/// `--scheduler`, stepped after every optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerKind {
    /// A constant lr (after the warmup, if any).
    #[default]
    None,
    /// `CosineAnnealingLR` down to 0 over the schedule.
    Cosine,
    /// `OneCycleLR` with `max_lr = --lr` (the warmup is its rising phase).
    OneCycle,
    /// `StepLR`: the lr times 0.1 after each third of the schedule.
    Step,
}

macro_rules! names {
    ($t:ty, $what:literal, $($v:path => $s:literal),+) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($v),)+
                    _ => Err(format!(concat!("`{}` is not ", $what, " ({})"), s, [$($s),+].join(", "))),
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($v => $s,)+ })
            }
        }
    };
}
names!(OptimizerKind, "an optimizer", OptimizerKind::Adam => "adam", OptimizerKind::AdamW => "adamw", OptimizerKind::Sgd => "sgd");
names!(SchedulerKind, "a scheduler", SchedulerKind::None => "none", SchedulerKind::Cosine => "cosine",
    SchedulerKind::OneCycle => "onecycle", SchedulerKind::Step => "step");

/// The recipe flags; `Recipe::default()` is the job's original loop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recipe {
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Weight decay (`None`: the optimizer's PyTorch default, 0.01 for AdamW, else 0);
    /// biases and other 1-D parameters (norms) never decay.
    pub weight_decay: Option<f64>,
    /// The lr schedule.
    pub scheduler: SchedulerKind,
    /// Steps of linear warmup from lr/100 (`LinearLR` before the schedule).
    pub warmup_steps: usize,
    /// Epochs the schedule spans (`None`: `--epochs`; give it when a run is stopped early
    /// and resumed later).
    pub schedule_epochs: Option<usize>,
    /// Clip the gradients' total 2-norm to this (`clip_grad_norm_`).
    pub clip_grad_norm: Option<f64>,
    /// `F.cross_entropy(label_smoothing=)`.
    pub label_smoothing: f64,
    /// Keep an EMA of the weights with this decay (`AveragedModel`, buffers too).
    pub ema: Option<f64>,
}

impl Recipe {
    /// Whether no recipe flag was given.
    pub fn is_default(&self) -> bool {
        *self == Recipe::default()
    }

    fn weight_decay(&self) -> f64 {
        let default = match self.optimizer {
            OptimizerKind::AdamW => 0.01,
            _ => 0.0,
        };
        self.weight_decay.unwrap_or(default)
    }

    fn has_schedule(&self) -> bool {
        self.scheduler != SchedulerKind::None || self.warmup_steps > 0
    }

    /// The flags that differ from the defaults, with the schedule's length resolved
    /// against `epochs` (empty for the defaults). The checkpoint keeps it and a resume
    /// must give the same.
    pub fn describe(&self, epochs: usize) -> String {
        let mut s = Vec::new();
        if self.optimizer != OptimizerKind::Adam {
            s.push(format!("--optimizer {}", self.optimizer));
        }
        if let Some(wd) = self.weight_decay {
            s.push(format!("--weight-decay {wd}"));
        }
        if self.scheduler != SchedulerKind::None {
            s.push(format!("--scheduler {}", self.scheduler));
        }
        if self.warmup_steps > 0 {
            s.push(format!("--warmup-steps {}", self.warmup_steps));
        }
        if self.has_schedule() {
            let n = self.schedule_epochs.unwrap_or(epochs);
            s.push(format!("--schedule-epochs {n}"));
        }
        if let Some(c) = self.clip_grad_norm {
            s.push(format!("--clip-grad-norm {c}"));
        }
        if self.label_smoothing > 0.0 {
            s.push(format!("--label-smoothing {}", self.label_smoothing));
        }
        if let Some(d) = self.ema {
            s.push(format!("--ema {d}"));
        }
        s.join(" ")
    }
}

/// The optimizer, its schedule and the averaged weights of one run.
pub struct Trainer {
    /// The optimizer (PyTorch's `opt`).
    pub opt: Box<dyn Optimizer>,
    sched: Option<Box<dyn LrScheduler>>,
    ema: Option<AveragedModel<Net>>,
    recipe: Recipe,
}

/// Biases and 1-D parameters (norms) apart: they do not decay.
fn decay_groups(model: &Net) -> (Vec<Param>, Vec<Param>) {
    let (mut decay, mut no_decay) = (Vec::new(), Vec::new());
    for (name, p) in model.named_parameters() {
        // a parameter whose shape is not known yet is a (lazy) weight matrix
        let flat = p.shape().is_some_and(|s| s.len() < 2);
        if name.ends_with("bias") || flat {
            no_decay.push(p);
        } else {
            decay.push(p);
        }
    }
    (decay, no_decay)
}

fn optimizer(r: &Recipe, model: &Net, lr: f64) -> Result<Box<dyn Optimizer>> {
    let wd = r.weight_decay();
    if r.optimizer == OptimizerKind::Adam && wd == 0.0 {
        // the original loop
        return Ok(Box::new(Adam::with_lr(model.parameters(), lr)?));
    }
    let (decay, no_decay) = decay_groups(model);
    fn two<C: Copy>(d: Vec<Param>, n: Vec<Param>, c: C, c0: C) -> Vec<ParamGroup<C>> {
        vec![ParamGroup::new(d, c), ParamGroup::new(n, c0)]
    }
    Ok(match r.optimizer {
        OptimizerKind::Adam => {
            let c = AdamConfig {
                lr,
                weight_decay: wd,
                ..Default::default()
            };
            Box::new(Adam::with_groups(two(
                decay,
                no_decay,
                c,
                AdamConfig {
                    weight_decay: 0.0,
                    ..c
                },
            ))?)
        }
        OptimizerKind::AdamW => {
            let c = AdamWConfig {
                lr,
                weight_decay: wd,
                ..Default::default()
            };
            Box::new(AdamW::with_groups(two(
                decay,
                no_decay,
                c,
                AdamWConfig {
                    weight_decay: 0.0,
                    ..c
                },
            ))?)
        }
        OptimizerKind::Sgd => {
            let c = SgdConfig {
                lr,
                momentum: 0.9,
                weight_decay: wd,
                ..Default::default()
            };
            Box::new(Sgd::with_groups(two(
                decay,
                no_decay,
                c,
                SgdConfig {
                    weight_decay: 0.0,
                    ..c
                },
            ))?)
        }
    })
}

fn scheduler(
    r: &Recipe,
    opt: &mut dyn Optimizer,
    lr: f64,
    total: usize,
) -> Result<Option<Box<dyn LrScheduler>>> {
    let warm = r.warmup_steps;
    if r.scheduler == SchedulerKind::OneCycle {
        let mut b = OneCycleLR::builder(&[lr], total);
        if warm > 0 {
            b.pct_start = warm as f64 / total.max(1) as f64;
        }
        return Ok(Some(Box::new(b.build(opt)?)));
    }
    if !r.has_schedule() {
        return Ok(None);
    }
    if warm >= total && r.scheduler != SchedulerKind::None {
        return Err(Error::invalid_config(
            "--warmup-steps",
            "steps",
            warm,
            format!("the schedule has only {total} steps (--schedule-epochs x steps per epoch)"),
        ));
    }
    let rest = total.saturating_sub(warm);
    let warmup: Option<Box<dyn LrScheduler>> = match warm {
        0 => None,
        n => Some(Box::new(LinearLR::new(opt, 0.01, 1.0, n)?)),
    };
    let main: Option<Box<dyn LrScheduler>> = match r.scheduler {
        SchedulerKind::None | SchedulerKind::OneCycle => None,
        SchedulerKind::Cosine => Some(Box::new(CosineAnnealingLR::new(opt, rest, 0.0)?)),
        SchedulerKind::Step => Some(Box::new(StepLR::new(opt, (rest / 3).max(1), 0.1)?)),
    };
    Ok(match (warmup, main) {
        (Some(w), Some(m)) => Some(Box::new(SequentialLR::new(opt, vec![w, m], &[warm])?)),
        (w, m) => w.or(m),
    })
}

impl Trainer {
    /// The optimizer and the schedule for `model` (`total_steps`: optimizer steps the
    /// schedule spans).
    pub fn new(recipe: &Recipe, model: &Net, lr: f64, total_steps: usize) -> Result<Trainer> {
        let mut opt = optimizer(recipe, model, lr)?;
        let sched = scheduler(recipe, &mut *opt, lr, total_steps)?;
        Ok(Trainer {
            opt,
            sched,
            ema: None,
            recipe: recipe.clone(),
        })
    }

    /// One step on `(x, y)`: forward, loss, backward, clipping, optimizer, schedule,
    /// average; returns the loss.
    pub fn step(&mut self, model: &Net, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let logits = model.forward(x)?;
        let ls = self.recipe.label_smoothing;
        let loss = match ls > 0.0 {
            true => F::cross_entropy(&logits, y, None, -100, Reduction::Mean, ls as f32)?,
            false => logits.cross_entropy(y)?,
        };
        self.opt.zero_grad();
        loss.backward()?;
        if let Some(max_norm) = self.recipe.clip_grad_norm {
            nn::utils::clip_grad_norm(self.opt.params(), max_norm, 2.0, false)?;
        }
        self.opt.step()?;
        if let Some(s) = &mut self.sched {
            s.step(&mut *self.opt)?;
        }
        if let Some(decay) = self.recipe.ema {
            let ema = match &mut self.ema {
                Some(e) => e,
                // created at the first step, when the lazy layers know their shapes
                None => self.ema.insert(Self::new_ema(model, decay)),
            };
            ema.update_parameters(model)?;
        }
        Ok(loss)
    }

    fn new_ema(model: &Net, decay: f64) -> AveragedModel<Net> {
        let mut e = AveragedModel::new(model, get_ema_multi_avg_fn(decay), true);
        e.eval();
        e
    }

    /// The averaged weights, once a step has been taken (`--ema`).
    pub fn ema(&self) -> Option<&AveragedModel<Net>> {
        self.ema.as_ref()
    }

    /// Adds the scheduler's state, the average (tensors `ema.*`) and the recipe (meta
    /// `recipe`) to a checkpoint; with the defaults it adds nothing.
    pub fn save_into(
        &self,
        mut ck: TrainingCheckpoint,
        epochs: usize,
    ) -> Result<TrainingCheckpoint> {
        if let Some(s) = &self.sched {
            ck = ck.with_scheduler(s.state_dict());
        }
        if let Some(e) = &self.ema {
            for (k, t) in e.state_dict()?.iter() {
                ck.tensors.insert(format!("ema.{k}"), t.clone());
            }
        }
        if !self.recipe.is_default() {
            ck = ck.with_meta("recipe", self.recipe.describe(epochs));
        }
        Ok(ck)
    }

    /// After `ck.restore_into(model, opt)`: checks the recipe is the checkpoint's and
    /// loads the scheduler's state and the average.
    pub fn restore(&mut self, ck: &TrainingCheckpoint, model: &Net, epochs: usize) -> Result<()> {
        let (written, given) = (
            ck.meta_str("recipe").unwrap_or(""),
            self.recipe.describe(epochs),
        );
        if written != given {
            return Err(Error::invalid_config(
                "--resume",
                "flags",
                format!("`{given}`"),
                format!("the checkpoint was written with `{written}`; resume with the same flags"),
            ));
        }
        if let Some(s) = &mut self.sched {
            s.load_state_dict(&ck.scheduler)?;
        }
        if let Some(decay) = self.recipe.ema {
            let sd = nn::io::select(&ck.tensors, "ema.", "");
            if !sd.is_empty() {
                let ema = self.ema.insert(Self::new_ema(model, decay));
                ema.load_state_dict(&sd, &LoadOptions::strict())?;
            }
        }
        Ok(())
    }
}
