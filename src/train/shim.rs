//! A stand-in for `nn::optim::Adam` (built on another branch), with the same signatures,
//! so the training job runs before it lands. Removed once `nn::optim` is on main.

use crate::{Error, Param, Result, StateDict, Tensor};

/// The optimizer interface of `nn::optim` (subset used here).
pub trait Optimizer {
    /// One update of every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Forgets every gradient.
    fn zero_grad(&self);
    /// A snapshot of the state.
    fn state_dict(&self) -> StateDict;
    /// Restores a snapshot.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;
}

/// Adam with PyTorch's defaults (betas 0.9/0.999, eps 1e-8), on host vectors.
pub struct Adam {
    params: Vec<Param>,
    lr: f64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    steps: u64,
}

impl Adam {
    /// Adam with learning rate `lr`.
    pub fn with_lr(params: Vec<Param>, lr: f64) -> Result<Adam> {
        let n = params.len();
        Ok(Adam {
            params,
            lr,
            m: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            steps: 0,
        })
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let step_size = self.lr as f32 / bc1;
        for (i, p) in self.params.iter().enumerate() {
            let Some(g) = p.grad() else { continue };
            let g = g.to_vec::<f32>()?;
            let d = p.data()?;
            let mut w = d.to_vec::<f32>()?;
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            if m.len() != g.len() {
                *m = vec![0.0; g.len()];
                *v = vec![0.0; g.len()];
            }
            for j in 0..g.len() {
                m[j] += (1.0 - b1) * (g[j] - m[j]);
                v[j] = v[j] * b2 + (1.0 - b2) * g[j] * g[j];
                w[j] -= step_size * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
            }
            p.set_data(&Tensor::from_vec(w, d.shape())?.to_device(&d.device())?)?;
        }
        Ok(())
    }

    fn zero_grad(&self) {
        for p in &self.params {
            p.zero_grad();
        }
    }

    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        if let Ok(t) = Tensor::from_vec(vec![self.steps as i64], &[]) {
            sd.insert("step", t);
        }
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            if let (Ok(m), Ok(v)) = (
                Tensor::from_slice(m, &[m.len()]),
                Tensor::from_slice(v, &[v.len()]),
            ) {
                sd.insert(format!("{i}.exp_avg"), m);
                sd.insert(format!("{i}.exp_avg_sq"), v);
            }
        }
        sd
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let get = |k: &str| {
            state
                .get(k)
                .ok_or_else(|| Error::Msg(format!("optimizer state lacks `{k}`")))
        };
        self.steps = get("step")?.to_vec::<i64>()?.first().copied().unwrap_or(0) as u64;
        for i in 0..self.params.len() {
            self.m[i] = get(&format!("{i}.exp_avg"))?.to_vec::<f32>()?;
            self.v[i] = get(&format!("{i}.exp_avg_sq"))?.to_vec::<f32>()?;
        }
        Ok(())
    }
}
