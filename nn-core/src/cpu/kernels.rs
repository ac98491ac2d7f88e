//! Host loops behind [`super::CpuStorage`]: contiguous inputs, broadcasting by strides.

use crate::backend::{BinaryOp, MatmulSpec, ReduceOp, UnaryOp};
use crate::shape::{broadcast_strides, numel, strides};
use crate::{Error, Result};

/// Products at or above this many multiply-adds use every thread of the rayon pool.
const PARALLEL_FLOPS: usize = 1 << 22;

pub(super) fn unary(op: UnaryOp, x: &[f32]) -> Vec<f32> {
    match op {
        UnaryOp::Neg => x.iter().map(|v| -v).collect(),
        UnaryOp::Exp => x.iter().map(|v| v.exp()).collect(),
        UnaryOp::Log => x.iter().map(|v| v.ln()).collect(),
        UnaryOp::Abs => x.iter().map(|v| v.abs()).collect(),
        UnaryOp::Sqrt => x.iter().map(|v| v.sqrt()).collect(),
        UnaryOp::Relu => x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect(),
        UnaryOp::Sigmoid => x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
        UnaryOp::Tanh => x.iter().map(|v| v.tanh()).collect(),
        UnaryOp::Sign => x
            .iter()
            .map(|&v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })
            .collect(),
        UnaryOp::Step => x.iter().map(|&v| if v > 0.0 { 1.0 } else { 0.0 }).collect(),
        UnaryOp::Powf(e) => {
            if e == 2.0 {
                x.iter().map(|v| v * v).collect()
            } else {
                x.iter().map(|v| v.powf(e)).collect()
            }
        }
        UnaryOp::Affine { mul, add } => x.iter().map(|v| v * mul + add).collect(),
    }
}

