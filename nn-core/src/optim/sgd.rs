//! Stochastic gradient descent with momentum, dampening, weight decay and Nesterov
//! momentum, exactly as `torch.optim.SGD`:
//!
//! ```text
//! g = grad + weight_decay * p
//! buf = g                                        (first step)
//! buf = momentum * buf + (1 - dampening) * g     (later steps)
//! g = g + momentum * buf  (nesterov)   or   g = buf
//! p = p - lr * g
//! ```

use super::{
    check_hyper, dedupe, fusable, next_step, problems_to_result, read_buffer, read_step, snapshot,
    split_key, step_tensor, zeros_on_device, Optimizer,
};
use crate::backend::SgdStep;
use crate::{Error, Param, Result, StateDict, Tensor};

/// Hyperparameters of [`Sgd`] (PyTorch's defaults apart from `lr`, which has none there).
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
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// `torch.optim.SGD`.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<Param>,
    cfg: SgdConfig,
    bufs: Vec<Option<Tensor>>,
    steps: u64,
}

impl Sgd {
    /// An optimizer over `params` (a tied parameter listed twice is updated once).
    pub fn new(params: Vec<Param>, cfg: SgdConfig) -> Result<Sgd> {
        check_hyper("SGD", "lr", cfg.lr)?;
        check_hyper("SGD", "momentum", cfg.momentum)?;
        check_hyper("SGD", "dampening", cfg.dampening)?;
        check_hyper("SGD", "weight_decay", cfg.weight_decay)?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(Error::invalid_config(
                "SGD",
                "nesterov",
                format!(
                    "true (momentum {}, dampening {})",
                    cfg.momentum, cfg.dampening
                ),
                "nesterov momentum requires a momentum and zero dampening",
            ));
        }
        let params = dedupe(params);
        let bufs = vec![None; params.len()];
        Ok(Sgd {
            params,
            cfg,
            bufs,
            steps: 0,
        })
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

    /// The hyperparameters.
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }

    /// One update of every parameter with a gradient: fused on its device when `fused`
    /// and the backend has a fused update, with tensor ops otherwise (the reference the
    /// tests compare the fused path with).
    pub(crate) fn step_with(&mut self, fused: bool) -> Result<()> {
        let _ng = crate::NoGradGuard::new();
        for i in 0..self.params.len() {
            let Some(g) = self.params[i].grad() else {
                continue;
            };
            let done = fused && fusable(&self.params[i], &g) && self.step_fused(i, &g)?;
            if !done {
                self.step_generic(i, &g)?;
            }
        }
        self.steps = next_step(self.steps);
        Ok(())
    }

    /// One parameter in one fused pass on its device; `Ok(false)` when the backend has
    /// no fused update (nothing was changed then).
    fn step_fused(&mut self, i: usize, g: &Tensor) -> Result<bool> {
        let c = self.cfg;
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
        let done = self.params[i].update_in_place(|p| {
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

    /// One parameter with tensor ops (backends without a fused update).
    fn step_generic(&mut self, i: usize, g: &Tensor) -> Result<()> {
        let c = self.cfg;
        let p = &self.params[i];
        let data = p.data()?;
        let mut d = g.clone();
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

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_hyper("SGD.set_lr", "lr", lr)?;
        self.cfg.lr = lr;
        Ok(())
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        sd.insert("step", step_tensor("SGD.state_dict", self.steps)?);
        for (i, b) in self.bufs.iter().enumerate() {
            if let Some(b) = b {
                sd.insert(format!("{i}.momentum_buffer"), snapshot(b)?);
            }
        }
        Ok(sd)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let mut problems = Vec::new();
        let mut steps = self.steps;
        let mut bufs: Vec<Option<Tensor>> = vec![None; self.params.len()];
        for (key, t) in state.iter() {
            match split_key(key) {
                _ if key == "step" => steps = read_step(key, t, &mut problems),
                Some((i, "momentum_buffer")) if i < self.params.len() => {
                    bufs[i] = read_buffer(key, t, &self.params[i], &mut problems);
                }
                _ => problems.push(format!("unexpected key `{key}`")),
            }
        }
        problems_to_result("SGD.load_state_dict", problems)?;
        self.steps = steps;
        self.bufs = bufs;
        Ok(())
    }
}
