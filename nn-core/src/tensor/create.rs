//! Constructors of new leaf tensors: a scalar, filled tensors (`zeros`, `ones`, `full`),
//! ranges (`arange`) and random draws (`rand`, `randn`, `randint`), each infallible form
//! with its `try_` twin.

use super::{infallible, Tensor};
use crate::shape::{checked_numel, Dims};
use crate::{DType, Error, HostData, Result};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

impl Tensor {
    /// A 0-d f32 tensor.
    #[must_use]
    pub fn scalar(v: f32) -> Tensor {
        Self::host_leaf(HostData::F32(vec![v]), Dims::new())
    }

    /// Zeros (f32).
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can (see [`Tensor::try_zeros`]).
    #[must_use]
    pub fn zeros(shape: &[usize]) -> Tensor {
        Self::full(shape, 0.0)
    }

    /// Ones (f32).
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can (see [`Tensor::try_full`]).
    #[must_use]
    pub fn ones(shape: &[usize]) -> Tensor {
        Self::full(shape, 1.0)
    }

    /// A tensor filled with `v` (f32).
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can; [`Tensor::try_full`] returns
    /// that as an error.
    #[must_use]
    pub fn full(shape: &[usize], v: f32) -> Tensor {
        infallible(Self::try_full(shape, v))
    }

    /// Zeros of a given dtype.
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can (see [`Tensor::try_zeros_dtype`]).
    #[must_use]
    pub fn zeros_dtype(shape: &[usize], dtype: DType) -> Tensor {
        infallible(Self::try_zeros_dtype(shape, dtype))
    }

    /// Zeros (f32), or [`Error::BadShape`] / [`Error::OutOfMemory`] for a shape no
    /// allocation can hold.
    pub fn try_zeros(shape: &[usize]) -> Result<Tensor> {
        Self::try_full(shape, 0.0)
    }

    /// A tensor filled with `v` (f32), or an error for a shape no allocation can hold.
    pub fn try_full(shape: &[usize], v: f32) -> Result<Tensor> {
        let n = checked_numel("full", shape)?;
        let data = HostData::F32(crate::host::try_filled(n, v, "full")?);
        Ok(Self::host_leaf(data, Dims::from_slice(shape)))
    }

    /// Zeros of a given dtype, or an error for a shape no allocation can hold.
    pub fn try_zeros_dtype(shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n = checked_numel("zeros", shape)?;
        Ok(Self::host_leaf(
            HostData::zeros(n, dtype)?,
            Dims::from_slice(shape),
        ))
    }

    /// Zeros with the shape, dtype and device of `self`.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros_dtype(self.shape(), self.dtype()).to_device(&self.device())
    }

    /// Ones with the shape and device of `self` (f32).
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape()).to_device(&self.device())
    }

    /// `[start, start + 1, ...)` below `end`, as i64 (PyTorch's `arange` on integers).
    ///
    /// # Panics
    ///
    /// When the range holds more elements than memory can (see [`Tensor::try_arange`]).
    #[must_use]
    pub fn arange(start: i64, end: i64) -> Tensor {
        infallible(Self::try_arange(start, end))
    }

    /// `[start, start + 1, ...)` below `end` (i64), or an error when the range holds
    /// more elements than memory can.
    pub fn try_arange(start: i64, end: i64) -> Result<Tensor> {
        // saturating: a range wider than i64 is as refused as any other too long one
        let len = usize::try_from(end.saturating_sub(start).max(0)).unwrap_or(usize::MAX);
        let n = checked_numel("arange", &[len])?;
        let v = crate::host::try_collect((0..n).map(|i| start + i as i64), "arange")?;
        Ok(Self::host_leaf(HostData::I64(v), smallvec::smallvec![n]))
    }

    /// `[start, start+step, ...)` below `end`, as f32.
    pub fn arange_f32(start: f32, end: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid_config(
                "arange_f32",
                "range",
                format!("{start}..{end} step {step}"),
                "bounds and step must be finite and the step non-zero",
            ));
        }
        // `as usize` saturates (1e30 / 1e-30 asks for usize::MAX elements), and the
        // shared size check then refuses it with that shape
        let n = checked_numel(
            "arange_f32",
            &[((end - start) / step).ceil().max(0.0) as usize],
        )?;
        let v = crate::host::try_collect((0..n).map(|i| start + i as f32 * step), "arange_f32")?;
        Ok(Self::host_leaf(HostData::F32(v), smallvec::smallvec![n]))
    }

    /// Uniform samples in `[0, 1)` from the global generator.
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can (see [`Tensor::try_rand_uniform`]).
    #[must_use]
    pub fn rand(shape: &[usize]) -> Tensor {
        Self::rand_uniform(shape, 0.0, 1.0)
    }

    /// Uniform samples in `[lo, hi)` from the global generator.
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can (see [`Tensor::try_rand_uniform`]).
    #[must_use]
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32) -> Tensor {
        infallible(Self::try_rand_uniform(shape, lo, hi))
    }

    /// Uniform samples in `[lo, hi)`, or an error for a shape no allocation can hold.
    pub fn try_rand_uniform(shape: &[usize], lo: f32, hi: f32) -> Result<Tensor> {
        let n = checked_numel("rand", shape)?;
        let v = crate::rng::with_rng(|r| {
            crate::host::try_collect((0..n).map(|_| lo + (hi - lo) * r.random::<f32>()), "rand")
        })?;
        Ok(Self::host_leaf(HostData::F32(v), Dims::from_slice(shape)))
    }

    /// Standard normal samples from the global generator.
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can (see [`Tensor::try_randn_with`]).
    #[must_use]
    pub fn randn(shape: &[usize]) -> Tensor {
        Self::randn_with(shape, 0.0, 1.0)
    }

    /// Normal samples with the given mean and standard deviation.
    ///
    /// # Panics
    ///
    /// When `shape` holds more elements than memory can (see [`Tensor::try_randn_with`]).
    #[must_use]
    pub fn randn_with(shape: &[usize], mean: f32, std: f32) -> Tensor {
        infallible(Self::try_randn_with(shape, mean, std))
    }

    /// Normal samples, or an error for a shape no allocation can hold.
    pub fn try_randn_with(shape: &[usize], mean: f32, std: f32) -> Result<Tensor> {
        let n = checked_numel("randn", shape)?;
        let v = crate::rng::with_rng(|r| {
            let draw = (0..n).map(|_| {
                let z: f32 = StandardNormal.sample(r);
                mean + std * z
            });
            crate::host::try_collect(draw, "randn")
        })?;
        Ok(Self::host_leaf(HostData::F32(v), Dims::from_slice(shape)))
    }

    /// Integer samples in `[lo, hi)` (i64); an error for an empty range or a shape no
    /// allocation can hold.
    pub fn randint(shape: &[usize], lo: i64, hi: i64) -> Result<Tensor> {
        if hi <= lo {
            return Err(Error::EmptyInput {
                op: "randint",
                what: format!("the range {lo}..{hi}"),
            });
        }
        let n = checked_numel("randint", shape)?;
        let v = crate::rng::with_rng(|r| {
            crate::host::try_collect((0..n).map(|_| r.random_range(lo..hi)), "randint")
        })?;
        Ok(Self::host_leaf(HostData::I64(v), Dims::from_slice(shape)))
    }
}
