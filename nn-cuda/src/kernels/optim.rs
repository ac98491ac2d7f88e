//! Launchers of `optim.cu`: the optimizers' fused per-parameter updates, in place.

use super::{grid, KernelModule};
use crate::device::CudaDevice;
use crate::error::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};
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
    dev: &CudaDevice,
    s: &SgdStep,
    p: &mut CudaSlice<f32>,
    g: &CudaSlice<f32>,
    buf: Option<&mut CudaSlice<f32>>,
    n: usize,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let f = dev.func(&MODULE, SGD_STEP_F32)?;
    let n64 = n as u64;
    let (nesterov, first) = (i32::from(s.nesterov), i32::from(s.first));
    let has_buf = i32::from(buf.is_some());
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&n64)
        .arg(&s.lr)
        .arg(&s.weight_decay)
        .arg(&s.momentum)
        .arg(&s.one_minus_dampening)
        .arg(&nesterov)
        .arg(&first)
        .arg(&has_buf)
        .arg(p)
        .arg(g);
    // without a buffer the kernel never reads its last argument (`has_buf == 0`); the
    // gradient stands in so that the argument list keeps its shape
    match buf {
        Some(buf) => {
            b.arg(buf);
            // SAFETY: the arguments match `nn_sgd_step_f32(u64, float x4, int x3, float*,
            // const float*, float*)` in order and type; `p`, `g` and `buf` hold at least
            // `n` elements and are distinct allocations (`buf` and `p` are `&mut`).
            unsafe { b.launch(grid(n)) }?;
        }
        None => {
            b.arg(g);
            // SAFETY: as above; with `has_buf == 0` the kernel does not touch its last
            // pointer (here the read-only gradient), so nothing is written through it.
            unsafe { b.launch(grid(n)) }?;
        }
    }
    Ok(())
}

/// One Adam step over the first `n` elements of `p`, with the moments `m` and `v`
/// updated in place. The caller checked every buffer holds at least `n` elements.
pub(crate) fn adam_step_f32(
    dev: &CudaDevice,
    k: &AdamStep,
    p: &mut CudaSlice<f32>,
    g: &CudaSlice<f32>,
    m: &mut CudaSlice<f32>,
    v: &mut CudaSlice<f32>,
    n: usize,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let f = dev.func(&MODULE, ADAM_STEP_F32)?;
    let n64 = n as u64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&n64)
        .arg(&k.one_minus_beta1)
        .arg(&k.beta2)
        .arg(&k.one_minus_beta2)
        .arg(&k.bias_correction2_sqrt)
        .arg(&k.neg_step_size)
        .arg(&k.eps)
        .arg(&k.weight_decay)
        .arg(p)
        .arg(g)
        .arg(m)
        .arg(v);
    // SAFETY: the arguments match `nn_adam_step_f32(u64, float x7, float*, const float*,
    // float*, float*)` in order and type; all four buffers hold at least `n` elements and
    // the three written ones are distinct allocations (each is a `&mut`).
    unsafe { b.launch(grid(n)) }?;
    Ok(())
}
