//! Launchers of `reduce.cu`: sum/max/min over any set of axes, argmax over one axis.

use super::KernelModule;
use crate::error::Result;
use crate::layout::RedLayout;
use crate::runtime::{Arg, DevBuf, Driver, Elem, Launch, Runtime};
use nn_core::backend::ReduceOp;

const REDUCE_F32: &str = "nn_reduce_f32";
const REDUCE_I64: &str = "nn_reduce_i64";
const ARGMAX_F32: &str = "nn_argmax_f32";

/// The reduction kernel module.
pub static MODULE: KernelModule = KernelModule {
    name: "reduce",
    src: include_str!("reduce.cu"),
    kernels: &[REDUCE_F32, REDUCE_I64, ARGMAX_F32],
};

/// `NN_RED_THREADS` in `reduce.cu`: the shared-memory size, so the most threads a block may have.
const MAX_THREADS: usize = 256;

/// Sizes of a reduction: `n_out` outputs, each over `n_red` inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedSizes {
    /// Number of outputs (product of the kept dims).
    pub n_out: usize,
    /// Inputs per output (product of the reduced dims).
    pub n_red: usize,
}

/// One block per output (grid-stride beyond 2^20 outputs), a power-of-two block size
/// between 32 and `MAX_THREADS` fitted to the reduced size.
fn config(s: RedSizes) -> Launch {
    let threads = s.n_red.clamp(32, MAX_THREADS).next_power_of_two() as u32;
    Launch {
        grid: (s.n_out.clamp(1, 1 << 20) as u32, 1, 1),
        block: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Max => 1,
        ReduceOp::Min | ReduceOp::ArgMax => 2,
    }
}

/// The dtype-specific kernel names of this module.
pub(crate) trait RedElem: Elem {
    /// `nn_reduce_*`.
    const REDUCE: &'static str;
}
impl RedElem for f32 {
    const REDUCE: &'static str = REDUCE_F32;
}
impl RedElem for i64 {
    const REDUCE: &'static str = REDUCE_I64;
}

/// Sum (wrapping for i64), max or min over the reduced dims of `l`.
pub(crate) fn reduce<T: RedElem>(
    rt: &Runtime,
    op: ReduceOp,
    l: &RedLayout,
    s: RedSizes,
    x: &DevBuf<T>,
) -> Result<DevBuf<T>> {
    let mut y = rt.alloc::<T>(s.n_out, false)?;
    if s.n_out == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(s.n_out as u64),
        Arg::U64(s.n_red as u64),
        Arg::I32(code(op)),
        Arg::Red(l),
        T::arg(x, 0),
        T::arg_mut(&mut y, 0),
    ];
    // SAFETY: the arguments match `(u64, u64, int, RedLayout, const T*, T*)`; `l` splits
    // the contiguous input shape into kept and reduced dims, so every offset is inside
    // `x`; `y` holds `n_out` elements; the block size is a power of two no larger than
    // the kernel's shared arrays.
    unsafe { rt.launch(&MODULE, T::REDUCE, config(s), &mut args) }?;
    Ok(y)
}