/// Applies `f` elementwise over `a` and `b` broadcast to `out`.
fn map2<A: Copy, B: Copy, O>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    out: &[usize],
    f: impl Fn(A, B) -> O,
) -> Vec<O> {
    let n = numel(out);
    if sa == out && sb == out {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    if sb == out && a.len() == 1 {
        let x = a[0];
        return b.iter().map(|&y| f(x, y)).collect();
    }
    if sa == out && b.len() == 1 {
        let y = b[0];
        return a.iter().map(|&x| f(x, y)).collect();
    }
    let st_a = broadcast_strides(sa, out);
    let st_b = broadcast_strides(sb, out);
    let mut res = Vec::with_capacity(n);
    if out.is_empty() {
        res.push(f(a[0], b[0]));
        return res;
    }
    let last = out.len() - 1;
    let inner = out[last];
    let (ia, ib) = (st_a[last], st_b[last]);
    let outer = n.checked_div(inner).unwrap_or(0);
    let mut idx = vec![0usize; last];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..outer {
        if ia == 1 && ib == 1 {
            res.extend(
                a[oa..oa + inner]
                    .iter()
                    .zip(&b[ob..ob + inner])
                    .map(|(&x, &y)| f(x, y)),
            );
        } else if ia == 1 && ib == 0 {
            let y = b[ob];
            res.extend(a[oa..oa + inner].iter().map(|&x| f(x, y)));
        } else if ia == 0 && ib == 1 {
            let x = a[oa];
            res.extend(b[ob..ob + inner].iter().map(|&y| f(x, y)));
        } else {
            for j in 0..inner {
                res.push(f(a[oa + j * ia], b[ob + j * ib]));
            }
        }
        // odometer over the outer dims
        for d in (0..last).rev() {
            idx[d] += 1;
            oa += st_a[d];
            ob += st_b[d];
            if idx[d] < out[d] {
                break;
            }
            oa -= st_a[d] * out[d];
            ob -= st_b[d] * out[d];
            idx[d] = 0;
        }
    }
    res
}

pub(super) fn binary_f32(
    op: BinaryOp,
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    out: &[usize],
) -> super::CpuStorage {
    use super::CpuStorage::{F32, I64};
    let m = |c: bool| c as i64;
    match op {
        BinaryOp::Add => F32(map2(a, sa, b, sb, out, |x, y| x + y)),
        BinaryOp::Sub => F32(map2(a, sa, b, sb, out, |x, y| x - y)),
        BinaryOp::Mul => F32(map2(a, sa, b, sb, out, |x, y| x * y)),
        BinaryOp::Div => F32(map2(a, sa, b, sb, out, |x, y| x / y)),
        BinaryOp::Maximum => F32(map2(a, sa, b, sb, out, |x: f32, y| x.max(y))),
        BinaryOp::Minimum => F32(map2(a, sa, b, sb, out, |x: f32, y| x.min(y))),
        BinaryOp::Eq => I64(map2(a, sa, b, sb, out, |x, y| m(x == y))),
        BinaryOp::Ne => I64(map2(a, sa, b, sb, out, |x, y| m(x != y))),
        BinaryOp::Lt => I64(map2(a, sa, b, sb, out, |x, y| m(x < y))),
        BinaryOp::Le => I64(map2(a, sa, b, sb, out, |x, y| m(x <= y))),
        BinaryOp::Gt => I64(map2(a, sa, b, sb, out, |x, y| m(x > y))),
        BinaryOp::Ge => I64(map2(a, sa, b, sb, out, |x, y| m(x >= y))),
    }
}

pub(super) fn binary_i64(
    op: BinaryOp,
    a: &[i64],
    sa: &[usize],
    b: &[i64],
    sb: &[usize],
    out: &[usize],
) -> super::CpuStorage {
    use super::CpuStorage::I64;
    let m = |c: bool| c as i64;
    I64(match op {
        BinaryOp::Add => map2(a, sa, b, sb, out, |x: i64, y| x.wrapping_add(y)),
        BinaryOp::Sub => map2(a, sa, b, sb, out, |x: i64, y| x.wrapping_sub(y)),
        BinaryOp::Mul => map2(a, sa, b, sb, out, |x: i64, y| x.wrapping_mul(y)),
        BinaryOp::Div => map2(a, sa, b, sb, out, |x: i64, y| x.checked_div(y).unwrap_or(0)),
        BinaryOp::Maximum => map2(a, sa, b, sb, out, |x: i64, y| x.max(y)),
        BinaryOp::Minimum => map2(a, sa, b, sb, out, |x: i64, y| x.min(y)),
        BinaryOp::Eq => map2(a, sa, b, sb, out, |x, y| m(x == y)),
        BinaryOp::Ne => map2(a, sa, b, sb, out, |x, y| m(x != y)),
        BinaryOp::Lt => map2(a, sa, b, sb, out, |x, y| m(x < y)),
        BinaryOp::Le => map2(a, sa, b, sb, out, |x, y| m(x <= y)),
        BinaryOp::Gt => map2(a, sa, b, sb, out, |x, y| m(x > y)),
        BinaryOp::Ge => map2(a, sa, b, sb, out, |x, y| m(x >= y)),
    })
}

pub(super) fn where_cond<T: Copy>(
    cond: &[i64],
    sc: &[usize],
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    out: &[usize],
) -> Vec<T> {
    let n = numel(out);
    let (stc, sta, stb) = (
        broadcast_strides(sc, out),
        broadcast_strides(sa, out),
        broadcast_strides(sb, out),
    );
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0usize; out.len()];
    for _ in 0..n {
        let (mut oc, mut oa, mut ob) = (0, 0, 0);
        for d in 0..out.len() {
            oc += idx[d] * stc[d];
            oa += idx[d] * sta[d];
            ob += idx[d] * stb[d];
        }
        res.push(if cond[oc] != 0 { a[oa] } else { b[ob] });
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

pub(super) fn matmul(a: &[f32], b: &[f32], s: &MatmulSpec) -> Vec<f32> {
    let mut out = vec![0.0f32; s.batch * s.m * s.n];
    gemm_into(&mut out, a, b, s, false);
    out
}

/// `a @ b + bias` (bias broadcast over rows): the output starts as the bias rows and the
/// GEMM accumulates into it, so the bias costs no extra pass.
pub(super) fn matmul_bias(a: &[f32], b: &[f32], s: &MatmulSpec, bias: &[f32]) -> Vec<f32> {
    let rows = s.batch * s.m;
    let mut out = Vec::with_capacity(rows * s.n);
    for _ in 0..rows {
        out.extend_from_slice(bias);
    }
    gemm_into(&mut out, a, b, s, true);
    out
}

/// `x > 0 ? g : 0` in one pass.
pub(super) fn relu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(g)
        .map(|(&x, &g)| if x > 0.0 { g } else { 0.0 })
        .collect()
}

/// `out[b] (+)= op(a[b]) @ op(b[b])`; accumulates into `out` when `acc`.
///
/// The `gemm` crate serves small products (lowest call overhead on tiny shapes) and, on
/// AVX2 machines, large ones too (threaded by its own rayon split above
/// [`PARALLEL_FLOPS`]). Where the CPU has AVX-512, large products go to `matrixmultiply`,
/// whose AVX-512 kernel is about 1.5x faster per core than `gemm`'s stable-Rust FMA
/// kernel, split by output rows over the rayon pool. The CPU check is std's cached
/// feature detection: no per-call system query.
fn gemm_into(out: &mut [f32], a: &[f32], b: &[f32], s: &MatmulSpec, acc: bool) {
    let (m, n, k) = (s.m, s.n, s.k);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            out.fill(0.0);
        }
        return;
    }
    // element (i, p) of op(lhs) sits at i*rs + p*cs
    let (a_rs, a_cs) = if s.lhs_t { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if s.rhs_t { (1, k) } else { (n, 1) };
    let macs = m * n * k;
    let threaded = macs >= PARALLEL_FLOPS && rayon::current_num_threads() > 1;
    for bi in 0..s.batch {
        let ao = s.lhs_batch[bi] * m * k;
        let bo = s.rhs_batch[bi] * k * n;
        let (a, b) = (&a[ao..ao + m * k], &b[bo..bo + k * n]);
        let dst = &mut out[bi * m * n..(bi + 1) * m * n];
        let l = Operand {
            data: a,
            rs: a_rs,
            cs: a_cs,
        };
        let r = Operand {
            data: b,
            rs: b_rs,
            cs: b_cs,
        };
        if macs < SMALL_MACS {
            let done = if !s.rhs_t {
                super::small_gemm::gemm(dst, a, a_rs, a_cs, b, (m, n, k), acc)
            } else {
                !s.lhs_t && super::small_gemm::gemm_bt(dst, a, a_rs, b, (m, n, k), acc)
            };
            if done {
                continue;
            }
        }
        if macs < SMALL_MACS || !has_avx512() {
            let par = if threaded {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            };
            gemm_crate(dst, l, r, (m, n, k), acc, par);
        } else if threaded && (m >= 2 * ROW_BLOCK || n >= 2 * ROW_BLOCK) {
            // Split the output so that the bigger operand is divided between threads
            // (each thread packs only its part of it): rows when A is the bigger one,
            // columns otherwise.
            use rayon::prelude::*;
            let by_rows = m * k >= k * n && m >= 2 * ROW_BLOCK || n < 2 * ROW_BLOCK;
            let dim = if by_rows { m } else { n };
            let threads = rayon::current_num_threads().min(dim / ROW_BLOCK);
            let step = dim.div_ceil(threads).next_multiple_of(16);
            if by_rows {
                dst.par_chunks_mut(step * n)
                    .enumerate()
                    .for_each(|(c, chunk)| {
                        let i0 = c * step;
                        let sub = Operand {
                            data: &l.data[i0 * l.rs..],
                            ..l
                        };
                        mm_crate(chunk, sub, r, (chunk.len() / n, n, k), acc);
                    });
            } else {
                let out = SendPtr(dst.as_mut_ptr());
                let len = dst.len();
                (0..dim.div_ceil(step)).into_par_iter().for_each(|c| {
                    let j0 = c * step;
                    let nc = step.min(n - j0);
                    let sub = Operand {
                        data: &r.data[j0 * r.cs..],
                        ..r
                    };
                    let p = out;
                    if sub.fits(k, nc) && (m - 1) * n + j0 + nc <= len {
                        // SAFETY: the block [0, m) x [j0, j0 + nc) of the m x n output lies
                        // inside dst (checked); blocks of different tasks are disjoint
                        // column ranges, so no element is written by two threads.
                        unsafe { mm_raw(p.0.add(j0), n, l, sub, (m, nc, k), acc) };
                    }
                });
            }
        } else {
            mm_crate(dst, l, r, (m, n, k), acc);
        }
    }
}

