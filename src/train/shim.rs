//! Stand-ins for pieces being built on other branches (the optimizers, the file format,
//! state-dict loading), with the same signatures, so the training job runs today.
//! Removed once `nn::optim`, `nn::io` and `ModuleExt::load_state_dict` land on main.

use crate::{DType, Error, Module, ModuleExt, Param, Result, StateDict, Tensor};
use std::io::Write;
use std::path::Path;

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
                .ok_or_else(|| Error::StateDict(format!("optimizer state lacks `{k}`")))
        };
        self.steps = get("step")?.to_vec::<i64>()?.first().copied().unwrap_or(0) as u64;
        for i in 0..self.params.len() {
            self.m[i] = get(&format!("{i}.exp_avg"))?.to_vec::<f32>()?;
            self.v[i] = get(&format!("{i}.exp_avg_sq"))?.to_vec::<f32>()?;
        }
        Ok(())
    }
}

/// Loads parameters by name (strict: every parameter must be present).
pub fn load_state_dict(model: &(impl Module + ?Sized), sd: &StateDict) -> Result<()> {
    for (name, p) in model.named_parameters() {
        let t = sd
            .get(&name)
            .ok_or_else(|| Error::StateDict(format!("missing key `{name}`")))?;
        p.set_data(t)?;
    }
    Ok(())
}

const MAGIC: &[u8; 8] = b"NNSHIM01";

/// Writes a state dict to `path` through a temporary file and a rename.
pub fn save(path: &Path, sd: &StateDict) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut buf = MAGIC.to_vec();
    buf.extend((sd.len() as u64).to_le_bytes());
    for (name, t) in sd.iter() {
        buf.extend((name.len() as u64).to_le_bytes());
        buf.extend(name.as_bytes());
        buf.push(matches!(t.dtype(), DType::I64) as u8);
        buf.extend((t.rank() as u64).to_le_bytes());
        for &d in t.shape() {
            buf.extend((d as u64).to_le_bytes());
        }
        match t.dtype() {
            DType::F32 => t
                .to_vec::<f32>()?
                .iter()
                .for_each(|x| buf.extend(x.to_le_bytes())),
            DType::I64 => t
                .to_vec::<i64>()?
                .iter()
                .for_each(|x| buf.extend(x.to_le_bytes())),
        }
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&buf).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn bad(&self, msg: &str) -> Error {
        Error::Format {
            path: self.path.display().to_string(),
            msg: msg.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.bad("overflow"))?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| self.bad("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    fn usize(&mut self) -> Result<usize> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        usize::try_from(u64::from_le_bytes(b)).map_err(|_| self.bad("overflow"))
    }
}

/// Reads a state dict written by [`save`].
pub fn load(path: &Path) -> Result<StateDict> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut r = Reader {
        bytes: &bytes,
        pos: 0,
        path,
    };
    if r.take(8)? != MAGIC {
        return Err(r.bad("not a checkpoint"));
    }
    let n = r.usize()?;
    let mut sd = StateDict::new();
    for _ in 0..n {
        let len = r.usize()?;
        let name = String::from_utf8(r.take(len)?.to_vec()).map_err(|_| r.bad("bad name"))?;
        let is_i64 = r.take(1)?[0] == 1;
        let rank = r.usize()?;
        let mut shape = Vec::new();
        for _ in 0..rank.min(8) {
            shape.push(r.usize()?);
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| r.bad("overflow"))?;
        let width = if is_i64 { 8 } else { 4 };
        let raw = r.take(numel.checked_mul(width).ok_or_else(|| r.bad("overflow"))?)?;
        let t = if is_i64 {
            let v: Vec<i64> = raw
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    i64::from_le_bytes(b)
                })
                .collect();
            Tensor::from_vec(v, &shape)?
        } else {
            let v: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(c);
                    f32::from_le_bytes(b)
                })
                .collect();
            Tensor::from_vec(v, &shape)?
        };
        sd.insert(name, t);
    }
    Ok(sd)
}
