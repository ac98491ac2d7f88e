//! Loss layers by PyTorch's names (`nn.CrossEntropyLoss` ...), each holding its options
//! (set with builder methods) and calling its function in [`crate::functional`]:
//! `loss = criterion.forward(&output, &target)?`. Not modules: they hold no parameters
//! and do not go in `sequential!` chains (PyTorch's are modules only to hold `weight`).
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::layers::CrossEntropyLoss;
//! use nn::{Reduction, Tensor};
//! let criterion = CrossEntropyLoss::new().label_smoothing(0.1).ignore_index(0);
//! let logits = Tensor::randn(&[4, 3]).with_requires_grad(true);
//! let y = Tensor::from_vec(vec![0i64, 2, 1, 1], &[4])?;
//! let loss = criterion.forward(&logits, &y)?;
//! loss.backward()?;
//! assert_eq!(criterion.reduction(Reduction::Sum).forward(&logits, &y)?.shape(), &[] as &[usize]);
//! # Ok::<(), nn::Error>(())
//! ```

use crate::functional as F;
use crate::{Reduction, Result, Tensor};

/// PyTorch's `nn.CrossEntropyLoss`: [`F::cross_entropy`] with `weight`,
/// `ignore_index` (default -100), `reduction` (default mean) and `label_smoothing`.
#[derive(Debug, Clone)]
pub struct CrossEntropyLoss {
    weight: Option<Tensor>,
    ignore_index: i64,
    reduction: Reduction,
    label_smoothing: f32,
}

impl Default for CrossEntropyLoss {
    fn default() -> Self {
        Self::new()
    }
}

impl CrossEntropyLoss {
    /// PyTorch's defaults: no weight, `ignore_index = -100`, mean, no smoothing.
    pub fn new() -> Self {
        CrossEntropyLoss {
            weight: None,
            ignore_index: -100,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
        }
    }
    /// A weight per class (`[C]`).
    #[must_use]
    pub fn weight(mut self, w: Tensor) -> Self {
        self.weight = Some(w);
        self
    }
    /// The target value that is skipped (class-index targets).
    #[must_use]
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = i;
        self
    }
    /// How the per-target losses are reduced.
    #[must_use]
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }
    /// The share of the target spread evenly over the classes, in [0, 1].
    #[must_use]
    pub fn label_smoothing(mut self, ls: f32) -> Self {
        self.label_smoothing = ls;
        self
    }
    /// The loss of logits `input` against `target` (classes or probabilities).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        F::cross_entropy(
            input,
            target,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
        )
    }
}

/// PyTorch's `nn.NLLLoss`: [`F::nll_loss`] with `weight`, `ignore_index` (default
/// -100) and `reduction`.
#[derive(Debug, Clone)]
pub struct NllLoss {
    weight: Option<Tensor>,
    ignore_index: i64,
    reduction: Reduction,
}

impl Default for NllLoss {
    fn default() -> Self {
        Self::new()
    }
}

impl NllLoss {
    /// PyTorch's defaults: no weight, `ignore_index = -100`, mean.
    pub fn new() -> Self {
        NllLoss {
            weight: None,
            ignore_index: -100,
            reduction: Reduction::Mean,
        }
    }
    /// A weight per class (`[C]`).
    #[must_use]
    pub fn weight(mut self, w: Tensor) -> Self {
        self.weight = Some(w);
        self
    }
    /// The target value that is skipped.
    #[must_use]
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = i;
        self
    }
    /// How the per-target losses are reduced.
    #[must_use]
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }
    /// The loss of log-probabilities `input` against class indices `target`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        F::nll_loss(
            input,
            target,
            self.weight.as_ref(),
            self.ignore_index,
            self.reduction,
        )
    }
}

/// PyTorch's `nn.BCELoss`: [`F::binary_cross_entropy`] with `weight` and `reduction`.
#[derive(Debug, Clone, Default)]
pub struct BceLoss {
    weight: Option<Tensor>,
    reduction: Reduction,
}

impl BceLoss {
    /// PyTorch's defaults: no weight, mean.
    pub fn new() -> Self {
        Self::default()
    }
    /// A weight for each term, broadcast to the input's shape.
    #[must_use]
    pub fn weight(mut self, w: Tensor) -> Self {
        self.weight = Some(w);
        self
    }
    /// How the per-element losses are reduced.
    #[must_use]
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }
    /// The loss of probabilities `input` against `target`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        F::binary_cross_entropy(input, target, self.weight.as_ref(), self.reduction)
    }
}

