//! Launchers of `copy.cu`: strided copies (permute, narrow, cat), `index_select` and its
//! adjoint `index_add`.

use super::{grid, KernelModule};
use crate::error::Result;
use crate::layout::Layout3;
use crate::runtime::{Arg, DevBuf, Driver, Elem, Runtime};

const COPY_F32: &str = "nn_copy_f32";
const COPY_I64: &str = "nn_copy_i64";
const INDEX_SELECT_F32: &str = "nn_index_select_f32";
const INDEX_SELECT_I64: &str = "nn_index_select_i64";
const INDEX_ADD_F32: &str = "nn_index_add_f32";
const CHECK_INDICES: &str = "nn_check_indices";

/// The copy/gather kernel module.
pub static MODULE: KernelModule = KernelModule {
    name: "copy",
    src: include_str!("copy.cu"),
    kernels: &[
        COPY_F32,
        COPY_I64,
        INDEX_SELECT_F32,
        INDEX_SELECT_I64,
        INDEX_ADD_F32,
        CHECK_INDICES,
    ],
};

/// Sizes of a gather/scatter along one axis: `[outer, d, inner]` in, `[outer, k, inner]` out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AxisSplit {
    /// Product of the dims before the axis.
    pub outer: usize,
    /// Size of the axis in the larger (source for select, target for add) tensor.
    pub d: usize,
    /// Number of indices.
    pub k: usize,
    /// Product of the dims after the axis.
    pub inner: usize,
}

/// The dtype-specific kernel names of this module.
pub(crate) trait CopyElem: Elem {
    /// `nn_copy_*`.
    const COPY: &'static str;
    /// `nn_index_select_*`.
    const SELECT: &'static str;
}
impl CopyElem for f32 {
    const COPY: &'static str = COPY_F32;
    const SELECT: &'static str = INDEX_SELECT_F32;
}
impl CopyElem for i64 {
    const COPY: &'static str = COPY_I64;
    const SELECT: &'static str = INDEX_SELECT_I64;
}

/// `y[y_off + off1(i)] = x[x_off + off0(i)]` for the `n` indices of `l`.
pub(crate) fn copy<T: CopyElem>(
    rt: &Runtime,
    l: &Layout3,
    (x, x_off): (&DevBuf<T>, usize),
    (y, y_off): (&mut DevBuf<T>, usize),
    n: usize,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::Layout3(l),
        T::arg(x, x_off),
        T::arg_mut(y, y_off),
    ];
    // SAFETY: the arguments match `(u64, Layout3, const T*, T*)`; the caller built `l`
    // so that operand 0 offsets of the `n` indices fall inside `x` from `x_off` on and
    // operand 1 offsets inside `y` from `y_off` on.
    unsafe { rt.launch(&MODULE, T::COPY, grid(n), &mut args) }
}

/// Gathers rows of `x` (`[outer, d, inner]`) at `idx` into `[outer, k, inner]`.
pub(crate) fn index_select<T: CopyElem>(
    rt: &Runtime,
    s: AxisSplit,
    idx: &DevBuf<i64>,
    x: &DevBuf<T>,
) -> Result<DevBuf<T>> {
    let n = s.outer * s.k * s.inner;
    let mut y = rt.alloc::<T>(n, false)?;
    if n == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::U64(s.k as u64),
        Arg::U64(s.d as u64),
        Arg::U64(s.inner as u64),
        Arg::I64s(idx, 0),
        T::arg(x, 0),
        T::arg_mut(&mut y, 0),
    ];
    // SAFETY: the arguments match `(u64, u64, u64, u64, const i64*, const T*, T*)`;
    // `idx` holds `k` indices already checked to lie in `[0, d)`, `x` holds
    // `outer*d*inner` elements and `y` the `n` outputs.
    unsafe { rt.launch(&MODULE, T::SELECT, grid(n), &mut args) }?;
    Ok(y)
}

/// Zeros of `[outer, d, inner]` with `x` (`[outer, k, inner]`) added at `idx` along the
/// middle axis.
pub(crate) fn index_add_f32(
    rt: &Runtime,
    s: AxisSplit,
    idx: &DevBuf<i64>,
    x: &DevBuf<f32>,
) -> Result<DevBuf<f32>> {
    let mut y = rt.alloc::<f32>(s.outer * s.d * s.inner, true)?;
    let n = s.outer * s.k * s.inner;
    if n == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::U64(s.k as u64),
        Arg::U64(s.d as u64),
        Arg::U64(s.inner as u64),
        Arg::I64s(idx, 0),
        Arg::F32s(x, 0),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match `nn_index_add_f32(u64, u64, u64, u64, const i64*, const
    // float*, float*)`; indices were checked to lie in `[0, d)`, `x` holds `n` elements
    // and `y` holds `outer*d*inner`.
    unsafe { rt.launch(&MODULE, INDEX_ADD_F32, grid(n), &mut args) }?;
    Ok(y)
}