/// A raw output pointer shared by tasks writing disjoint blocks.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tasks only write disjoint column blocks through it (see the column split).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// Whether the CPU runs AVX-512F (std caches the answer after the first query).
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Products under this many multiply-adds use `gemm`'s small-matrix path.
const SMALL_MACS: usize = 64 * 64 * 64;
/// Fewest rows each thread gets in a split product.
const ROW_BLOCK: usize = 32;

/// A strided matrix view: element (i, p) at `i * rs + p * cs` of `data`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl Operand<'_> {
    /// Whether an `rows x cols` matrix with these strides lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

fn gemm_crate(
    dst: &mut [f32],
    a: Operand<'_>,
    b: Operand<'_>,
    (m, n, k): (usize, usize, usize),
    acc: bool,
    par: gemm::Parallelism,
) {
    if !(a.fits(m, k) && b.fits(k, n) && dst.len() >= m * n) {
        return;
    }
    // SAFETY: `fits` checked that every addressed element of a (m x k), b (k x n) lies
    // inside its slice, and dst holds m*n elements addressed row-major.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn mm_crate(
    dst: &mut [f32],
    a: Operand<'_>,
    b: Operand<'_>,
    (m, n, k): (usize, usize, usize),
    acc: bool,
) {
    if !(a.fits(m, k) && b.fits(k, n) && dst.len() >= m * n) {
        return;
    }
    // SAFETY: as in `gemm_crate`; dst holds the m x n block with row stride n.
    unsafe { mm_raw(dst.as_mut_ptr(), n, a, b, (m, n, k), acc) }
}

