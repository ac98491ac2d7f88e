//! Launchers of `elementwise.cu`: unary math, broadcast binary ops and comparisons,
//! `where`, casts.

use super::{grid, KernelModule};
use crate::error::Result;
use crate::layout::Layout3;
use crate::runtime::{Arg, DevBuf, Driver, Elem, Runtime};
use nn_core::backend::{BinaryOp, UnaryOp};

const UNARY_F32: &str = "nn_unary_f32";
const BINARY_F32: &str = "nn_binary_f32";
const CMP_F32: &str = "nn_cmp_f32";
const BINARY_I64: &str = "nn_binary_i64";
const WHERE_F32: &str = "nn_where_f32";
const WHERE_I64: &str = "nn_where_i64";
const CAST_F32_I64: &str = "nn_cast_f32_i64";
const CAST_I64_F32: &str = "nn_cast_i64_f32";
const RELU_BACKWARD_F32: &str = "nn_relu_backward_f32";
const RELU_BACKWARD_COLSUM_F32: &str = "nn_relu_backward_colsum_f32";

/// The elementwise kernel module.
pub static MODULE: KernelModule = KernelModule {
    name: "elementwise",
    src: include_str!("elementwise.cu"),
    kernels: &[
        UNARY_F32,
        BINARY_F32,
        CMP_F32,
        BINARY_I64,
        WHERE_F32,
        WHERE_I64,
        CAST_F32_I64,
        CAST_I64_F32,
        RELU_BACKWARD_F32,
        RELU_BACKWARD_COLSUM_F32,
    ],
};

/// The op code `nn_unary` switches on, and its two scalar parameters.
fn unary_code(op: UnaryOp) -> (i32, f32, f32) {
    match op {
        UnaryOp::Neg => (0, 0.0, 0.0),
        UnaryOp::Exp => (1, 0.0, 0.0),
        UnaryOp::Log => (2, 0.0, 0.0),
        UnaryOp::Abs => (3, 0.0, 0.0),
        UnaryOp::Sqrt => (4, 0.0, 0.0),
        UnaryOp::Relu => (5, 0.0, 0.0),
        UnaryOp::Sigmoid => (6, 0.0, 0.0),
        UnaryOp::Tanh => (7, 0.0, 0.0),
        UnaryOp::Sign => (8, 0.0, 0.0),
        UnaryOp::Step => (9, 0.0, 0.0),
        UnaryOp::Powf(e) => (10, e, 0.0),
        UnaryOp::Affine { mul, add } => (11, mul, add),
        UnaryOp::Erf => (12, 0.0, 0.0),
    }
}

/// The op code of `nn_arith_*` / `nn_cmp` (comparisons are 6 and up).
pub(crate) fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Maximum => 4,
        BinaryOp::Minimum => 5,
        BinaryOp::Eq => 6,
        BinaryOp::Ne => 7,
        BinaryOp::Lt => 8,
        BinaryOp::Le => 9,
        BinaryOp::Gt => 10,
        BinaryOp::Ge => 11,
    }
}

/// `op` applied to the `n` elements of `x`.
pub(crate) fn unary_f32(
    rt: &Runtime,
    op: UnaryOp,
    x: &DevBuf<f32>,
    n: usize,
) -> Result<DevBuf<f32>> {
    let mut y = rt.alloc::<f32>(n, false)?;
    if n == 0 {
        return Ok(y);
    }
    let (code, p0, p1) = unary_code(op);
    let mut args = [
        Arg::U64(n as u64),
        Arg::I32(code),
        Arg::F32(p0),
        Arg::F32(p1),
        Arg::F32s(x, 0),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match `nn_unary_f32(u64, int, float, float, const float*,
    // float*)` in order and type; `x` and `y` hold at least `n` elements.
    unsafe { rt.launch(&MODULE, UNARY_F32, grid(n), &mut args) }?;
    Ok(y)
}

/// Arithmetic (`binary`) or comparison (`cmp`) kernels over broadcast operands: `l` maps
/// each of the `n` outputs to offsets in `a` (operand 0) and `b` (operand 1), which the
/// caller derived from the operands' shapes, so every offset is in bounds.
fn broadcast<T: Elem, O: Elem>(
    rt: &Runtime,
    kernel: &'static str,
    op: BinaryOp,
    l: &Layout3,
    a: &DevBuf<T>,
    b: &DevBuf<T>,
    n: usize,
) -> Result<DevBuf<O>> {
    let mut y = rt.alloc::<O>(n, false)?;
    if n == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::I32(binary_code(op)),
        Arg::Layout3(l),
        T::arg(a, 0),
        T::arg(b, 0),
        O::arg_mut(&mut y, 0),
    ];
    // SAFETY: the arguments match the kernel's `(u64, int, Layout3, const T*, const T*,
    // Out*)`; `l` was built from the operand shapes broadcast to the `n`-element output,
    // so every offset it yields is inside `a` and `b`.
    unsafe { rt.launch(&MODULE, kernel, grid(n), &mut args) }?;
    Ok(y)
}

/// f32 arithmetic (`Add` ... `Minimum`).
pub(crate) fn binary_f32(
    rt: &Runtime,
    op: BinaryOp,
    l: &Layout3,
    a: &DevBuf<f32>,
    b: &DevBuf<f32>,
    n: usize,
) -> Result<DevBuf<f32>> {
    broadcast(rt, BINARY_F32, op, l, a, b, n)
}

