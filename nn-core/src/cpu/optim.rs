//! The optimizers' fused host updates: one allocation-free pass per parameter, split over
//! the rayon pool for parameters large enough to pay for it.

use crate::backend::{AdamStep, OptimStep, SgdStep};
use rayon::prelude::*;

/// Parameters of at least this many elements are updated by every thread of the pool
/// (a pass is memory-bound: under ~1 MB the dispatch costs more than a core saves).
const PARALLEL_LEN: usize = 1 << 18;
/// Elements per task of a split update.
const CHUNK: usize = 1 << 15;

/// SGD on one parameter; `buf` is None without momentum.
pub(super) fn sgd(c: &SgdStep, p: &mut [f32], g: &[f32], buf: Option<&mut [f32]>) {
    let split = p.len() >= PARALLEL_LEN && rayon::current_num_threads() > 1;
    match buf {
        None if split => p
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(p, g)| sgd_plain(c, p, g)),
        None => sgd_plain(c, p, g),
        Some(b) if split => p
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(b.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| sgd_momentum(c, p, g, b)),
        Some(b) => sgd_momentum(c, p, g, b),
    }
}

fn sgd_plain(c: &SgdStep, p: &mut [f32], g: &[f32]) {
    let (lr, wd) = (c.lr, c.weight_decay);
    if wd == 0.0 {
        for (p, &g) in p.iter_mut().zip(g) {
            *p += -lr * g;
        }
    } else {
        for (p, &g) in p.iter_mut().zip(g) {
            *p += -lr * (g + wd * *p);
        }
    }
}

fn sgd_momentum(c: &SgdStep, p: &mut [f32], g: &[f32], b: &mut [f32]) {
    let (lr, wd) = (c.lr, c.weight_decay);
    let (mom, damp) = (c.momentum, c.one_minus_dampening);
    for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
        let d = if wd != 0.0 { g + wd * *p } else { g };
        *b = if c.first { d } else { *b * mom + damp * d };
        let d = if c.nesterov { d + mom * *b } else { *b };
        *p += -lr * d;
    }
}

/// Adam on one parameter, its moments updated in place.
pub(super) fn adam(k: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    if p.len() >= PARALLEL_LEN && rayon::current_num_threads() > 1 {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| adam_run(k, p, g, m, v));
    } else {
        adam_run(k, p, g, m, v);
    }
}

fn adam_run(k: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    // two loops, not a branch per element: each body vectorizes on its own
    if k.weight_decay != 0.0 {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            adam_elem(k, p, g + k.weight_decay * *p, m, v);
        }
    } else {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            adam_elem(k, p, g, m, v);
        }
    }
}

#[inline(always)]
fn adam_elem(k: &AdamStep, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
    *m += k.one_minus_beta1 * (g - *m);
    *v = *v * k.beta2 + k.one_minus_beta2 * g * g;
    let denom = v.sqrt() / k.bias_correction2_sqrt + k.eps;
    *p += k.neg_step_size * *m / denom;
}

/// The rules of [`OptimStep`] on one parameter; `state` holds the buffers the variant
/// names, each of the parameter's length (checked by the caller).
pub(super) fn fused(
    k: &OptimStep,
    p: &mut [f32],
    g: &[f32],
    state: &mut [&mut [f32]],
) -> crate::Result<()> {
    let n = state.len();
    let wrong = || {
        crate::Error::invalid_config(
            "optim_step",
            "state buffers",
            n,
            "does not fit the update rule",
        )
    };
    match *k {
        OptimStep::Adam {
            base,
            decay,
            maximize,
            amsgrad: false,
        } => {
            let [m, v] = state else { return Err(wrong()) };
            let sign = if maximize { -1.0 } else { 1.0 };
            let run = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *p *= decay;
                    let g = sign * g + base.weight_decay * *p;
                    adam_elem(&base, p, g, m, v);
                }
            };
            if p.len() >= PARALLEL_LEN && rayon::current_num_threads() > 1 {
                p.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK))
                    .zip(v.par_chunks_mut(CHUNK))
                    .for_each(|(((p, g), m), v)| run(p, g, m, v));
            } else {
                run(p, g, m, v);
            }
        }
        OptimStep::Adam {
            base,
            decay,
            maximize,
            amsgrad: true,
        } => {
            let [m, v, mx] = state else {
                return Err(wrong());
            };
            let sign = if maximize { -1.0 } else { 1.0 };
            for ((((p, &g), m), v), mx) in p
                .iter_mut()
                .zip(g.iter())
                .zip(m.iter_mut())
                .zip(v.iter_mut())
                .zip(mx.iter_mut())
            {
                *p *= decay;
                let g = sign * g + base.weight_decay * *p;
                *m += base.one_minus_beta1 * (g - *m);
                *v = *v * base.beta2 + base.one_minus_beta2 * g * g;
                *mx = mx.max(*v);
                let denom = mx.sqrt() / base.bias_correction2_sqrt + base.eps;
                *p += base.neg_step_size * *m / denom;
            }
        }
        OptimStep::RmsProp {
            lr,
            alpha,
            one_minus_alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            maximize,
        } => {
            let sign = if maximize { -1.0 } else { 1.0 };
            let (sq, rest) = state.split_first_mut().ok_or_else(wrong)?;
            let (mut ga, rest) = if centered {
                let (ga, rest) = rest.split_first_mut().ok_or_else(wrong)?;
                (Some(ga), rest)
            } else {
                (None, rest)
            };
            let mut buf = match (momentum > 0.0, rest) {
                (true, [b]) => Some(b),
                (false, []) => None,
                _ => return Err(wrong()),
            };
            for (i, (p, &g)) in p.iter_mut().zip(g).enumerate() {
                let g = sign * g + weight_decay * *p;
                let s = &mut sq[i];
                *s = *s * alpha + one_minus_alpha * g * g;
                let avg = match &mut ga {
                    Some(ga) => {
                        let a = &mut ga[i];
                        *a += one_minus_alpha * (g - *a);
                        (*s + -(*a * *a)).sqrt()
                    }
                    None => s.sqrt(),
                } + eps;
                match &mut buf {
                    Some(b) => {
                        let b = &mut b[i];
                        *b = *b * momentum + g / avg;
                        *p += -lr * *b;
                    }
                    None => *p += -lr * g / avg,
                }
            }
        }
        OptimStep::Adagrad {
            clr,
            eps,
            weight_decay,
            maximize,
        } => {
            let [sum] = state else { return Err(wrong()) };
            let sign = if maximize { -1.0 } else { 1.0 };
            for ((p, &g), s) in p.iter_mut().zip(g).zip(sum.iter_mut()) {
                let g = sign * g + weight_decay * *p;
                *s += g * g;
                *p += -clr * g / (s.sqrt() + eps);
            }
        }
    }
    Ok(())
}
