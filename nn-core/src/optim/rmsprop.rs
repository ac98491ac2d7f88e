//! RMSprop, exactly as `torch.optim.RMSprop` (single-tensor path):
//!
//! ```text
//! g = grad (-grad when maximize) + weight_decay * p
//! s = alpha * s + (1 - alpha) * g * g
//! centered: ga = ga + (1 - alpha) * (g - ga); avg = sqrt(s - ga * ga) + eps
//! otherwise: avg = sqrt(s) + eps
//! momentum > 0: b = momentum * b + g / avg; p = p - lr * b
//! otherwise: p = p - lr * g / avg
//! ```

use super::group::{read_bool, read_scalar, GroupConfig, Grouped, Groups, ParamGroup};
use super::{
    check_hyper, fusable, next_step, read_buffer, read_step, snapshot, step_tensor,
    zeros_on_device, Optimizer,
};
use crate::backend::OptimStep;
use crate::{Param, Result, StateDict, Tensor};

/// Hyperparameters of [`RmsProp`] (PyTorch's defaults).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::RmsPropConfig;
/// assert_eq!(RmsPropConfig::default().alpha, 0.99);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// Normalize by the estimated variance of the gradient.
    pub centered: bool,
    /// Ascend the objective instead of descending it.
    pub maximize: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

impl GroupConfig for RmsPropConfig {
    const NAME: &'static str = "RMSprop";

    fn validate(&self) -> Result<()> {
        for (n, v) in [
            ("lr", self.lr),
            ("alpha", self.alpha),
            ("eps", self.eps),
            ("weight_decay", self.weight_decay),
            ("momentum", self.momentum),
        ] {
            check_hyper("RMSprop", n, v)?;
        }
        Ok(())
    }
    super::group::lr_momentum!(momentum);
    fn entries(&self) -> Vec<(&'static str, Vec<f64>)> {
        let b = |x: bool| vec![f64::from(u8::from(x))];
        vec![
            ("lr", vec![self.lr]),
            ("alpha", vec![self.alpha]),
            ("eps", vec![self.eps]),
            ("weight_decay", vec![self.weight_decay]),
            ("momentum", vec![self.momentum]),
            ("centered", b(self.centered)),
            ("maximize", b(self.maximize)),
        ]
    }
    fn read_entry(&mut self, key: &str, v: &[f64]) -> std::result::Result<(), String> {
        match key {
            "lr" => self.lr = read_scalar(v)?,
            "alpha" => self.alpha = read_scalar(v)?,
            "eps" => self.eps = read_scalar(v)?,
            "weight_decay" => self.weight_decay = read_scalar(v)?,
            "momentum" => self.momentum = read_scalar(v)?,
            "centered" => self.centered = read_bool(v)?,
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
    square_avg: Option<Tensor>,
    grad_avg: Option<Tensor>,
    momentum_buffer: Option<Tensor>,
}

/// `torch.optim.RMSprop`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::{Optimizer, RmsProp, RmsPropConfig};
/// use nn::{Forward, Linear, ModuleExt, Tensor};
/// let net = Linear::new(3, 1);
/// let cfg = RmsPropConfig { momentum: 0.9, centered: true, ..Default::default() };
/// let mut opt = RmsProp::new(net.parameters(), cfg)?;
/// net.forward(&Tensor::ones(&[2, 3]))?.sum()?.backward()?;
/// opt.step()?;
/// assert!(opt.state_dict()?.get("state.0.grad_avg").is_some());
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug)]
pub struct RmsProp {
    groups: Groups<RmsPropConfig>,
    state: Vec<State>,
}

impl RmsProp {
    /// An optimizer over `params` in one group.
    pub fn new(params: Vec<Param>, cfg: RmsPropConfig) -> Result<RmsProp> {
        Self::with_groups(vec![ParamGroup::new(params, cfg)])
    }

    /// An optimizer over parameter groups; a parameter in two groups is an error
    /// naming it.
    pub fn with_groups(groups: Vec<ParamGroup<RmsPropConfig>>) -> Result<RmsProp> {
        let (groups, state) = Groups::with_states(groups)?;
        Ok(RmsProp { groups, state })
    }

    /// PyTorch's `add_param_group`.
    pub fn add_param_group(&mut self, group: ParamGroup<RmsPropConfig>) -> Result<()> {
        self.add_group(group)
    }

    pub(crate) fn step_with(&mut self, fused: bool) -> Result<()> {
        let _ng = crate::NoGradGuard::new();
        self.for_each_grad(|this, c, i, g| {
            let st = &mut this.state[i];
            if st.square_avg.is_none() {
                st.square_avg = Some(zeros_on_device(&g)?);
            }
            if c.centered && st.grad_avg.is_none() {
                st.grad_avg = Some(zeros_on_device(&g)?);
            }
            if c.momentum > 0.0 && st.momentum_buffer.is_none() {
                st.momentum_buffer = Some(zeros_on_device(&g)?);
            }
            let done = fused && fusable(&this.groups.params[i], &g) && this.fused(c, i, &g)?;
            if !done {
                this.generic(c, i, &g)?;
            }
            this.state[i].step = next_step(this.state[i].step);
            Ok(())
        })
    }