/// f32 comparisons as i64 masks.
pub(crate) fn cmp_f32(
    rt: &Runtime,
    op: BinaryOp,
    l: &Layout3,
    a: &DevBuf<f32>,
    b: &DevBuf<f32>,
    n: usize,
) -> Result<DevBuf<i64>> {
    broadcast(rt, CMP_F32, op, l, a, b, n)
}

/// i64 arithmetic and comparisons.
pub(crate) fn binary_i64(
    rt: &Runtime,
    op: BinaryOp,
    l: &Layout3,
    a: &DevBuf<i64>,
    b: &DevBuf<i64>,
    n: usize,
) -> Result<DevBuf<i64>> {
    broadcast(rt, BINARY_I64, op, l, a, b, n)
}

/// The dtype-specific kernel names of this module.
pub(crate) trait EwElem: Elem {
    /// `nn_where_*`.
    const WHERE: &'static str;
}
impl EwElem for f32 {
    const WHERE: &'static str = WHERE_F32;
}
impl EwElem for i64 {
    const WHERE: &'static str = WHERE_I64;
}

/// `cond != 0 ? a : b`, broadcast by `l` (operands 0, 1, 2 = cond, a, b).
pub(crate) fn where_<T: EwElem>(
    rt: &Runtime,
    l: &Layout3,
    cond: &DevBuf<i64>,
    a: &DevBuf<T>,
    b: &DevBuf<T>,
    n: usize,
) -> Result<DevBuf<T>> {
    let mut y = rt.alloc::<T>(n, false)?;
    if n == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::Layout3(l),
        Arg::I64s(cond, 0),
        T::arg(a, 0),
        T::arg(b, 0),
        T::arg_mut(&mut y, 0),
    ];
    // SAFETY: the arguments match `(u64, Layout3, const i64*, const T*, const T*, T*)`;
    // `l` maps the `n` outputs into `cond`, `a` and `b` from their broadcast shapes, so
    // every offset is in bounds.
    unsafe { rt.launch(&MODULE, T::WHERE, grid(n), &mut args) }?;
    Ok(y)
}

fn cast<F: Elem, T: Elem>(
    rt: &Runtime,
    kernel: &'static str,
    x: &DevBuf<F>,
    n: usize,
) -> Result<DevBuf<T>> {
    let mut y = rt.alloc::<T>(n, false)?;
    if n == 0 {
        return Ok(y);
    }
    let mut args = [Arg::U64(n as u64), F::arg(x, 0), T::arg_mut(&mut y, 0)];
    // SAFETY: the arguments match `(u64, const From*, To*)`; both buffers hold at least
    // `n` elements.
    unsafe { rt.launch(&MODULE, kernel, grid(n), &mut args) }?;
    Ok(y)
}

/// f32 to i64 with Rust's `as` semantics (truncate, saturate, NaN to 0).
pub(crate) fn cast_f32_i64(rt: &Runtime, x: &DevBuf<f32>, n: usize) -> Result<DevBuf<i64>> {
    cast(rt, CAST_F32_I64, x, n)
}

/// i64 to f32 (round to nearest).
pub(crate) fn cast_i64_f32(rt: &Runtime, x: &DevBuf<i64>, n: usize) -> Result<DevBuf<f32>> {
    cast(rt, CAST_I64_F32, x, n)
}

/// ReLU's backward: `g[i]` where `x[i] > 0`, else 0, for the `n` elements.
pub(crate) fn relu_backward_f32(
    rt: &Runtime,
    x: &DevBuf<f32>,
    g: &DevBuf<f32>,
    n: usize,
) -> Result<DevBuf<f32>> {
    let mut y = rt.alloc::<f32>(n, false)?;
    if n == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(n as u64),
        Arg::F32s(x, 0),
        Arg::F32s(g, 0),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match `nn_relu_backward_f32(u64, const float*, const float*,
    // float*)`; the three buffers hold at least `n` elements.
    unsafe { rt.launch(&MODULE, RELU_BACKWARD_F32, grid(n), &mut args) }?;
    Ok(y)
}

/// ReLU's backward over `rows x cols` (`g` where `x > 0`, else 0) and the column sums of
/// the result.
pub(crate) fn relu_backward_colsum_f32(
    rt: &Runtime,
    x: &DevBuf<f32>,
    g: &DevBuf<f32>,
    rows: usize,
    cols: usize,
) -> Result<(DevBuf<f32>, DevBuf<f32>)> {
    let mut y = rt.alloc::<f32>(rows * cols, false)?;
    let mut sums = rt.alloc::<f32>(cols, true)?;
    if cols == 0 || rows == 0 {
        return Ok((y, sums));
    }
    let mut args = [
        Arg::U64(rows as u64),
        Arg::U64(cols as u64),
        Arg::F32s(x, 0),
        Arg::F32s(g, 0),
        Arg::F32sMut(&mut y, 0),
        Arg::F32sMut(&mut sums, 0),
    ];
    // SAFETY: the arguments match `nn_relu_backward_colsum_f32(u64, u64, const float*,
    // const float*, float*, float*)`; `x`, `g` and `y` hold `rows*cols` elements, `sums`
    // `cols`.
    unsafe { rt.launch(&MODULE, RELU_BACKWARD_COLSUM_F32, grid(cols), &mut args) }?;
    Ok((y, sums))
}