/// `matrixmultiply` into an `m x n` block at `dst` with row stride `ldc`.
///
/// # Safety
/// `a` and `b` must fit their shapes (`Operand::fits`) and `dst` must address an
/// `m x n` block with row stride `ldc` that nothing else accesses during the call.
unsafe fn mm_raw(
    dst: *mut f32,
    ldc: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    (m, n, k): (usize, usize, usize),
    acc: bool,
) {
    matrixmultiply::sgemm(
        m,
        k,
        n,
        1.0,
        a.data.as_ptr(),
        a.rs as isize,
        a.cs as isize,
        b.data.as_ptr(),
        b.rs as isize,
        b.cs as isize,
        if acc { 1.0 } else { 0.0 },
        dst,
        ldc as isize,
        1,
    );
}

/// Trait for element types the reductions understand.
pub(super) trait Elem: Copy + PartialOrd {
    fn is_nan(self) -> bool;
    /// Sum that never panics (integers wrap, as PyTorch's int64 sum does).
    fn plus(self, v: Self) -> Self;
    const ZERO: Self;
    const MIN: Self;
    const MAX: Self;
}
impl Elem for f32 {
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn plus(self, v: Self) -> Self {
        self + v
    }
    const ZERO: Self = 0.0;
    const MIN: Self = f32::NEG_INFINITY;
    const MAX: Self = f32::INFINITY;
}
impl Elem for i64 {
    fn is_nan(self) -> bool {
        false
    }
    fn plus(self, v: Self) -> Self {
        self.wrapping_add(v)
    }
    const ZERO: Self = 0;
    const MIN: Self = i64::MIN;
    const MAX: Self = i64::MAX;
}

pub(super) fn reduce<T: Elem>(op: ReduceOp, x: &[T], shape: &[usize], axes: &[usize]) -> Vec<T> {
    let mut out_shape = shape.to_vec();
    for &a in axes {
        out_shape[a] = 1;
    }
    let n_out = numel(&out_shape);
    let init = match op {
        ReduceOp::Max => T::MIN,
        ReduceOp::Min => T::MAX,
        _ => T::ZERO,
    };
    let f = |acc: T, v: T| -> T {
        match op {
            ReduceOp::Max => {
                // NaN propagates like PyTorch's max
                if v > acc || v.is_nan() {
                    v
                } else {
                    acc
                }
            }
            ReduceOp::Min => {
                if v < acc || v.is_nan() {
                    v
                } else {
                    acc
                }
            }
            _ => acc.plus(v),
        }
    };
    let mut out = vec![init; n_out];
    if x.is_empty() {
        return out;
    }
    // split into outer (kept) x reduced-contiguous-tail x inner (kept) when axes are contiguous
    let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && !axes.is_empty() {
        let (a0, a1) = (axes[0], axes[axes.len() - 1] + 1);
        let outer: usize = shape[..a0].iter().product();
        let red: usize = shape[a0..a1].iter().product();
        let inner: usize = shape[a1..].iter().product();
        for o in 0..outer {
            let dst = &mut out[o * inner..(o + 1) * inner];
            for r in 0..red {
                let src = &x[(o * red + r) * inner..(o * red + r + 1) * inner];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = f(*d, v);
                }
            }
        }
        return out;
    }
    let ost = broadcast_strides(&out_shape, shape);
    let ost: Vec<usize> = (0..shape.len())
        .map(|d| if axes.contains(&d) { 0 } else { ost[d] })
        .collect();
    let mut idx = vec![0usize; shape.len()];
    let mut o = 0usize;
    for &v in x {
        out[o] = f(out[o], v);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            o += ost[d];
            if idx[d] < shape[d] {
                break;
            }
            o -= ost[d] * shape[d];
            idx[d] = 0;
        }
    }
    out
}

