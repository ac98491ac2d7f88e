//! Launchers of `optim.cu`: the optimizers' fused per-parameter updates, in place.

use super::{grid, KernelModule};
use crate::error::Result;
use crate::runtime::{Arg, DevBuf, Driver, Runtime};
use nn_core::backend::{AdamStep, SgdStep};

const SGD_STEP_F32: &str = "nn_sgd_step_f32";
const ADAM_STEP_F32: &str = "nn_adam_step_f32";

/// The optimizer kernel module.
pub static MODULE: KernelModule = KernelModule {
    name: "optim",
    src: include_str!("optim.cu"),
    kernels: &[SGD_STEP_F32, ADAM_STEP_F32],
};

/// One SGD step over the first `n` elements of `p`, from `g`, with the momentum buffer
/// `buf` when given. The caller checked every buffer holds at least `n` elements.
pub(crate) fn sgd_step_f32(
    rt: &Runtime,
    s: &SgdStep,
    p: &mut DevBuf<f32>,
    g: &DevBuf<f32>,
    buf: Option<&mut DevBuf<f32>>,
    n: usize,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let has_buf = i32::from(buf.is_some());
    // without a buffer the kernel never reads its last argument (`has_buf == 0`); the
    // gradient stands in so that the argument list keeps its shape
    let last = match buf {
        Some(b) => Arg::F32sMut(b, 0),
        None => Arg::F32s(g, 0),
    };
    let mut args = [
        Arg::U64(n as u64),
        Arg::F32(s.lr),
        Arg::F32(s.weight_decay),
        Arg::F32(s.momentum),
        Arg::F32(s.one_minus_dampening),
        Arg::I32(i32::from(s.nesterov)),
        Arg::I32(i32::from(s.first)),
        Arg::I32(has_buf),
        Arg::F32sMut(p, 0),
        Arg::F32s(g, 0),
        last,
    ];
    // SAFETY: the arguments match `nn_sgd_step_f32(u64, float x4, int x3, float*, const
    // float*, float*)` in order and type; `p`, `g` and `buf` hold at least `n` elements
    // and are distinct allocations (`buf` and `p` are `&mut`); with `has_buf == 0` the
    // kernel does not touch its last pointer (then the read-only gradient).
    unsafe { rt.launch(&MODULE, SGD_STEP_F32, grid(n), &mut args) }
}

/// One Adam step over the first `n` elements of `p`, with the moments `m` and `v`
/// updated in place. The caller checked every buffer holds at least `n` elements.
pub(crate) fn adam_step_f32(
    rt: &Runtime,
    k: &AdamStep,
    p: &mut DevBuf<f32>,
    g: &DevBuf<f32>,
    m: &mut DevBuf<f32>,
    v: &mut DevBuf<f32>,
    n: usize,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::F32(k.one_minus_beta1),
        Arg::F32(k.beta2),
        Arg::F32(k.one_minus_beta2),
        Arg::F32(k.bias_correction2_sqrt),
        Arg::F32(k.neg_step_size),
        Arg::F32(k.eps),
        Arg::F32(k.weight_decay),
        Arg::F32sMut(p, 0),
        Arg::F32s(g, 0),
        Arg::F32sMut(m, 0),
        Arg::F32sMut(v, 0),
    ];
    // SAFETY: the arguments match `nn_adam_step_f32(u64, float x7, float*, const float*,
    // float*, float*)` in order and type; all four buffers hold at least `n` elements and
    // the three written ones are distinct allocations (each is a `&mut`).
    unsafe { rt.launch(&MODULE, ADAM_STEP_F32, grid(n), &mut args) }
}