/// `idx` (`n` indices) mapped into `[0, size)`, negative ones counting from the end, on
/// the device: the mapped copy, and the position of the first index out of range.
pub(crate) fn check_indices(
    rt: &Runtime,
    idx: &DevBuf<i64>,
    n: usize,
    size: usize,
) -> Result<(DevBuf<i64>, Option<usize>)> {
    let mut fixed = rt.alloc::<i64>(n, false)?;
    if n == 0 {
        return Ok((fixed, None));
    }
    let size = i64::try_from(size).map_err(|_| crate::error::Error::Unsupported {
        op: "index",
        msg: format!("axis of {size} elements"),
    })?;
    let mut status = rt.htod(&[-1i64])?;
    let mut args = [
        Arg::U64(n as u64),
        Arg::I64(size),
        Arg::I64s(idx, 0),
        Arg::I64sMut(&mut fixed, 0),
        Arg::I64sMut(&mut status, 0),
    ];
    // SAFETY: the arguments match `nn_check_indices(u64, i64, const i64*, i64*, i64*)`;
    // `idx` and `fixed` hold `n` elements, `status` one.
    unsafe { rt.launch(&MODULE, CHECK_INDICES, grid(n), &mut args) }?;
    let first = rt.dtoh(&status, 1)?.first().copied().unwrap_or(-1);
    Ok((fixed, usize::try_from(first).ok()))
}

#[cfg(test)]
mod tests {
    use super::AxisSplit;
    use nn_core::Tensor;

    /// `nn_index_select`'s index math run serially.
    fn emulate_select(s: AxisSplit, idx: &[i64], x: &[f32]) -> Vec<f32> {
        (0..s.outer * s.k * s.inner)
            .map(|i| {
                let (j, t) = (i % s.inner, i / s.inner);
                let (r, o) = (t % s.k, t / s.k);
                x[(o * s.d + idx[r] as usize) * s.inner + j]
            })
            .collect()
    }

    /// `nn_index_add_f32`'s index math run serially (the atomics become plain adds).
    fn emulate_add(s: AxisSplit, idx: &[i64], x: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; s.outer * s.d * s.inner];
        for (i, v) in x.iter().enumerate() {
            let (j, t) = (i % s.inner, i / s.inner);
            let (r, o) = (t % s.k, t / s.k);
            y[(o * s.d + idx[r] as usize) * s.inner + j] += v;
        }
        y
    }

    #[test]
    fn gather_and_scatter_match_the_cpu_backend() -> nn_core::Result<()> {
        let shape = [3usize, 4, 5];
        let x: Vec<f32> = (0..60).map(|v| v as f32).collect();
        let t = Tensor::from_vec(x.clone(), &shape)?.with_requires_grad(true);
        let idx = [3i64, 0, 3, 1];
        for axis in 0..3 {
            let idx: Vec<i64> = idx.iter().map(|&i| i.min(shape[axis] as i64 - 1)).collect();
            let s = AxisSplit {
                outer: shape[..axis].iter().product(),
                d: shape[axis],
                k: idx.len(),
                inner: shape[axis + 1..].iter().product(),
            };
            let it = Tensor::from_vec(idx.clone(), &[idx.len()])?;
            let sel = t.index_select(axis as isize, &it)?;
            assert_eq!(
                emulate_select(s, &idx, &x),
                sel.to_vec::<f32>()?,
                "select {axis}"
            );
            // index_add is index_select's backward
            let g: Vec<f32> = (0..sel.numel()).map(|v| v as f32 * 0.5).collect();
            let gt = Tensor::from_vec(g.clone(), sel.shape())?;
            t.zero_grad();
            sel.backward_with(&gt)?;
            let want = t
                .grad()
                .map(|g| g.to_vec::<f32>())
                .transpose()?
                .unwrap_or_default();
            assert_eq!(emulate_add(s, &idx, &g), want, "add {axis}");
        }
        Ok(())
    }
}