/// PyTorch's `nn.BCEWithLogitsLoss`: [`F::binary_cross_entropy_with_logits`] with
/// `weight`, `pos_weight` and `reduction`.
#[derive(Debug, Clone, Default)]
pub struct BceWithLogitsLoss {
    weight: Option<Tensor>,
    pos_weight: Option<Tensor>,
    reduction: Reduction,
}

impl BceWithLogitsLoss {
    /// PyTorch's defaults: no weights, mean.
    pub fn new() -> Self {
        Self::default()
    }
    /// A weight for each term, broadcast to the input's shape.
    #[must_use]
    pub fn weight(mut self, w: Tensor) -> Self {
        self.weight = Some(w);
        self
    }
    /// A weight of the positive term per class (broadcast along the last dim).
    #[must_use]
    pub fn pos_weight(mut self, w: Tensor) -> Self {
        self.pos_weight = Some(w);
        self
    }
    /// How the per-element losses are reduced.
    #[must_use]
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }
    /// The loss of logits `input` against `target`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        F::binary_cross_entropy_with_logits(
            input,
            target,
            self.weight.as_ref(),
            self.pos_weight.as_ref(),
            self.reduction,
        )
    }
}

/// A loss whose only option is `reduction`, calling `$f(input, target, reduction)`.
macro_rules! reduction_only {
    ($(#[$doc:meta])* $name:ident, $f:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name {
            reduction: Reduction,
        }

        impl $name {
            /// PyTorch's default: mean.
            pub fn new() -> Self {
                Self::default()
            }
            /// How the per-element losses are reduced.
            #[must_use]
            pub fn reduction(mut self, r: Reduction) -> Self {
                self.reduction = r;
                self
            }
            /// The loss of `input` against `target` (same shape).
            pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
                $f(input, target, self.reduction)
            }
        }
    };
}

reduction_only!(
    /// PyTorch's `nn.L1Loss`: [`F::l1_loss`].
    L1Loss,
    F::l1_loss
);
reduction_only!(
    /// PyTorch's `nn.MSELoss`: [`F::mse_loss`].
    MseLoss,
    F::mse_loss
);

/// A loss with `reduction` and one scalar option `$opt` (default `$default`).
macro_rules! with_scalar {
    ($(#[$doc:meta])* $name:ident, $f:path, $opt:ident, $default:expr, $opt_doc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name {
            reduction: Reduction,
            $opt: f32,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    reduction: Reduction::Mean,
                    $opt: $default,
                }
            }
        }

        impl $name {
            /// PyTorch's defaults: mean, and the option at its default.
            pub fn new() -> Self {
                Self::default()
            }
            /// How the per-element losses are reduced.
            #[must_use]
            pub fn reduction(mut self, r: Reduction) -> Self {
                self.reduction = r;
                self
            }
            #[doc = $opt_doc]
            #[must_use]
            pub fn $opt(mut self, v: f32) -> Self {
                self.$opt = v;
                self
            }
            /// The loss of `input` against `target` (same shape).
            pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
                $f(input, target, self.reduction, self.$opt)
            }
        }
    };
}

with_scalar!(
    /// PyTorch's `nn.SmoothL1Loss`: [`F::smooth_l1_loss`] with `beta` (default 1.0).
    SmoothL1Loss,
    F::smooth_l1_loss,
    beta,
    1.0,
    "Where the loss turns from quadratic to linear (>= 0)."
);
with_scalar!(
    /// PyTorch's `nn.HuberLoss`: [`F::huber_loss`] with `delta` (default 1.0).
    HuberLoss,
    F::huber_loss,
    delta,
    1.0,
    "Where the loss turns from quadratic to linear (> 0)."
);

/// PyTorch's `nn.KLDivLoss`: [`F::kl_div`] with `reduction` (default mean; PyTorch
/// recommends `BatchMean`) and `log_target`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KlDivLoss {
    reduction: Reduction,
    log_target: bool,
}

