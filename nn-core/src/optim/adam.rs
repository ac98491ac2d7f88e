//! Adam and AdamW with bias correction, exactly as `torch.optim.Adam` / `AdamW`
//! (single-tensor path, the CPU default):
//!
//! ```text
//! t = t + 1
//! g = grad (-grad when maximize)
//! p = p * (1 - lr * weight_decay)     (AdamW: decoupled weight decay)
//! g = g + weight_decay * p            (Adam: L2 penalty)
//! m = m + (1 - beta1) * (g - m)       (lerp)
//! v = beta2 * v + (1 - beta2) * g * g
//! v_max = max(v_max, v); use v_max for v   (amsgrad)
//! step_size = lr / (1 - beta1^t)
//! denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//! p = p - step_size * m / denom
//! ```
//!
//! Each parameter keeps its own `t`, so a parameter that had no gradient at some step
//! is corrected as PyTorch corrects it.

use super::group::{read_bool, read_scalar, GroupConfig, Grouped, Groups, ParamGroup};
use super::{
    check_hyper, fusable, next_step, read_buffer, read_step, snapshot, step_tensor,
    zeros_on_device, Optimizer,
};
use crate::backend::{AdamStep, OptimStep};
use crate::{Error, Param, Result, StateDict, Tensor};

/// Hyperparameters of [`Adam`] (PyTorch's defaults).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::AdamConfig;
/// let cfg = AdamConfig { lr: 3e-4, amsgrad: true, ..Default::default() };
/// assert_eq!(cfg.betas, (0.9, 0.999));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator for stability.
    pub eps: f64,
    /// L2 penalty added to the gradient (decoupled when `decoupled_weight_decay`).
    pub weight_decay: f64,
    /// The AMSGrad variant: divide by the running maximum of `v`.
    pub amsgrad: bool,
    /// Ascend the objective instead of descending it.
    pub maximize: bool,
    /// Decay the weights directly, as AdamW (PyTorch's `decoupled_weight_decay`).
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }
}

/// Hyperparameters of [`AdamW`] (PyTorch's defaults: `weight_decay` 0.01).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::AdamWConfig;
/// assert_eq!(AdamWConfig::default().weight_decay, 0.01);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Decoupled weight decay: `p = p * (1 - lr * weight_decay)` before the update.
    pub weight_decay: f64,
    /// The AMSGrad variant.
    pub amsgrad: bool,
    /// Ascend the objective instead of descending it.
    pub maximize: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl From<AdamWConfig> for AdamConfig {
    fn from(c: AdamWConfig) -> AdamConfig {
        AdamConfig {
            lr: c.lr,
            betas: c.betas,
            eps: c.eps,
            weight_decay: c.weight_decay,
            amsgrad: c.amsgrad,
            maximize: c.maximize,
            decoupled_weight_decay: true,
        }
    }
}

impl GroupConfig for AdamConfig {
    const NAME: &'static str = "Adam";

    fn validate(&self) -> Result<()> {
        check_hyper("Adam", "lr", self.lr)?;
        check_hyper("Adam", "eps", self.eps)?;
        check_hyper("Adam", "weight_decay", self.weight_decay)?;
        for (name, b) in [("beta1", self.betas.0), ("beta2", self.betas.1)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid_config("Adam", name, b, "must be in [0, 1)"));
            }
        }
        Ok(())
    }
    super::group::lr_momentum!(betas.0);
    fn entries(&self) -> Vec<(&'static str, Vec<f64>)> {
        let b = |x: bool| vec![f64::from(u8::from(x))];
        vec![
            ("lr", vec![self.lr]),
            ("betas", vec![self.betas.0, self.betas.1]),
            ("eps", vec![self.eps]),
            ("weight_decay", vec![self.weight_decay]),
            ("amsgrad", b(self.amsgrad)),
            ("maximize", b(self.maximize)),
            ("decoupled_weight_decay", b(self.decoupled_weight_decay)),
        ]
    }
    fn read_entry(&mut self, key: &str, v: &[f64]) -> std::result::Result<(), String> {
        match key {
            "lr" => self.lr = read_scalar(v)?,
            "betas" => match v {
                [b1, b2] => self.betas = (*b1, *b2),
                _ => return Err(format!("{v:?} is not a pair of betas")),
            },
            "eps" => self.eps = read_scalar(v)?,
            "weight_decay" => self.weight_decay = read_scalar(v)?,
            "amsgrad" => self.amsgrad = read_bool(v)?,
            "maximize" => self.maximize = read_bool(v)?,
            "decoupled_weight_decay" => self.decoupled_weight_decay = read_bool(v)?,
            _ => {}
        }
        Ok(())
    }
}