pub(super) fn argmax(x: &[f32], shape: &[usize], axis: usize) -> Vec<i64> {
    let outer: usize = shape[..axis].iter().product();
    let red = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0i64; outer * inner];
    for o in 0..outer {
        for i in 0..inner {
            let mut best = f32::NEG_INFINITY;
            let mut bi = 0i64;
            for r in 0..red {
                let v = x[(o * red + r) * inner + i];
                if v > best || (r == 0) || v.is_nan() {
                    best = v;
                    bi = r as i64;
                    if v.is_nan() {
                        break;
                    }
                }
            }
            out[o * inner + i] = bi;
        }
    }
    out
}

pub(super) fn permute<T: Copy>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let st = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src_st: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let n = x.len();
    let mut res = Vec::with_capacity(n);
    if out_shape.is_empty() {
        return x.to_vec();
    }
    let last = out_shape.len() - 1;
    let inner = out_shape[last];
    let is = src_st[last];
    let outer = n.checked_div(inner).unwrap_or(0);
    let mut idx = vec![0usize; last];
    let mut o = 0usize;
    for _ in 0..outer {
        for j in 0..inner {
            res.push(x[o + j * is]);
        }
        for d in (0..last).rev() {
            idx[d] += 1;
            o += src_st[d];
            if idx[d] < out_shape[d] {
                break;
            }
            o -= src_st[d] * out_shape[d];
            idx[d] = 0;
        }
    }
    res
}

pub(super) fn narrow<T: Copy>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let d = shape[axis];
    let mut res = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let base = (o * d + start) * inner;
        res.extend_from_slice(&x[base..base + len * inner]);
    }
    res
}

pub(super) fn cat<T: Copy>(parts: &[(&[T], &[usize])], axis: usize) -> Vec<T> {
    let Some((_, s0)) = parts.first() else {
        return Vec::new();
    };
    let outer: usize = s0[..axis].iter().product();
    let inner: usize = s0[axis + 1..].iter().product();
    let total: usize = parts.iter().map(|(x, _)| x.len()).sum();
    let mut res = Vec::with_capacity(total);
    for o in 0..outer {
        for (x, s) in parts {
            let blk = s[axis] * inner;
            res.extend_from_slice(&x[o * blk..(o + 1) * blk]);
        }
    }
    res
}

pub(super) fn check_indices(op: &'static str, idx: &[i64], size: usize) -> Result<Vec<usize>> {
    idx.iter()
        .map(|&i| {
            let j = if i < 0 { i + size as i64 } else { i };
            if j < 0 || j >= size as i64 {
                Err(Error::IndexOutOfRange { op, index: i, size })
            } else {
                Ok(j as usize)
            }
        })
        .collect()
}

pub(super) fn index_select<T: Copy>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let d = shape[axis];
    let mut res = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let base = (o * d + i) * inner;
            res.extend_from_slice(&x[base..base + inner]);
        }
    }
    res
}

pub(super) fn index_add(
    x: &[f32],
    shape: &[usize],
    axis: usize,
    idx: &[usize],
    out_shape: &[usize],
) -> Vec<f32> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let d_out = out_shape[axis];
    let d_in = shape[axis];
    let mut res = vec![0.0f32; numel(out_shape)];
    for o in 0..outer {
        for (r, &i) in idx.iter().enumerate() {
            let src = (o * d_in + r) * inner;
            let dst = (o * d_out + i) * inner;
            for j in 0..inner {
                res[dst + j] += x[src + j];
            }
        }
    }
    res
}
