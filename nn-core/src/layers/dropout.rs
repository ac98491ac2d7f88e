//! `Dropout`: inverted dropout, active in training mode only.
//!
//! Training: y = x * m / (1 - p), m_i ~ Bernoulli(1 - p) drawn from the thread's generator
//! ([`crate::rng::with_rng`], so [`crate::manual_seed`] makes masks reproducible).
//! Evaluation ([`crate::ModuleExt::eval`]): y = x. Any shape in, the same shape out.
//!
//! dy/dx = m / (1 - p): the mask times the scale, which autograd gets from the product with
//! the constant mask tensor. With p = 1 every unit is dropped and y = 0 (PyTorch's rule).
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::Dropout, Forward, ModuleExt, Tensor};
//! let mut drop = Dropout::new(0.5);
//! let x = Tensor::ones(&[2, 1000]);
//! let y = drop.forward(&x)?;
//! // every output is 0 or 1 / (1 - p) = 2, and the expectation is kept
//! assert!(y.to_vec::<f32>()?.iter().all(|&v| v == 0.0 || v == 2.0));
//! assert!((y.mean()?.item()? - 1.0).abs() < 0.1);
//! drop.eval();
//! assert_eq!(drop.forward(&x)?.to_vec::<f32>()?, x.to_vec::<f32>()?);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::module::{Forward, Module, Visitor, VisitorMut};
use crate::{Error, Result, Tensor};

/// Randomly zeroes elements with probability `p` while training and rescales the rest by
/// `1 / (1 - p)`; the identity in evaluation mode.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f32,
    training: bool,
}

impl Dropout {
    /// Dropout with drop probability `p`, in training mode (as PyTorch modules start).
    /// A `p` outside `[0, 1]` is reported by the first forward.
    pub fn new(p: f32) -> Dropout {
        Dropout { p, training: true }
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Whether the layer is in training mode (dropping units).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The mask-and-scale tensor `m / (1 - p)` for an input of `shape`, drawn from the
    /// thread's generator.
    pub(crate) fn mask(&self, shape: &[usize]) -> Result<Tensor> {
        let n = crate::shape::checked_numel("dropout", shape)?;
        let keep = 1.0 - self.p;
        let scale = if keep > 0.0 { 1.0 / keep } else { 0.0 };
        Tensor::from_vec(crate::rng::keep_mask(n, keep, scale)?, shape)
    }
}

impl Default for Dropout {
    /// `p = 0.5`, PyTorch's default.
    fn default() -> Self {
        Dropout::new(0.5)
    }
}

impl Module for Dropout {
    fn visit<'a>(&'a self, _v: &mut dyn Visitor<'a>) {}
    fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
    fn module_name(&self) -> String {
        "Dropout".into()
    }
    fn extra_repr(&self) -> String {
        format!(
            "p={}, inplace=False",
            crate::module::python_float_f32(self.p)
        )
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl Forward for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&self.p) {
            return Err(Error::invalid_config(
                "Dropout",
                "probability",
                format!("p={}", self.p),
                "must be in [0, 1]",
            ));
        }
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        let m = self.mask(x.shape())?.to_device(&x.device())?;
        x.mul(&m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::check_grad;
    use crate::ModuleExt;

    #[test]
    fn gradient_is_mask_times_scale() -> Result<()> {
        // the same seed before every forward gives the same mask, so finite differences
        // see one fixed function
        let drop = Dropout::new(0.3);
        check_grad(&[&[4, 5]], |xs| {
            crate::manual_seed(11);
            drop.forward(&xs[0])
        })?;
        // hand-derived: y = x * m / (1 - p), so dy/dx = m / (1 - p) = y / x (x != 0)
        crate::manual_seed(11);
        let x = Tensor::full(&[4, 5], 3.0).with_requires_grad(true);
        let y = drop.forward(&x)?;
        y.sum()?.backward()?;
        let g = x.grad().ok_or_else(|| Error::MissingKey {
            container: "gradients".into(),
            key: "x".into(),
        })?;
        let (g, y) = (g.to_vec::<f32>()?, y.to_vec::<f32>()?);
        for (gi, yi) in g.iter().zip(&y) {
            assert!((gi - yi / 3.0).abs() < 1e-6);
            assert!(*gi == 0.0 || (gi - 1.0 / 0.7).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn keeps_expectation_and_drop_rate() -> Result<()> {
        crate::manual_seed(3);
        let drop = Dropout::new(0.25);
        let y = drop.forward(&Tensor::ones(&[100, 100]))?.to_vec::<f32>()?;
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f32 / y.len() as f32;
        let mean = y.iter().sum::<f32>() / y.len() as f32;
        assert!((dropped - 0.25).abs() < 0.02, "drop rate {dropped}");
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        Ok(())
    }

    #[test]
    fn eval_is_identity_and_train_restores() -> Result<()> {
        let mut drop = Dropout::new(0.9);
        let x = Tensor::rand(&[3, 7]);
        drop.eval();
        assert!(!drop.is_training());
        assert_eq!(drop.forward(&x)?.to_vec::<f32>()?, x.to_vec::<f32>()?);
        drop.train();
        assert!(drop.is_training());
        let y = drop.forward(&Tensor::ones(&[1000]))?.to_vec::<f32>()?;
        assert!(y.contains(&0.0));
        Ok(())
    }

    #[test]
    fn edge_probabilities() -> Result<()> {
        let x = Tensor::rand(&[2, 3]);
        let y = Dropout::new(1.0).forward(&x)?;
        assert!(y.to_vec::<f32>()?.iter().all(|&v| v == 0.0));
        let y = Dropout::new(0.0).forward(&x)?;
        assert_eq!(y.to_vec::<f32>()?, x.to_vec::<f32>()?);
        let err = Dropout::new(1.5).forward(&x).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("p=1.5")));
        assert_eq!(Dropout::new(0.5).repr(), "Dropout(p=0.5, inplace=False)");
        Ok(())
    }

    #[test]
    fn masks_are_the_per_draw_formulation_bit_for_bit() -> Result<()> {
        use rand::RngExt;
        // sizes below and above the pool split, odd lengths, p at the edges
        for (n, p) in [(0, 0.1), (1, 0.1), (37, 0.5), (70_001, 0.1), (200_003, 0.9)] {
            crate::manual_seed(5);
            let keep = 1.0f32 - p;
            let scale = 1.0 / keep;
            let want: Vec<f32> = crate::rng::with_rng(|r| {
                (0..n)
                    .map(|_| if r.random::<f32>() < keep { scale } else { 0.0 })
                    .collect()
            });
            let after = crate::rng::with_rng(|r| r.random::<u64>());
            crate::manual_seed(5);
            let got = crate::rng::keep_mask(n, keep, scale)?;
            assert_eq!(got, want, "n {n}, p {p}");
            // the generator stands where the per-draw loop left it
            assert_eq!(crate::rng::with_rng(|r| r.random::<u64>()), after);
        }
        Ok(())
    }
}