/// Index of the first maximum (the first NaN if any) along the single reduced axis.
pub(crate) fn argmax_f32(
    rt: &Runtime,
    l: &RedLayout,
    s: RedSizes,
    x: &DevBuf<f32>,
) -> Result<DevBuf<i64>> {
    let mut y = rt.alloc::<i64>(s.n_out, false)?;
    if s.n_out == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(s.n_out as u64),
        Arg::U64(s.n_red as u64),
        Arg::Red(l),
        Arg::F32s(x, 0),
        Arg::I64sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match `nn_argmax_f32(u64, u64, RedLayout, const float*,
    // i64*)`; offsets stay inside `x` as for `reduce`; `y` holds `n_out` elements.
    unsafe { rt.launch(&MODULE, ARGMAX_F32, config(s), &mut args) }?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nn_core::Tensor;

    fn off(nd: u64, dims: &[u64], st: &[u64], mut i: u64) -> u64 {
        let mut o = 0;
        for d in (0..nd as usize).rev() {
            o += (i % dims[d]) * st[d];
            i /= dims[d];
        }
        o
    }

    /// `nn_reduce_f32`'s schedule run serially: each of `threads` threads folds a strided
    /// share of the reduced elements, then a shared-memory tree combines the threads.
    fn emulate_reduce(op: i32, l: &RedLayout, s: RedSizes, threads: usize, x: &[f32]) -> Vec<f32> {
        let f = |acc: f32, v: f32| match op {
            0 => acc + v,
            1 if v > acc || v.is_nan() => v,
            2 if v < acc || v.is_nan() => v,
            _ => acc,
        };
        let init = [0.0, f32::NEG_INFINITY, f32::INFINITY][op as usize];
        (0..s.n_out as u64)
            .map(|o| {
                let base = off(l.nk, &l.dk, &l.sk, o);
                let mut sh: Vec<f32> = (0..threads)
                    .map(|t| {
                        (t..s.n_red).step_by(threads).fold(init, |a, r| {
                            f(a, x[(base + off(l.nr, &l.dr, &l.sr, r as u64)) as usize])
                        })
                    })
                    .collect();
                let mut w = threads / 2;
                while w > 0 {
                    for t in 0..w {
                        sh[t] = f(sh[t], sh[t + w]);
                    }
                    w /= 2;
                }
                sh[0]
            })
            .collect()
    }

    fn sizes(shape: &[usize], axes: &[usize]) -> RedSizes {
        let n_red = axes.iter().map(|&a| shape[a]).product();
        RedSizes {
            n_out: shape.iter().product::<usize>() / n_red,
            n_red,
        }
    }

    /// The reduction layouts and schedule give the CPU backend's sums, maxima and minima.
    #[test]
    fn reduction_schedule_matches_the_cpu_backend() -> nn_core::Result<()> {
        let shape = [3usize, 5, 70];
        nn_core::manual_seed(3);
        let t = Tensor::randn(&shape);
        let x = t.to_vec::<f32>()?;
        let axes_sets: [&[usize]; 6] = [&[0], &[1], &[2], &[0, 2], &[1, 2], &[0, 1, 2]];
        for axes in axes_sets {
            let l = RedLayout::new("test", &shape, axes).map_err(|e| e.into_core("test"))?;
            let s = sizes(&shape, axes);
            let threads = config(s).block.0 as usize;
            let want = [
                t.sum_axes_keepdim(axes)?,
                t.max_axes_keepdim(axes)?,
                t.neg()?.max_axes_keepdim(axes)?.neg()?,
            ];
            for (op, w) in want.iter().enumerate() {
                let got = emulate_reduce(op as i32, &l, s, threads, &x);
                let w = w.to_vec::<f32>()?;
                assert_eq!(got.len(), w.len());
                for (a, b) in got.iter().zip(&w) {
                    assert!((a - b).abs() < 1e-4, "op {op} axes {axes:?}: {a} vs {b}");
                }
            }
        }
        Ok(())
    }

    /// `nn_arg_better` of `reduce.cu`, for the emulation below.
    fn better(bv: f32, bi: i64, av: f32, ai: i64) -> bool {
        if bi < 0 {
            return false;
        }
        if ai < 0 {
            return true;
        }
        let (an, bn) = (av.is_nan(), bv.is_nan());
        if an || bn {
            return if an && bn { bi < ai } else { bn };
        }
        bv > av || (bv == av && bi < ai)
    }

    /// `nn_argmax_f32`'s schedule run serially, including the tree's tie handling.
    fn emulate_argmax(l: &RedLayout, s: RedSizes, threads: usize, x: &[f32]) -> Vec<i64> {
        (0..s.n_out as u64)
            .map(|o| {
                let base = off(l.nk, &l.dk, &l.sk, o);
                let mut sh: Vec<(f32, i64)> = (0..threads)
                    .map(|t| {
                        (t..s.n_red).step_by(threads).fold(
                            (f32::NEG_INFINITY, -1),
                            |(bv, bi), r| {
                                let v = x[(base + off(l.nr, &l.dr, &l.sr, r as u64)) as usize];
                                if better(v, r as i64, bv, bi) {
                                    (v, r as i64)
                                } else {
                                    (bv, bi)
                                }
                            },
                        )
                    })
                    .collect();
                let mut w = threads / 2;
                while w > 0 {
                    for t in 0..w {
                        if better(sh[t + w].0, sh[t + w].1, sh[t].0, sh[t].1) {
                            sh[t] = sh[t + w];
                        }
                    }
                    w /= 2;
                }
                sh[0].1.max(0)
            })
            .collect()
    }

    /// First maximum on ties, first NaN over numbers: the CPU backend's argmax.
    #[test]
    fn argmax_schedule_matches_the_cpu_backend() -> nn_core::Result<()> {
        let shape = [4usize, 300];
        // few distinct values, so ties span threads; NaNs in rows 2 and 3
        let mut x: Vec<f32> = (0..1200).map(|i| ((i * 7919) % 13) as f32).collect();
        x[2 * 300 + 250] = f32::NAN;
        x[2 * 300 + 260] = f32::NAN;
        x[3 * 300 + 5] = f32::NAN;
        let t = Tensor::from_vec(x.clone(), &shape)?;
        for axis in [0usize, 1] {
            let l = RedLayout::new("test", &shape, &[axis]).map_err(|e| e.into_core("test"))?;
            let s = sizes(&shape, &[axis]);
            let got = emulate_argmax(&l, s, config(s).block.0 as usize, &x);
            assert_eq!(
                got,
                t.argmax(axis as isize, false)?.to_vec::<i64>()?,
                "axis {axis}"
            );
        }
        Ok(())
    }

    #[test]
    fn block_sizes_are_powers_of_two_within_the_shared_arrays() {
        for n_red in [0usize, 1, 31, 32, 33, 255, 256, 257, 100_000] {
            let b = config(RedSizes { n_out: 1, n_red }).block.0 as usize;
            assert!(
                b.is_power_of_two() && (32..=MAX_THREADS).contains(&b),
                "{n_red}: {b}"
            );
        }
    }
}