    fn fused(&mut self, c: &RmsPropConfig, i: usize, g: &Tensor) -> Result<bool> {
        let k = OptimStep::RmsProp {
            lr: c.lr as f32,
            alpha: c.alpha as f32,
            one_minus_alpha: (1.0 - c.alpha) as f32,
            eps: c.eps as f32,
            weight_decay: c.weight_decay as f32,
            momentum: c.momentum as f32,
            centered: c.centered,
            maximize: c.maximize,
        };
        let st = &mut self.state[i];
        let (Some(sq), ga, b) = (
            &mut st.square_avg,
            &mut st.grad_avg,
            &mut st.momentum_buffer,
        ) else {
            return Ok(false);
        };
        self.groups.params[i].update_in_place(|p| {
            let g = g.storage();
            match (ga, b) {
                (Some(ga), Some(b)) if c.centered && c.momentum > 0.0 => p.optim_step(
                    g.as_ref(),
                    &mut [sq.make_mut()?, ga.make_mut()?, b.make_mut()?],
                    &k,
                ),
                (Some(ga), _) if c.centered => {
                    p.optim_step(g.as_ref(), &mut [sq.make_mut()?, ga.make_mut()?], &k)
                }
                (_, Some(b)) if c.momentum > 0.0 => {
                    p.optim_step(g.as_ref(), &mut [sq.make_mut()?, b.make_mut()?], &k)
                }
                _ => p.optim_step(g.as_ref(), &mut [sq.make_mut()?], &k),
            }
        })
    }

    fn generic(&mut self, c: &RmsPropConfig, i: usize, g: &Tensor) -> Result<()> {
        let p = &self.groups.params[i];
        let data = p.data()?;
        let mut g = if c.maximize { g.neg()? } else { g.clone() };
        if c.weight_decay != 0.0 {
            g = g.add(&data.mul_scalar(c.weight_decay as f32)?)?;
        }
        let st = &mut self.state[i];
        let (a, one_minus_a) = (c.alpha as f32, (1.0 - c.alpha) as f32);
        let sq = match st.square_avg.take() {
            Some(s) => s,
            None => g.zeros_like()?,
        };
        let sq = sq
            .mul_scalar(a)?
            .add(&g.mul_scalar(one_minus_a)?.mul(&g)?)?;
        let avg = if c.centered {
            let ga = match st.grad_avg.take() {
                Some(x) => x,
                None => g.zeros_like()?,
            };
            let ga = ga.add(&g.sub(&ga)?.mul_scalar(one_minus_a)?)?;
            let avg = sq.sub(&ga.mul(&ga)?)?.sqrt()?;
            st.grad_avg = Some(ga);
            avg
        } else {
            sq.sqrt()?
        }
        .add_scalar(c.eps as f32)?;
        st.square_avg = Some(sq);
        let new = if c.momentum > 0.0 {
            let b = match st.momentum_buffer.take() {
                Some(b) => b,
                None => g.zeros_like()?,
            };
            let b = b.mul_scalar(c.momentum as f32)?.add(&g.div(&avg)?)?;
            let new = data.add(&b.mul_scalar(-c.lr as f32)?)?;
            st.momentum_buffer = Some(b);
            new
        } else {
            data.add(&g.mul_scalar(-c.lr as f32)?.div(&avg)?)?
        };
        p.set_data(&new)
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) -> Result<()> {
        self.step_with(true)
    }

    super::group_methods!();

    fn state_dict(&self) -> Result<StateDict> {
        self.save_states(&self.state, |i, st, sd| {
            let Some(sq) = &st.square_avg else {
                return Ok(());
            };
            sd.insert(
                format!("state.{i}.step"),
                step_tensor("RMSprop.state_dict", st.step)?,
            );
            sd.insert(format!("state.{i}.square_avg"), snapshot(sq)?);
            if let Some(b) = &st.momentum_buffer {
                sd.insert(format!("state.{i}.momentum_buffer"), snapshot(b)?);
            }
            if let Some(ga) = &st.grad_avg {
                sd.insert(format!("state.{i}.grad_avg"), snapshot(ga)?);
            }
            Ok(())
        })
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.load_states(
            "RMSprop.load_state_dict",
            state,
            |_, p, entries, s, problems| {
                for (name, (key, t)) in entries {
                    match *name {
                        "step" => s.step = read_step(key, t, problems),
                        "square_avg" => s.square_avg = read_buffer(key, t, p, problems),
                        "grad_avg" => s.grad_avg = read_buffer(key, t, p, problems),
                        "momentum_buffer" => s.momentum_buffer = read_buffer(key, t, p, problems),
                        _ => problems.push(format!("unexpected key `{key}`")),
                    }
                }
            },
        )
    }
}

super::group::grouped!(RmsProp, RmsPropConfig, State, state);
