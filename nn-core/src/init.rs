//! Parameter initializers: constants, uniform, normal, Xavier, Kaiming, PyTorch's Linear
//! defaults and user-defined functions.
//!
//! Each initializer draws from its own stream (a key per parameter), so values depend
//! on the seed and the parameter's creation order only, never on when its shape became
//! known: a lazy model and an eager one built under one seed get identical weights.

use crate::{Error, Result, Tensor};
use rand::rngs::StdRng;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;
use std::sync::Arc;

/// Fan-in and fan-out of a weight, as PyTorch's `_calculate_fan_in_and_fan_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fans {
    /// Inputs feeding one output.
    pub fan_in: usize,
    /// Outputs fed by one input.
    pub fan_out: usize,
}

impl Fans {
    /// Fans of a weight shape `[out, in, *receptive]` (a 1-d shape has fan_in = fan_out = len).
    pub fn of(shape: &[usize]) -> Fans {
        match shape {
            [] => Fans {
                fan_in: 1,
                fan_out: 1,
            },
            [n] => Fans {
                fan_in: *n,
                fan_out: *n,
            },
            [o, i, rest @ ..] => {
                // saturating: with a zero dim elsewhere the product need not fit
                let r = rest.iter().fold(1usize, |n, &d| n.saturating_mul(d));
                Fans {
                    fan_in: i.saturating_mul(r),
                    fan_out: o.saturating_mul(r),
                }
            }
        }
    }
}

/// A user-defined initializer: fills a tensor of `shape` from `rng`.
pub type InitFn = dyn Fn(&[usize], &mut StdRng) -> Result<Tensor> + Send + Sync;

/// How to fill a parameter.
#[derive(Clone)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// A constant.
    Constant(f32),
    /// U(lo, hi).
    Uniform {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// N(mean, std^2).
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// Xavier/Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).
    XavierUniform {
        /// Scale factor on the bound (1 for linear/sigmoid layers).
        gain: f32,
    },
    /// Xavier/Glorot normal: std = gain * sqrt(2 / (fan_in + fan_out)).
    XavierNormal {
        /// Scale factor on the standard deviation (1 for linear/sigmoid layers).
        gain: f32,
    },
    /// Kaiming/He uniform (fan-in mode, leaky-ReLU slope `a`): bound = gain * sqrt(3 / fan_in),
    /// gain = sqrt(2 / (1 + a^2)).
    KaimingUniform {
        /// Negative slope of the leaky ReLU that follows (0 for ReLU).
        a: f32,
    },
    /// Kaiming/He normal (fan-in mode): std = gain / sqrt(fan_in).
    KaimingNormal {
        /// Negative slope of the leaky ReLU that follows (0 for ReLU); gain as above.
        a: f32,
    },
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's Linear bias default.
    FanInUniform,
    /// A user-defined function.
    Custom(Arc<InitFn>),
}

impl Init {
    /// PyTorch's default for a Linear weight: Kaiming uniform with a = sqrt(5), i.e.
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    pub fn linear_default() -> Init {
        Init::KaimingUniform { a: 5f32.sqrt() }
    }

    /// Xavier uniform with gain 1.
    pub fn xavier_uniform() -> Init {
        Init::XavierUniform { gain: 1.0 }
    }

    /// N(mean, std^2): normal samples with the given mean and standard deviation
    /// (PyTorch's `nn.init.normal_(t, mean, std)`).
    pub fn normal(mean: f32, std: f32) -> Init {
        Init::Normal { mean, std }
    }

    /// A user-defined initializer from a closure.
    pub fn custom(
        f: impl Fn(&[usize], &mut StdRng) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Init {
        Init::Custom(Arc::new(f))
    }

    /// A tensor of `shape` drawn from the stream `key`.
    pub fn tensor(&self, shape: &[usize], fans: Fans, key: u64) -> Result<Tensor> {
        let mut rng = crate::rng::stream(key);
        // sizes come from the caller: checked, and allocated fallibly (OutOfMemory)
        let n = crate::shape::checked_numel("init", shape)?;
        let uniform = |rng: &mut StdRng, lo: f32, hi: f32| -> Result<Vec<f32>> {
            crate::host::try_collect((0..n).map(|_| lo + (hi - lo) * rng.random::<f32>()), "init")
        };
        let normal = |rng: &mut StdRng, mean: f32, std: f32| -> Result<Vec<f32>> {
            let draw = (0..n).map(|_| {
                let z: f32 = StandardNormal.sample(rng);
                mean + std * z
            });
            crate::host::try_collect(draw, "init")
        };
        let filled = |v: f32| crate::host::try_filled(n, v, "init");
        let fi = fans.fan_in.max(1) as f32;
        let fo = fans.fan_out.max(1) as f32;
        let v = match self {
            Init::Zeros => filled(0.0)?,
            Init::Ones => filled(1.0)?,
            Init::Constant(c) => filled(*c)?,
            Init::Uniform { lo, hi } => uniform(&mut rng, *lo, *hi)?,
            Init::Normal { mean, std } => normal(&mut rng, *mean, *std)?,
            Init::XavierUniform { gain } => {
                let a = gain * (6.0 / (fi + fo)).sqrt();
                uniform(&mut rng, -a, a)?
            }
            Init::XavierNormal { gain } => normal(&mut rng, 0.0, gain * (2.0 / (fi + fo)).sqrt())?,
            Init::KaimingUniform { a } => {
                let gain = (2.0 / (1.0 + a * a)).sqrt();
                let b = gain * (3.0 / fi).sqrt();
                uniform(&mut rng, -b, b)?
            }
            Init::KaimingNormal { a } => {
                let gain = (2.0 / (1.0 + a * a)).sqrt();
                normal(&mut rng, 0.0, gain / fi.sqrt())?
            }
            Init::FanInUniform => {
                let b = 1.0 / fi.sqrt();
                uniform(&mut rng, -b, b)?
            }
            Init::Custom(f) => {
                let t = f(shape, &mut rng)?;
                if t.shape() != shape {
                    return Err(Error::mismatch("custom initializer", shape, t.shape()));
                }
                return Ok(t);
            }
        };
        Tensor::from_vec(v, shape)
    }
}

impl fmt::Debug for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Zeros => f.write_str("Zeros"),
            Init::Ones => f.write_str("Ones"),
            Init::Constant(c) => write!(f, "Constant({c})"),
            Init::Uniform { lo, hi } => write!(f, "Uniform({lo}, {hi})"),
            Init::Normal { mean, std } => write!(f, "Normal({mean}, {std})"),
            Init::XavierUniform { gain } => write!(f, "XavierUniform(gain={gain})"),
            Init::XavierNormal { gain } => write!(f, "XavierNormal(gain={gain})"),
            Init::KaimingUniform { a } => write!(f, "KaimingUniform(a={a})"),
            Init::KaimingNormal { a } => write!(f, "KaimingNormal(a={a})"),
            Init::FanInUniform => f.write_str("FanInUniform"),
            Init::Custom(_) => f.write_str("Custom"),
        }
    }
}