/// Per-parameter state.
#[derive(Debug, Clone, Default)]
struct Moments {
    step: u64,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
    max_exp_avg_sq: Option<Tensor>,
}

/// `torch.optim.Adam` (with `decoupled_weight_decay`, the rule of [`AdamW`]).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::{Adam, AdamConfig, Optimizer};
/// use nn::{Forward, Linear, ModuleExt, Tensor};
/// let net = Linear::new(3, 1);
/// let mut opt = Adam::new(net.parameters(), AdamConfig { amsgrad: true, ..Default::default() })?;
/// net.forward(&Tensor::ones(&[2, 3]))?.sum()?.backward()?;
/// opt.step()?;
/// assert!(opt.state_dict()?.get("state.0.max_exp_avg_sq").is_some());
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug)]
pub struct Adam {
    groups: Groups<AdamConfig>,
    state: Vec<Moments>,
}

/// Scalars of one update, computed in f64 as PyTorch computes them in Python.
fn coeffs(c: &AdamConfig, step: u64) -> AdamStep {
    let (b1, b2) = c.betas;
    // Python's `beta ** step`
    let t = step as f64;
    let bc1 = 1.0 - b1.powf(t);
    let bc2 = 1.0 - b2.powf(t);
    AdamStep {
        one_minus_beta1: (1.0 - b1) as f32,
        beta2: b2 as f32,
        one_minus_beta2: (1.0 - b2) as f32,
        bias_correction2_sqrt: bc2.sqrt() as f32,
        neg_step_size: (-(c.lr / bc1)) as f32,
        eps: c.eps as f32,
        weight_decay: if c.decoupled_weight_decay {
            0.0
        } else {
            c.weight_decay as f32
        },
    }
}

/// The factor AdamW multiplies the parameter by (1 without decoupled decay).
fn decay(c: &AdamConfig) -> f32 {
    if c.decoupled_weight_decay && c.weight_decay != 0.0 {
        (1.0 - c.lr * c.weight_decay) as f32
    } else {
        1.0
    }
}

