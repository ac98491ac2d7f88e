//! The scalars of the fused optimizer updates a backend runs where a parameter lives
//! (`BackendStorage::sgd_step`, `adam_step` and `optim_step`).

/// The scalars of one fused SGD update
/// ([`BackendStorage::sgd_step`](super::BackendStorage::sgd_step)), in f32 as the kernels
/// use them, per element:
///
/// ```text
/// d = g + weight_decay * p
/// buf = first ? d : momentum * buf + one_minus_dampening * d     (with a buffer)
/// d = nesterov ? d + momentum * buf : buf                         (with a buffer)
/// p = p - lr * d
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Momentum factor (used only with a buffer).
    pub momentum: f32,
    /// `1 - dampening`.
    pub one_minus_dampening: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The step that creates the buffer: it is overwritten with `d`, not read.
    pub first: bool,
}

/// The scalars of one fused Adam update
/// ([`BackendStorage::adam_step`](super::BackendStorage::adam_step)), computed in f64 by
/// the optimizer and passed in f32, per element:
///
/// ```text
/// g = g + weight_decay * p
/// m = m + one_minus_beta1 * (g - m)
/// v = beta2 * v + one_minus_beta2 * g * g
/// p = p + neg_step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// `1 - beta1`.
    pub one_minus_beta1: f32,
    /// `beta2`.
    pub beta2: f32,
    /// `1 - beta2`.
    pub one_minus_beta2: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
    /// `-lr / (1 - beta1^t)`.
    pub neg_step_size: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
}

/// The scalars of one fused update of the rules [`AdamStep`] and [`SgdStep`] do not
/// cover ([`BackendStorage::optim_step`](super::BackendStorage::optim_step)), computed in
/// f64 by the optimizer, passed in f32; `g` is `-grad` under `maximize`. The state
/// buffers are passed in the order each variant names.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OptimStep {
    /// Adam / AdamW / AMSGrad; state `[m, v]` or `[m, v, max_v]` (`amsgrad`):
    /// ```text
    /// p = decay * p                  (AdamW: decay = 1 - lr * weight_decay)
    /// g = g + weight_decay * p       (Adam's L2; base.weight_decay is 0 for AdamW)
    /// m, v as AdamStep; max_v = max(max_v, v) and used for v when amsgrad
    /// ```
    Adam {
        /// The plain update's scalars.
        base: AdamStep,
        /// Factor applied to the parameter first (1 without decoupled weight decay).
        decay: f32,
        /// Negate the gradient (ascend).
        maximize: bool,
        /// Keep and use the running maximum of `v`.
        amsgrad: bool,
    },
    /// RMSprop; state `[square_avg]`, then `grad_avg` when centered, then the momentum
    /// buffer when `momentum > 0`:
    /// ```text
    /// g = g + weight_decay * p
    /// s = alpha * s + (1 - alpha) * g * g
    /// avg = sqrt(s - ga * ga) + eps, ga = ga + (1 - alpha) * (g - ga)  (centered)
    /// avg = sqrt(s) + eps                                            (otherwise)
    /// b = momentum * b + g / avg; p = p - lr * b      (momentum > 0)
    /// p = p - lr * g / avg                           (otherwise)
    /// ```
    RmsProp {
        /// Learning rate.
        lr: f32,
        /// Smoothing constant.
        alpha: f32,
        /// `1 - alpha`, computed in f64 as PyTorch does.
        one_minus_alpha: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// Momentum factor.
        momentum: f32,
        /// Normalize by the estimated variance.
        centered: bool,
        /// Negate the gradient.
        maximize: bool,
    },
    /// Adagrad; state `[sum]`:
    /// ```text
    /// g = g + weight_decay * p; sum = sum + g * g
    /// p = p - clr * g / (sqrt(sum) + eps)
    /// ```
    Adagrad {
        /// `lr / (1 + (step - 1) * lr_decay)`.
        clr: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// Negate the gradient.
        maximize: bool,
    },
}
