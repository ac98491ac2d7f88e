//! The optimizers' fused host updates: one allocation-free pass per parameter.

use crate::backend::{AdamStep, SgdStep};

/// SGD on one parameter; `buf` is None without momentum.
pub(super) fn sgd(c: &SgdStep, p: &mut [f32], g: &[f32], buf: Option<&mut [f32]>) {
    let (lr, wd) = (c.lr, c.weight_decay);
    let (mom, damp) = (c.momentum, c.one_minus_dampening);
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
                *b = if c.first { d } else { *b * mom + damp * d };
                let d = if c.nesterov { d + mom * *b } else { *b };
                *p += -lr * d;
            }
        }
    }
}

/// Adam on one parameter, its moments updated in place.
pub(super) fn adam(k: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if k.weight_decay != 0.0 {
            g + k.weight_decay * *p
        } else {
            g
        };
        *m += k.one_minus_beta1 * (g - *m);
        *v = *v * k.beta2 + k.one_minus_beta2 * g * g;
        let denom = v.sqrt() / k.bias_correction2_sqrt + k.eps;
        *p += k.neg_step_size * *m / denom;
    }
}
