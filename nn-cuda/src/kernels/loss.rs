//! Launchers of `loss.cu`: the fused softmax cross-entropy and its backward.

use super::{grid, KernelModule};
use crate::error::Result;
use crate::runtime::{Arg, DevBuf, Driver, Launch, Runtime};

const SOFTMAX_XENT_F32: &str = "nn_softmax_xent_f32";
const XENT_BACKWARD_F32: &str = "nn_xent_backward_f32";

/// The loss kernel module.
pub static MODULE: KernelModule = KernelModule {
    name: "loss",
    src: include_str!("loss.cu"),
    kernels: &[SOFTMAX_XENT_F32, XENT_BACKWARD_F32],
};

/// `NN_XENT_THREADS` in `loss.cu`: the shared array's size, so the most threads a block may have.
const MAX_THREADS: usize = 256;

/// The softmax probabilities (`rows x classes`) of logits `x` and each row's loss
/// `logsumexp(row) - row[t]` (`rows`), for targets `t` already checked to be classes.
pub(crate) fn softmax_xent_f32(
    rt: &Runtime,
    x: &DevBuf<f32>,
    t: &DevBuf<i64>,
    rows: usize,
    classes: usize,
) -> Result<(DevBuf<f32>, DevBuf<f32>)> {
    let mut probs = rt.alloc::<f32>(rows * classes, false)?;
    let mut loss = rt.alloc::<f32>(rows, false)?;
    if rows == 0 || classes == 0 {
        return Ok((probs, loss));
    }
    let threads = classes.clamp(32, MAX_THREADS).next_power_of_two() as u32;
    let dims = Launch {
        grid: (rows.clamp(1, 1 << 20) as u32, 1, 1),
        block: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut args = [
        Arg::U64(rows as u64),
        Arg::U64(classes as u64),
        Arg::F32s(x, 0),
        Arg::I64s(t, 0),
        Arg::F32sMut(&mut probs, 0),
        Arg::F32sMut(&mut loss, 0),
    ];
    // SAFETY: the arguments match `nn_softmax_xent_f32(u64, u64, const float*, const
    // i64*, float*, float*)`; `x` and `probs` hold `rows*classes` elements, `t` and
    // `loss` `rows`, every target is in `[0, classes)`; the block size is a power of two
    // no larger than the kernel's shared array.
    unsafe { rt.launch(&MODULE, SOFTMAX_XENT_F32, dims, &mut args) }?;
    Ok((probs, loss))
}

/// `g[0] (p - onehot(t)) / rows` for probabilities `p` (`rows x classes`).
pub(crate) fn xent_backward_f32(
    rt: &Runtime,
    p: &DevBuf<f32>,
    t: &DevBuf<i64>,
    g: &DevBuf<f32>,
    rows: usize,
    classes: usize,
) -> Result<DevBuf<f32>> {
    let n = rows * classes;
    let mut y = rt.alloc::<f32>(n, true)?;
    if n == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::U64(rows as u64),
        Arg::U64(classes as u64),
        Arg::F32s(p, 0),
        Arg::I64s(t, 0),
        Arg::F32s(g, 0),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match `nn_xent_backward_f32(u64, u64, u64, const float*,
    // const i64*, const float*, float*)`; `p` and `y` hold `n` elements, `t` `rows`
    // classes in range, `g` one element.
    unsafe { rt.launch(&MODULE, XENT_BACKWARD_F32, grid(n), &mut args) }?;
    Ok(y)
}
