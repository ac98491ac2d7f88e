//! Launchers of `elementwise.cu`: unary math, broadcast binary ops and comparisons,
//! `where`, casts.

use super::{grid, KernelModule};
use crate::device::CudaDevice;
use crate::error::Result;
use crate::layout::Layout3;
use cudarc::driver::{CudaSlice, PushKernelArg};
use nn_core::backend::{BinaryOp, UnaryOp};

const UNARY_F32: &str = "nn_unary_f32";
const BINARY_F32: &str = "nn_binary_f32";
const CMP_F32: &str = "nn_cmp_f32";
const BINARY_I64: &str = "nn_binary_i64";
const WHERE_F32: &str = "nn_where_f32";
const WHERE_I64: &str = "nn_where_i64";
const CAST_F32_I64: &str = "nn_cast_f32_i64";
const CAST_I64_F32: &str = "nn_cast_i64_f32";

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
    dev: &CudaDevice,
    op: UnaryOp,
    x: &CudaSlice<f32>,
    n: usize,
) -> Result<CudaSlice<f32>> {
    let mut y = dev.alloc::<f32>(n)?;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.func(&MODULE, UNARY_F32)?;
    let (code, p0, p1) = unary_code(op);
    let n64 = n as u64;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(&n64).arg(&code).arg(&p0).arg(&p1).arg(x).arg(&mut y);
    // SAFETY: the arguments match `nn_unary_f32(u64, int, float, float, const float*,
    // float*)` in order and type; `x` and `y` hold at least `n` elements.
    unsafe { b.launch(grid(n)) }?;
    Ok(y)
}

/// Arithmetic (`binary`) or comparison (`cmp`) kernels over broadcast operands: `l` maps
/// each of the `n` outputs to offsets in `a` (operand 0) and `b` (operand 1), which the
/// caller derived from the operands' shapes, so every offset is in bounds.
macro_rules! broadcast_launcher {
    ($(#[$doc:meta])* $fn:ident, $kernel:expr, $t:ty, $out:ty) => {
        $(#[$doc])*
        pub(crate) fn $fn(
            dev: &CudaDevice,
            op: BinaryOp,
            l: &Layout3,
            a: &CudaSlice<$t>,
            b: &CudaSlice<$t>,
            n: usize,
        ) -> Result<CudaSlice<$out>> {
            let mut y = dev.alloc::<$out>(n)?;
            if n == 0 {
                return Ok(y);
            }
            let f = dev.func(&MODULE, $kernel)?;
            let (n64, code) = (n as u64, binary_code(op));
            let mut lb = dev.stream().launch_builder(&f);
            lb.arg(&n64).arg(&code).arg(l).arg(a).arg(b).arg(&mut y);
            // SAFETY: the arguments match the kernel's `(u64, int, Layout3, const T*,
            // const T*, Out*)`; `l` was built from the operand shapes broadcast to the
            // `n`-element output, so every offset it yields is inside `a` and `b`.
            unsafe { lb.launch(grid(n)) }?;
            Ok(y)
        }
    };
}

broadcast_launcher!(
    /// f32 arithmetic (`Add` ... `Minimum`).
    binary_f32, BINARY_F32, f32, f32
);
broadcast_launcher!(
    /// f32 comparisons as i64 masks.
    cmp_f32, CMP_F32, f32, i64
);
broadcast_launcher!(
    /// i64 arithmetic and comparisons.
    binary_i64, BINARY_I64, i64, i64
);

macro_rules! where_launcher {
    ($(#[$doc:meta])* $fn:ident, $kernel:expr, $t:ty) => {
        $(#[$doc])*
        pub(crate) fn $fn(
            dev: &CudaDevice,
            l: &Layout3,
            cond: &CudaSlice<i64>,
            a: &CudaSlice<$t>,
            b: &CudaSlice<$t>,
            n: usize,
        ) -> Result<CudaSlice<$t>> {
            let mut y = dev.alloc::<$t>(n)?;
            if n == 0 {
                return Ok(y);
            }
            let f = dev.func(&MODULE, $kernel)?;
            let n64 = n as u64;
            let mut lb = dev.stream().launch_builder(&f);
            lb.arg(&n64).arg(l).arg(cond).arg(a).arg(b).arg(&mut y);
            // SAFETY: the arguments match `(u64, Layout3, const i64*, const T*, const T*,
            // T*)`; `l` maps the `n` outputs into `cond`, `a` and `b` (operands 0, 1, 2)
            // from their broadcast shapes, so every offset is in bounds.
            unsafe { lb.launch(grid(n)) }?;
            Ok(y)
        }
    };
}

where_launcher!(
    /// `cond != 0 ? a : b` for f32 values.
    where_f32, WHERE_F32, f32
);
where_launcher!(
    /// `cond != 0 ? a : b` for i64 values.
    where_i64, WHERE_I64, i64
);

macro_rules! cast_launcher {
    ($(#[$doc:meta])* $fn:ident, $kernel:expr, $from:ty, $to:ty) => {
        $(#[$doc])*
        pub(crate) fn $fn(dev: &CudaDevice, x: &CudaSlice<$from>, n: usize) -> Result<CudaSlice<$to>> {
            let mut y = dev.alloc::<$to>(n)?;
            if n == 0 {
                return Ok(y);
            }
            let f = dev.func(&MODULE, $kernel)?;
            let n64 = n as u64;
            let mut lb = dev.stream().launch_builder(&f);
            lb.arg(&n64).arg(x).arg(&mut y);
            // SAFETY: the arguments match `(u64, const From*, To*)`; both buffers hold at
            // least `n` elements.
            unsafe { lb.launch(grid(n)) }?;
            Ok(y)
        }
    };
}

cast_launcher!(
    /// f32 to i64 with Rust's `as` semantics (truncate, saturate, NaN to 0).
    cast_f32_i64, CAST_F32_I64, f32, i64
);
cast_launcher!(
    /// i64 to f32 (round to nearest).
    cast_i64_f32, CAST_I64_F32, i64, f32
);