impl Adam {
    /// An optimizer over `params` in one group (a tied parameter listed twice is updated
    /// once).
    pub fn new(params: Vec<Param>, cfg: AdamConfig) -> Result<Adam> {
        Self::with_groups(vec![ParamGroup::new(params, cfg)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters; a
    /// parameter in two groups is an error naming it.
    pub fn with_groups(groups: Vec<ParamGroup<AdamConfig>>) -> Result<Adam> {
        let (groups, state) = Groups::with_states(groups)?;
        Ok(Adam { groups, state })
    }

    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn with_lr(params: Vec<Param>, lr: f64) -> Result<Adam> {
        Self::new(
            params,
            AdamConfig {
                lr,
                ..Default::default()
            },
        )
    }

    /// PyTorch's `add_param_group`: a new group after the others; nothing changes on
    /// error.
    pub fn add_param_group(&mut self, group: ParamGroup<AdamConfig>) -> Result<()> {
        self.add_group(group)
    }

    /// The hyper-parameters of the first group.
    pub fn config(&self) -> &AdamConfig {
        &self.groups.groups[0].cfg
    }

    /// The hyper-parameters of group `g`.
    pub fn group_config(&self, g: usize) -> Option<&AdamConfig> {
        self.groups.groups.get(g).map(|x| &x.cfg)
    }

    /// One update of every parameter with a gradient: fused on its device when `fused`
    /// and the backend has a fused update, with tensor ops otherwise (the reference the
    /// tests compare the fused path with).
    pub(crate) fn step_with(&mut self, fused: bool) -> Result<()> {
        let _ng = crate::NoGradGuard::new();
        self.for_each_grad(|this, cfg, i, g| {
            let step = next_step(this.state[i].step);
            let k = coeffs(cfg, step);
            let done =
                fused && fusable(&this.groups.params[i], &g) && this.step_fused(cfg, i, &g, &k)?;
            if !done {
                this.step_generic(cfg, i, &g, &k)?;
            }
            this.state[i].step = step;
            Ok(())
        })
    }

    /// One parameter in one fused pass on its device; `Ok(false)` when the backend has
    /// no fused update (nothing was changed then).
    fn step_fused(&mut self, c: &AdamConfig, i: usize, g: &Tensor, k: &AdamStep) -> Result<bool> {
        let st = &mut self.state[i];
        let fresh = st.exp_avg.is_none() || st.exp_avg_sq.is_none();
        if fresh {
            st.exp_avg = Some(zeros_on_device(g)?);
            st.exp_avg_sq = Some(zeros_on_device(g)?);
        }
        let fresh_max = c.amsgrad && st.max_exp_avg_sq.is_none();
        if fresh_max {
            st.max_exp_avg_sq = Some(zeros_on_device(g)?);
        }
        let plain = !c.amsgrad && !c.maximize && decay(c) == 1.0;
        let ext = OptimStep::Adam {
            base: *k,
            decay: decay(c),
            maximize: c.maximize,
            amsgrad: c.amsgrad,
        };
        let done = match (&mut st.exp_avg, &mut st.exp_avg_sq, &mut st.max_exp_avg_sq) {
            (Some(m), Some(v), _) if plain => self.groups.params[i].update_in_place(|p| {
                p.adam_step(g.storage().as_ref(), m.make_mut()?, v.make_mut()?, k)
            }),
            (Some(m), Some(v), Some(mx)) if c.amsgrad => {
                self.groups.params[i].update_in_place(|p| {
                    let mut bufs = [m.make_mut()?, v.make_mut()?, mx.make_mut()?];
                    p.optim_step(g.storage().as_ref(), &mut bufs, &ext)
                })
            }
            (Some(m), Some(v), _) => self.groups.params[i].update_in_place(|p| {
                let mut bufs = [m.make_mut()?, v.make_mut()?];
                p.optim_step(g.storage().as_ref(), &mut bufs, &ext)
            }),
            _ => Ok(false),
        };
        if !matches!(done, Ok(true)) {
            if fresh {
                st.exp_avg = None;
                st.exp_avg_sq = None;
            }
            if fresh_max {
                st.max_exp_avg_sq = None;
            }
        }
        done
    }

    /// One parameter with tensor ops (backends without a fused update).
    fn step_generic(&mut self, c: &AdamConfig, i: usize, g: &Tensor, k: &AdamStep) -> Result<()> {
        let p = &self.groups.params[i];
        let mut data = p.data()?;
        let mut g = if c.maximize { g.neg()? } else { g.clone() };
        let d = decay(c);
        if d != 1.0 {
            data = data.mul_scalar(d)?;
        }
        if k.weight_decay != 0.0 {
            g = g.add(&data.mul_scalar(k.weight_decay)?)?;
        }
        let st = &mut self.state[i];
        let m = match st.exp_avg.take() {
            Some(m) => m,
            None => g.zeros_like()?,
        };
        let v = match st.exp_avg_sq.take() {
            Some(v) => v,
            None => g.zeros_like()?,
        };
        let m = m.add(&g.sub(&m)?.mul_scalar(k.one_minus_beta1)?)?;
        let v = v
            .mul_scalar(k.beta2)?
            .add(&g.mul_scalar(k.one_minus_beta2)?.mul(&g)?)?;
        let used = if c.amsgrad {
            let mx = match st.max_exp_avg_sq.take() {
                Some(mx) => mx.maximum(&v)?,
                None => v.clone(),
            };
            st.max_exp_avg_sq = Some(mx.clone());
            mx
        } else {
            v.clone()
        };
        // a true division, not a product with the reciprocal: the fused updates divide,
        // and the two paths give identical results
        let bc2 = Tensor::scalar(k.bias_correction2_sqrt).to_device(&v.device())?;
        let denom = used.sqrt()?.div(&bc2)?.add_scalar(k.eps)?;
        let new = data.add(&m.mul_scalar(k.neg_step_size)?.div(&denom)?)?;
        st.exp_avg = Some(m);
        st.exp_avg_sq = Some(v);
        p.set_data(&new)
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.step_with(true)
    }

    super::group_methods!();

    fn state_dict(&self) -> Result<StateDict> {
        self.save_states(&self.state, |i, st, sd| {
            let (m, v) = match (&st.exp_avg, &st.exp_avg_sq) {
                (Some(m), Some(v)) => (m, v),
                // never stepped: PyTorch has no state for it either
                (None, None) => return Ok(()),
                _ => {
                    return Err(Error::OptimizerState {
                        op: "Adam.state_dict",
                        problems: vec![format!(
                            "parameter {i} has only one of its two moment estimates"
                        )],
                    })
                }
            };
            sd.insert(
                format!("state.{i}.step"),
                step_tensor("Adam.state_dict", st.step)?,
            );
            sd.insert(format!("state.{i}.exp_avg"), snapshot(m)?);
            sd.insert(format!("state.{i}.exp_avg_sq"), snapshot(v)?);
            if let Some(mx) = &st.max_exp_avg_sq {
                sd.insert(format!("state.{i}.max_exp_avg_sq"), snapshot(mx)?);
            }
            Ok(())
        })
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.load_states("Adam.load_state_dict", state, |i, p, entries, m, problems| {
            for (name, (key, t)) in entries {
                match *name {
                    "step" => m.step = read_step(key, t, problems),
                    "exp_avg" => m.exp_avg = read_buffer(key, t, p, problems),
                    "exp_avg_sq" => m.exp_avg_sq = read_buffer(key, t, p, problems),
                    "max_exp_avg_sq" => m.max_exp_avg_sq = read_buffer(key, t, p, problems),
                    _ => problems.push(format!("unexpected key `{key}`")),
                }
            }
            let step = entries.contains_key("step");
            if step != m.exp_avg.is_some() || step != m.exp_avg_sq.is_some() {
                problems.push(format!(
                    "parameter {i}: `state.{i}.step`, `state.{i}.exp_avg` and `state.{i}.exp_avg_sq` must be given together"
                ));
            }
        })
    }
}

super::group::grouped!(Adam, AdamConfig, Moments, state);

/// `torch.optim.AdamW`: Adam with decoupled weight decay (PyTorch's default 0.01).
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::{AdamW, AdamWConfig, Optimizer};
/// use nn::{Forward, Linear, ModuleExt, Tensor};
/// let net = Linear::new(3, 1);
/// let mut opt = AdamW::new(net.parameters(), AdamWConfig { lr: 1e-2, ..Default::default() })?;
/// net.forward(&Tensor::ones(&[2, 3]))?.sum()?.backward()?;
/// opt.step()?;
/// assert_eq!(opt.group_lr(0), Some(1e-2));
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug)]
pub struct AdamW(Adam);

impl AdamW {
    /// An optimizer over `params` in one group.
    pub fn new(params: Vec<Param>, cfg: AdamWConfig) -> Result<AdamW> {
        Self::with_groups(vec![ParamGroup::new(params, cfg)])
    }