impl KlDivLoss {
    /// PyTorch's defaults: mean, target as probabilities.
    pub fn new() -> Self {
        Self::default()
    }
    /// How the per-element losses are reduced.
    #[must_use]
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }
    /// Whether the target holds log-probabilities.
    #[must_use]
    pub fn log_target(mut self, on: bool) -> Self {
        self.log_target = on;
        self
    }
    /// The divergence of `target` from the log-probabilities `input`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        F::kl_div(input, target, self.reduction, self.log_target)
    }
}

/// PyTorch's `nn.CosineEmbeddingLoss`: [`F::cosine_embedding_loss`] with `margin`
/// (default 0) and `reduction`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CosineEmbeddingLoss {
    margin: f32,
    reduction: Reduction,
}

impl CosineEmbeddingLoss {
    /// PyTorch's defaults: margin 0, mean.
    pub fn new() -> Self {
        Self::default()
    }
    /// The cosine below which dissimilar pairs cost nothing.
    #[must_use]
    pub fn margin(mut self, m: f32) -> Self {
        self.margin = m;
        self
    }
    /// How the per-pair losses are reduced.
    #[must_use]
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }
    /// The loss of the pairs `input1`, `input2` labelled 1 / -1 by `target`.
    pub fn forward(&self, input1: &Tensor, input2: &Tensor, target: &Tensor) -> Result<Tensor> {
        F::cosine_embedding_loss(input1, input2, target, self.margin, self.reduction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_call_their_functions_with_their_options() -> Result<()> {
        let x = Tensor::randn(&[4, 5]);
        let p = x.softmax(-1)?;
        let y = Tensor::from_vec(vec![0i64, 4, 2, 2], &[4])?;
        let w = Tensor::rand(&[5]);
        let same = |a: Tensor, b: Tensor| -> Result<()> {
            assert_eq!(a.to_vec::<f32>()?, b.to_vec::<f32>()?);
            Ok(())
        };
        let ce = CrossEntropyLoss::new()
            .weight(w.clone())
            .ignore_index(2)
            .label_smoothing(0.3)
            .reduction(Reduction::Sum);
        same(
            ce.forward(&x, &y)?,
            F::cross_entropy(&x, &y, Some(&w), 2, Reduction::Sum, 0.3)?,
        )?;
        let nll = NllLoss::new().weight(w.clone()).reduction(Reduction::None);
        let lp = x.log_softmax(-1)?;
        same(
            nll.forward(&lp, &y)?,
            F::nll_loss(&lp, &y, Some(&w), -100, Reduction::None)?,
        )?;
        same(
            BceLoss::new().weight(w.clone()).forward(&p, &p)?,
            F::binary_cross_entropy(&p, &p, Some(&w), Reduction::Mean)?,
        )?;
        same(
            BceWithLogitsLoss::new()
                .pos_weight(w.clone())
                .forward(&x, &p)?,
            F::binary_cross_entropy_with_logits(&x, &p, None, Some(&w), Reduction::Mean)?,
        )?;
        same(
            L1Loss::new().reduction(Reduction::Sum).forward(&x, &p)?,
            F::l1_loss(&x, &p, Reduction::Sum)?,
        )?;
        same(MseLoss::new().forward(&x, &p)?, x.mse(&p)?)?;
        same(
            SmoothL1Loss::new().beta(0.3).forward(&x, &p)?,
            F::smooth_l1_loss(&x, &p, Reduction::Mean, 0.3)?,
        )?;
        same(
            HuberLoss::new().delta(2.0).forward(&x, &p)?,
            F::huber_loss(&x, &p, Reduction::Mean, 2.0)?,
        )?;
        same(
            KlDivLoss::new()
                .reduction(Reduction::BatchMean)
                .log_target(true)
                .forward(&lp, &lp)?,
            F::kl_div(&lp, &lp, Reduction::BatchMean, true)?,
        )?;
        let y = Tensor::from_vec(vec![1.0f32, -1.0, -1.0, 1.0], &[4])?;
        same(
            CosineEmbeddingLoss::new().margin(0.2).forward(&x, &p, &y)?,
            F::cosine_embedding_loss(&x, &p, &y, 0.2, Reduction::Mean)?,
        )?;
        assert!(HuberLoss::new().delta(-1.0).forward(&x, &p).is_err());
        Ok(())
    }
}
