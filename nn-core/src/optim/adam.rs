//! Adam with bias correction and (L2) weight decay, exactly as `torch.optim.Adam`
//! (`amsgrad=False`, `maximize=False`):
//!
//! ```text
//! t = t + 1
//! g = grad + weight_decay * p
//! m = m + (1 - beta1) * (g - m)              (lerp)
//! v = beta2 * v + (1 - beta2) * g * g
//! step_size = lr / (1 - beta1^t)
//! denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//! p = p - step_size * m / denom
//! ```
//!
//! Each parameter keeps its own `t`, so a parameter that had no gradient at some step
//! is corrected as PyTorch corrects it.

use super::{
    check_hyper, dedupe, fusable, next_step, problems_to_result, read_buffer, read_step, snapshot,
    split_key, step_tensor, zeros_on_device, Optimizer,
};
use crate::backend::AdamStep;
use crate::{Error, Param, Result, StateDict, Tensor};

/// Hyperparameters of [`Adam`] (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator for stability.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Per-parameter state.
#[derive(Debug, Clone, Default)]
struct Moments {
    step: u64,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
}

/// `torch.optim.Adam`.
#[derive(Debug)]
pub struct Adam {
    params: Vec<Param>,
    cfg: AdamConfig,
    state: Vec<Moments>,
    steps: u64,
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
        weight_decay: c.weight_decay as f32,
    }
}

impl Adam {
    /// An optimizer over `params` (a tied parameter listed twice is updated once).
    pub fn new(params: Vec<Param>, cfg: AdamConfig) -> Result<Adam> {
        check_hyper("Adam", "lr", cfg.lr)?;
        check_hyper("Adam", "eps", cfg.eps)?;
        check_hyper("Adam", "weight_decay", cfg.weight_decay)?;
        for (name, b) in [("beta1", cfg.betas.0), ("beta2", cfg.betas.1)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid_config("Adam", name, b, "must be in [0, 1)"));
            }
        }
        let params = dedupe(params);
        let state = vec![Moments::default(); params.len()];
        Ok(Adam {
            params,
            cfg,
            state,
            steps: 0,
        })
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

    /// The hyperparameters.
    pub fn config(&self) -> &AdamConfig {
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
            let step = next_step(self.state[i].step);
            let k = coeffs(&self.cfg, step);
            let done = fused && fusable(&self.params[i], &g) && self.step_fused(i, &g, &k)?;
            if !done {
                self.step_generic(i, &g, &k)?;
            }
            self.state[i].step = step;
        }
        self.steps = next_step(self.steps);
        Ok(())
    }

    /// One parameter in one fused pass on its device; `Ok(false)` when the backend has
    /// no fused update (nothing was changed then).
    fn step_fused(&mut self, i: usize, g: &Tensor, k: &AdamStep) -> Result<bool> {
        let st = &mut self.state[i];
        let fresh = st.exp_avg.is_none() || st.exp_avg_sq.is_none();
        if fresh {
            st.exp_avg = Some(zeros_on_device(g)?);
            st.exp_avg_sq = Some(zeros_on_device(g)?);
        }
        let done = match (&mut st.exp_avg, &mut st.exp_avg_sq) {
            (Some(m), Some(v)) => self.params[i].update_in_place(|p| {
                p.adam_step(g.storage().as_ref(), m.make_mut()?, v.make_mut()?, k)
            }),
            _ => Ok(false),
        };
        if fresh && !matches!(done, Ok(true)) {
            st.exp_avg = None;
            st.exp_avg_sq = None;
        }
        done
    }

    /// One parameter with tensor ops (backends without a fused update).
    fn step_generic(&mut self, i: usize, g: &Tensor, k: &AdamStep) -> Result<()> {
        let p = &self.params[i];
        let data = p.data()?;
        let g = if k.weight_decay != 0.0 {
            g.add(&data.mul_scalar(k.weight_decay)?)?
        } else {
            g.clone()
        };
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
        // a true division, not a product with the reciprocal: the fused updates divide,
        // and the two paths give identical results
        let bc2 = Tensor::scalar(k.bias_correction2_sqrt).to_device(&v.device())?;
        let denom = v.sqrt()?.div(&bc2)?.add_scalar(k.eps)?;
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

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_hyper("Adam.set_lr", "lr", lr)?;
        self.cfg.lr = lr;
        Ok(())
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        sd.insert("step", step_tensor("Adam.state_dict", self.steps)?);
        for (i, st) in self.state.iter().enumerate() {
            let (m, v) = match (&st.exp_avg, &st.exp_avg_sq) {
                (Some(m), Some(v)) => (m, v),
                // never stepped: PyTorch has no state for it either
                (None, None) => continue,
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
                format!("{i}.step"),
                step_tensor("Adam.state_dict", st.step)?,
            );
            sd.insert(format!("{i}.exp_avg"), snapshot(m)?);
            sd.insert(format!("{i}.exp_avg_sq"), snapshot(v)?);
        }
        Ok(sd)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let mut problems = Vec::new();
        let mut steps = self.steps;
        let mut moments = vec![Moments::default(); self.params.len()];
        for (key, t) in state.iter() {
            match split_key(key) {
                _ if key == "step" => steps = read_step(key, t, &mut problems),
                Some((i, name)) if i < self.params.len() => {
                    let p = &self.params[i];
                    match name {
                        "step" => moments[i].step = read_step(key, t, &mut problems),
                        "exp_avg" => moments[i].exp_avg = read_buffer(key, t, p, &mut problems),
                        "exp_avg_sq" => {
                            moments[i].exp_avg_sq = read_buffer(key, t, p, &mut problems)
                        }
                        _ => problems.push(format!("unexpected key `{key}`")),
                    }
                }
                _ => problems.push(format!("unexpected key `{key}`")),
            }
        }
        for (i, m) in moments.iter().enumerate() {
            if m.exp_avg.is_some() != m.exp_avg_sq.is_some() || (m.step > 0) != m.exp_avg.is_some()
            {
                problems.push(format!(
                    "parameter {i}: `{i}.step`, `{i}.exp_avg` and `{i}.exp_avg_sq` must be given together"
                ));
            }
        }
        problems_to_result("Adam.load_state_dict", problems)?;
        self.steps = steps;
        self.state = moments;
        Ok(())
    }
}