    /// An optimizer over parameter groups, each with its own hyper-parameters; a
    /// parameter in two groups is an error naming it.
    pub fn with_groups(groups: Vec<ParamGroup<AdamWConfig>>) -> Result<AdamW> {
        let groups = groups
            .into_iter()
            .map(|g| ParamGroup::new(g.params, AdamConfig::from(g.config)))
            .collect();
        Ok(AdamW(Adam::with_groups(groups)?))
    }

    /// PyTorch's `add_param_group`.
    pub fn add_param_group(&mut self, group: ParamGroup<AdamWConfig>) -> Result<()> {
        self.0
            .add_param_group(ParamGroup::new(group.params, group.config.into()))
    }

    /// The hyper-parameters of group `g` (as Adam's, `decoupled_weight_decay` set).
    pub fn group_config(&self, g: usize) -> Option<&AdamConfig> {
        self.0.group_config(g)
    }
}

impl Optimizer for AdamW {
    fn step(&mut self) -> Result<()> {
        self.0.step()
    }
    fn params(&self) -> &[Param] {
        self.0.params()
    }
    fn num_groups(&self) -> usize {
        self.0.num_groups()
    }
    fn group_lr(&self, g: usize) -> Option<f64> {
        self.0.group_lr(g)
    }
    fn set_group_lr(&mut self, g: usize, lr: f64) -> Result<()> {
        self.0.set_group_lr(g, lr)
    }
    fn group_momentum(&self, g: usize) -> Option<f64> {
        self.0.group_momentum(g)
    }
    fn set_group_momentum(&mut self, g: usize, m: f64) -> Result<()> {
        self.0.set_group_momentum(g, m)
    }
    fn group_initial_lr(&self, g: usize) -> Option<f64> {
        self.0.group_initial_lr(g)
    }
    fn set_group_initial_lr(&mut self, g: usize, lr: Option<f64>) -> Result<()> {
        self.0.set_group_initial_lr(g, lr)
    }
    fn state_dict(&self) -> Result<StateDict> {
        self.0.state_dict()
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.0.load_state_dict(state)?;
        // as PyTorch's AdamW.__setstate__: whatever the file says, AdamW decouples
        for g in &mut self.0.groups.groups {
            g.cfg.decoupled_weight_decay = true;
        }
        Ok(())
    }
}
