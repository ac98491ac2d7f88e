//! Adagrad, exactly as `torch.optim.Adagrad` (dense gradients, single-tensor path):
//!
//! ```text
//! t = t + 1
//! g = grad (-grad when maximize) + weight_decay * p
//! clr = lr / (1 + (t - 1) * lr_decay)
//! sum = sum + g * g                  (sum starts at initial_accumulator_value)
//! p = p - clr * g / (sqrt(sum) + eps)
//! ```

use super::group::{read_bool, read_scalar, GroupConfig, Grouped, Groups, ParamGroup};
use super::{
    check_hyper, fusable, next_step, read_buffer, read_step, snapshot, step_tensor, Optimizer,
};
use crate::backend::OptimStep;
use crate::{DType, Param, Result, StateDict, Tensor};

/// Hyperparameters of [`Adagrad`] (PyTorch's defaults).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::AdagradConfig;
/// assert_eq!(AdagradConfig::default().eps, 1e-10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay per step.
    pub lr_decay: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// The starting value of the squared-gradient sum.
    pub initial_accumulator_value: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Ascend the objective instead of descending it.
    pub maximize: bool,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
}

impl GroupConfig for AdagradConfig {
    const NAME: &'static str = "Adagrad";

    fn validate(&self) -> Result<()> {
        for (n, v) in [
            ("lr", self.lr),
            ("lr_decay", self.lr_decay),
            ("weight_decay", self.weight_decay),
            ("initial_accumulator_value", self.initial_accumulator_value),
            ("eps", self.eps),
        ] {
            check_hyper("Adagrad", n, v)?;
        }
        Ok(())
    }
    super::group::lr_momentum!();
    fn entries(&self) -> Vec<(&'static str, Vec<f64>)> {
        vec![
            ("lr", vec![self.lr]),
            ("lr_decay", vec![self.lr_decay]),
            ("eps", vec![self.eps]),
            ("weight_decay", vec![self.weight_decay]),
            (
                "initial_accumulator_value",
                vec![self.initial_accumulator_value],
            ),
            ("maximize", vec![f64::from(u8::from(self.maximize))]),
        ]
    }
    fn read_entry(&mut self, key: &str, v: &[f64]) -> std::result::Result<(), String> {
        match key {
            "lr" => self.lr = read_scalar(v)?,
            "lr_decay" => self.lr_decay = read_scalar(v)?,
            "eps" => self.eps = read_scalar(v)?,
            "weight_decay" => self.weight_decay = read_scalar(v)?,
            "initial_accumulator_value" => self.initial_accumulator_value = read_scalar(v)?,
            "maximize" => self.maximize = read_bool(v)?,
            _ => {}
        }
        Ok(())
    }
}

/// Per-parameter state.
#[derive(Debug, Clone, Default)]
struct State {
    step: u64,
    sum: Option<Tensor>,
}

/// `torch.optim.Adagrad`. The sums are created at a parameter's first step (PyTorch
/// creates them at construction, with the same values).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::{Adagrad, AdagradConfig, Optimizer};
/// use nn::{Forward, Linear, ModuleExt, Tensor};
/// let net = Linear::new(3, 1);
/// let mut opt = Adagrad::new(net.parameters(), AdagradConfig { lr_decay: 0.01, ..Default::default() })?;
/// net.forward(&Tensor::ones(&[2, 3]))?.sum()?.backward()?;
/// opt.step()?;
/// assert!(opt.state_dict()?.get("state.0.sum").is_some());
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug)]
pub struct Adagrad {
    groups: Groups<AdagradConfig>,
    state: Vec<State>,
}

impl Adagrad {
    /// An optimizer over `params` in one group.
    pub fn new(params: Vec<Param>, cfg: AdagradConfig) -> Result<Adagrad> {
        Self::with_groups(vec![ParamGroup::new(params, cfg)])
    }

    /// An optimizer over parameter groups; a parameter in two groups is an error
    /// naming it.
    pub fn with_groups(groups: Vec<ParamGroup<AdagradConfig>>) -> Result<Adagrad> {
        let (groups, state) = Groups::with_states(groups)?;
        Ok(Adagrad { groups, state })
    }

    /// PyTorch's `add_param_group`.
    pub fn add_param_group(&mut self, group: ParamGroup<AdagradConfig>) -> Result<()> {
        self.add_group(group)
    }

    pub(crate) fn step_with(&mut self, fused: bool) -> Result<()> {
        let _ng = crate::NoGradGuard::new();
        self.for_each_grad(|this, c, i, g| {
            if this.state[i].sum.is_none() {
                let v = c.initial_accumulator_value as f32;
                let z = Tensor::from_storage(g.device().zeros(g.numel(), DType::F32)?, g.shape())?;
                this.state[i].sum = Some(if v == 0.0 { z } else { z.add_scalar(v)? });
            }
            let step = next_step(this.state[i].step);
            let clr = c.lr / (1.0 + (step - 1) as f64 * c.lr_decay);
            let k = OptimStep::Adagrad {
                clr: clr as f32,
                eps: c.eps as f32,
                weight_decay: c.weight_decay as f32,
                maximize: c.maximize,
            };
            let done = fused && fusable(&this.groups.params[i], &g) && {
                let sum = &mut this.state[i].sum;
                match sum {
                    Some(s) => this.groups.params[i].update_in_place(|p| {
                        p.optim_step(g.storage().as_ref(), &mut [s.make_mut()?], &k)
                    })?,
                    None => false,
                }
            };
            if !done {
                this.generic(c, clr, i, &g)?;
            }
            this.state[i].step = step;
            Ok(())
        })
    }

    fn generic(&mut self, c: &AdagradConfig, clr: f64, i: usize, g: &Tensor) -> Result<()> {
        let p = &self.groups.params[i];
        let data = p.data()?;
        let mut g = if c.maximize { g.neg()? } else { g.clone() };
        if c.weight_decay != 0.0 {
            g = g.add(&data.mul_scalar(c.weight_decay as f32)?)?;
        }
        let st = &mut self.state[i];
        let sum = match st.sum.take() {
            Some(s) => s,
            None => g.zeros_like()?,
        };
        let sum = sum.add(&g.mul(&g)?)?;
        let std = sum.sqrt()?.add_scalar(c.eps as f32)?;
        let new = data.add(&g.mul_scalar(-clr as f32)?.div(&std)?)?;
        st.sum = Some(sum);
        p.set_data(&new)
    }
}

impl Optimizer for Adagrad {
    fn step(&mut self) -> Result<()> {
        self.step_with(true)
    }

    super::group_methods!();

    fn state_dict(&self) -> Result<StateDict> {
        self.save_states(&self.state, |i, st, sd| {
            let Some(s) = &st.sum else { return Ok(()) };
            sd.insert(
                format!("state.{i}.step"),
                step_tensor("Adagrad.state_dict", st.step)?,
            );
            sd.insert(format!("state.{i}.sum"), snapshot(s)?);
            Ok(())
        })
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.load_states(
            "Adagrad.load_state_dict",
            state,
            |_, p, entries, s, problems| {
                for (name, (key, t)) in entries {
                    match *name {
                        "step" => s.step = read_step(key, t, problems),
                        "sum" => s.sum = read_buffer(key, t, p, problems),
                        _ => problems.push(format!("unexpected key `{key}`")),
                    }
                }
            },
        )
    }
}

super::group::grouped!(Adagrad, AdagradConfig, State, state);
