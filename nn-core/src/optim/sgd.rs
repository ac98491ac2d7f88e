//! Stochastic gradient descent with momentum, dampening, weight decay, Nesterov momentum
//! and `maximize`, exactly as `torch.optim.SGD`:
//!
//! ```text
//! g = grad (-grad when maximize) + weight_decay * p
//! buf = g                                        (first step)
//! buf = momentum * buf + (1 - dampening) * g     (later steps)
//! g = g + momentum * buf  (nesterov)   or   g = buf
//! p = p - lr * g
//! ```

use super::group::{read_bool, read_scalar, GroupConfig, Grouped, Groups, ParamGroup};
use super::{check_hyper, fusable, read_buffer, snapshot, zeros_on_device, Optimizer};
use crate::backend::SgdStep;
use crate::{Error, Param, Result, StateDict, Tensor};

/// Hyperparameters of [`Sgd`] (PyTorch's defaults apart from `lr`, which has none there).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::SgdConfig;
/// let cfg = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() };
/// assert_eq!(cfg.dampening, 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 disables momentum).
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    /// Ascend the objective instead of descending it.
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl GroupConfig for SgdConfig {
    const NAME: &'static str = "SGD";

    fn validate(&self) -> Result<()> {
        check_hyper("SGD", "lr", self.lr)?;
        check_hyper("SGD", "momentum", self.momentum)?;
        check_hyper("SGD", "dampening", self.dampening)?;
        check_hyper("SGD", "weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid_config(
                "SGD",
                "nesterov",
                format!(
                    "true (momentum {}, dampening {})",
                    self.momentum, self.dampening
                ),
                "nesterov momentum requires a momentum and zero dampening",
            ));
        }
        Ok(())
    }
    super::group::lr_momentum!(momentum);
    fn entries(&self) -> Vec<(&'static str, Vec<f64>)> {
        vec![
            ("lr", vec![self.lr]),
            ("momentum", vec![self.momentum]),
            ("dampening", vec![self.dampening]),
            ("weight_decay", vec![self.weight_decay]),
            ("nesterov", vec![f64::from(u8::from(self.nesterov))]),
            ("maximize", vec![f64::from(u8::from(self.maximize))]),
        ]
    }
    fn read_entry(&mut self, key: &str, v: &[f64]) -> std::result::Result<(), String> {
        match key {
            "lr" => self.lr = read_scalar(v)?,
            "momentum" => self.momentum = read_scalar(v)?,
            "dampening" => self.dampening = read_scalar(v)?,
            "weight_decay" => self.weight_decay = read_scalar(v)?,
            "nesterov" => self.nesterov = read_bool(v)?,
            "maximize" => self.maximize = read_bool(v)?,
            _ => {}
        }
        Ok(())
    }
}

/// `torch.optim.SGD`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::{Optimizer, ParamGroup, Sgd, SgdConfig};
/// use nn::{Linear, ModuleExt};
/// let (a, b) = (Linear::new(2, 2), Linear::new(2, 1));
/// let base = SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() };
/// let mut opt = Sgd::with_groups(vec![
///     ParamGroup::new(a.parameters(), base),
///     ParamGroup::new(b.parameters(), SgdConfig { lr: 0.01, ..base }),
/// ])?;
/// opt.set_group_lr(1, 0.02)?;
/// assert_eq!(opt.group_lr(1), Some(0.02));
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug)]
pub struct Sgd {
    groups: Groups<SgdConfig>,
    bufs: Vec<Option<Tensor>>,
}

