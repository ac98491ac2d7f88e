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
    check_hyper, dedupe, next_step, problems_to_result, read_buffer, read_step, snapshot,
    split_key, step_tensor, Optimizer,
};
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

    /// One parameter with tensor ops (any device; data shared with live tensors).
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

/// The fused host update of one parameter; `buf` is None without momentum, `first` on
/// the step that creates the buffer.
fn sgd_kernel(c: &SgdConfig, p: &mut [f32], g: &[f32], buf: Option<&mut [f32]>, first: bool) {
    let (lr, wd) = (c.lr as f32, c.weight_decay as f32);
    let (mom, damp) = (c.momentum as f32, (1.0 - c.dampening) as f32);
    match buf {
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                let d = if wd != 0.0 { g + wd * *p } else { g };
                *p += -lr * d;
            }
        }
        Some(b) => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                let d = if wd != 0.0 { g + wd * *p } else { g };
                *b = if first { d } else { *b * mom + damp * d };
                let d = if c.nesterov { d + mom * *b } else { *b };
                *p += -lr * d;
            }
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let _ng = crate::NoGradGuard::new();
        for i in 0..self.params.len() {
            let Some(g) = self.params[i].grad() else {
                continue;
            };
            let mut done = false;
            if let Some(gs) = crate::cpu::tensor_f32(&g) {
                let momentum = self.cfg.momentum != 0.0;
                let first = momentum && self.bufs[i].is_none();
                if first {
                    self.bufs[i] = Some(Tensor::zeros(g.shape()));
                }
                let buf = match &mut self.bufs[i] {
                    Some(b) if momentum => crate::cpu::tensor_f32_mut(b).map(Some),
                    _ => Some(None),
                };
                if let Some(buf) = buf {
                    let c = self.cfg;
                    if gs.len() == self.params[i].numel() {
                        done = self.params[i]
                            .with_data_mut(|p| sgd_kernel(&c, p, gs, buf, first))?
                            .is_some();
                    }
                }
                if first && !done {
                    self.bufs[i] = None;
                }
            }
            if !done {
                self.step_generic(i, &g)?;
            }
        }
        self.steps = next_step(self.steps);
        Ok(())
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