impl Sgd {
    /// An optimizer over `params` in one group (a tied parameter listed twice is updated
    /// once).
    pub fn new(params: Vec<Param>, cfg: SgdConfig) -> Result<Sgd> {
        Self::with_groups(vec![ParamGroup::new(params, cfg)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters; a
    /// parameter in two groups is an error naming it.
    pub fn with_groups(groups: Vec<ParamGroup<SgdConfig>>) -> Result<Sgd> {
        let (groups, bufs) = Groups::with_states(groups)?;
        Ok(Sgd { groups, bufs })
    }

    /// Plain SGD with learning rate `lr`.
    pub fn with_lr(params: Vec<Param>, lr: f64) -> Result<Sgd> {
        Self::new(
            params,
            SgdConfig {
                lr,
                ..Default::default()
            },
        )
    }

    /// PyTorch's `add_param_group`: a new group after the others; nothing changes on
    /// error.
    pub fn add_param_group(&mut self, group: ParamGroup<SgdConfig>) -> Result<()> {
        self.add_group(group)
    }

    /// The hyper-parameters of the first group.
    pub fn config(&self) -> &SgdConfig {
        &self.groups.groups[0].cfg
    }

    /// The hyper-parameters of group `g`.
    pub fn group_config(&self, g: usize) -> Option<&SgdConfig> {
        self.groups.groups.get(g).map(|x| &x.cfg)
    }

    /// One update of every parameter with a gradient: fused on its device when `fused`
    /// and the backend has a fused update, with tensor ops otherwise (the reference the
    /// tests compare the fused path with).
    pub(crate) fn step_with(&mut self, fused: bool) -> Result<()> {
        let _ng = crate::NoGradGuard::new();
        self.for_each_grad(|this, cfg, i, g| {
            let done = fused
                && !cfg.maximize
                && fusable(&this.groups.params[i], &g)
                && this.step_fused(cfg, i, &g)?;
            if !done {
                this.step_generic(cfg, i, &g)?;
            }
            Ok(())
        })
    }

    /// One parameter in one fused pass on its device; `Ok(false)` when the backend has
    /// no fused update (nothing was changed then).
    fn step_fused(&mut self, c: &SgdConfig, i: usize, g: &Tensor) -> Result<bool> {
        let momentum = c.momentum != 0.0;
        let first = momentum && self.bufs[i].is_none();
        if first {
            self.bufs[i] = Some(zeros_on_device(g)?);
        }
        let step = SgdStep {
            lr: c.lr as f32,
            weight_decay: c.weight_decay as f32,
            momentum: c.momentum as f32,
            one_minus_dampening: (1.0 - c.dampening) as f32,
            nesterov: c.nesterov,
            first,
        };
        let buf = &mut self.bufs[i];
        let done = self.groups.params[i].update_in_place(|p| {
            let b = match buf {
                Some(b) if momentum => Some(b.make_mut()?),
                _ => None,
            };
            p.sgd_step(g.storage().as_ref(), b, &step)
        });
        if first && !matches!(done, Ok(true)) {
            self.bufs[i] = None;
        }
        done
    }

    /// One parameter with tensor ops (backends without a fused update, `maximize`).
    fn step_generic(&mut self, c: &SgdConfig, i: usize, g: &Tensor) -> Result<()> {
        let p = &self.groups.params[i];
        let data = p.data()?;
        let mut d = if c.maximize { g.neg()? } else { g.clone() };
        if c.weight_decay != 0.0 {
            d = d.add(&data.mul_scalar(c.weight_decay as f32)?)?;
        }
        if c.momentum != 0.0 {
            let buf = match self.bufs[i].take() {
                None => snapshot(&d)?,
                Some(b) => b
                    .mul_scalar(c.momentum as f32)?
                    .add(&d.mul_scalar((1.0 - c.dampening) as f32)?)?,
            };
            d = if c.nesterov {
                d.add(&buf.mul_scalar(c.momentum as f32)?)?
            } else {
                buf.clone()
            };
            self.bufs[i] = Some(buf);
        }
        p.set_data(&data.add(&d.mul_scalar(-c.lr as f32)?)?)
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        self.step_with(true)
    }

    super::group_methods!();

    fn state_dict(&self) -> Result<StateDict> {
        self.save_states(&self.bufs, |i, b, sd| {
            if let Some(b) = b {
                sd.insert(format!("state.{i}.momentum_buffer"), snapshot(b)?);
            }
            Ok(())
        })
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.load_states(
            "SGD.load_state_dict",
            state,
            |_, p, entries, b, problems| {
                for (name, (key, t)) in entries {
                    match *name {
                        "momentum_buffer" => *b = read_buffer(key, t, p, problems),
                        _ => problems.push(format!("unexpected key `{key}`")),
                    }
                }
            },
        )
    }
}

super::group::grouped!(Sgd, SgdConfig, Option<Tensor>, bufs);
