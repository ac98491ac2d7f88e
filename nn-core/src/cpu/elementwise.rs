//! Elementwise host loops: unary math, broadcast binary ops and comparisons, `where`,
//! ReLU's backward, casts. Inputs are contiguous; broadcasting goes by strides. Shapes
//! were validated by the caller (`check`).

use crate::backend::{BinaryOp, UnaryOp};
use crate::host::{try_collect, try_filled, try_with_capacity, HostData};
use crate::shape::{broadcast_strides, numel};
use crate::{DType, Result};

pub(super) fn unary(op: UnaryOp, x: &[f32]) -> Result<Vec<f32>> {
    // a macro, not a closure taking `fn`: each arm's loop is monomorphic and inlined
    macro_rules! c {
        ($f:expr) => {
            if super::par::worth(x.len()) {
                super::par::map(x, "unary", |v| $f(v))
            } else {
                try_collect(x.iter().map(|&v| $f(v)), "unary")
            }
        };
    }
    match op {
        UnaryOp::Neg => c!(|v: f32| -v),
        UnaryOp::Exp => c!(f32::exp),
        UnaryOp::Log => c!(f32::ln),
        UnaryOp::Abs => c!(f32::abs),
        UnaryOp::Sqrt => c!(f32::sqrt),
        UnaryOp::Relu => c!(|v: f32| if v > 0.0 { v } else { 0.0 }),
        UnaryOp::Sigmoid => c!(|v: f32| 1.0 / (1.0 + (-v).exp())),
        UnaryOp::Tanh => c!(f32::tanh),
        UnaryOp::Sign => c!(|v: f32| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        UnaryOp::Step => c!(|v: f32| if v > 0.0 { 1.0 } else { 0.0 }),
        UnaryOp::Powf(e) => {
            if e == 2.0 {
                c!(|v: f32| v * v)
            } else if e == 1.0 {
                // square's backward asks x^1: libm's powf costs ~20x a copy
                c!(|v: f32| v)
            } else {
                c!(|v: f32| v.powf(e))
            }
        }
        UnaryOp::Affine { mul, add } => c!(|v: f32| v * mul + add),
        UnaryOp::Erf => c!(erf),
    }
}

/// The error function to f32 precision, computed in f64: W. J. Cody's rational
/// approximations as in Numerical Recipes' `erfc` Chebyshev fit (fractional error below
/// 1.2e-7 everywhere), which is below f32's own rounding after the final cast.
fn erf(x: f32) -> f32 {
    let z = (x as f64).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let r = 1.0 - erfc;
    (if x < 0.0 { -r } else { r }) as f32
}

/// Applies `f` elementwise over `a` and `b` broadcast to `out`.
fn map2<A: Copy + Sync, B: Copy + Sync, O: Send + 'static>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    out: &[usize],
    f: impl Fn(A, B) -> O + Sync,
) -> Result<Vec<O>> {
    let n = numel(out);
    if super::par::worth(n) && !out.is_empty() {
        return map2_par(a, sa, b, sb, out, f);
    }
    if sa == out && sb == out {
        return try_collect(a.iter().zip(b).map(|(&x, &y)| f(x, y)), "binary");
    }
    if let (true, [x]) = (sb == out, a) {
        return try_collect(b.iter().map(|&y| f(*x, y)), "binary");
    }
    if let (true, [y]) = (sa == out, b) {
        return try_collect(a.iter().map(|&x| f(x, *y)), "binary");
    }
    let st_a = broadcast_strides(sa, out);
    let st_b = broadcast_strides(sb, out);
    let mut res = try_with_capacity(n, "binary")?;
    if out.is_empty() {
        res.push(f(a[0], b[0]));
        return Ok(res);
    }
    let last = out.len() - 1;
    let inner = out[last];
    let (ia, ib) = (st_a[last], st_b[last]);
    let outer = n.checked_div(inner).unwrap_or(0);
    let mut rows = super::par::Rows::at_row(&out[..last], [&st_a[..last], &st_b[..last]], 0);
    for _ in 0..outer {
        let [oa, ob] = rows.at;
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
        rows.advance();
    }
    Ok(res)
}

pub(super) fn binary_f32(
    op: BinaryOp,
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    out: &[usize],
) -> Result<HostData> {
    use HostData::{F32, I64};
    let m = |c: bool| c as i64;
    Ok(match op {
        BinaryOp::Add => F32(map2(a, sa, b, sb, out, |x, y| x + y)?),
        BinaryOp::Sub => F32(map2(a, sa, b, sb, out, |x, y| x - y)?),
        BinaryOp::Mul => F32(map2(a, sa, b, sb, out, |x, y| x * y)?),
        BinaryOp::Div => F32(map2(a, sa, b, sb, out, |x, y| x / y)?),
        BinaryOp::Maximum => F32(map2(a, sa, b, sb, out, |x: f32, y| x.max(y))?),
        BinaryOp::Minimum => F32(map2(a, sa, b, sb, out, |x: f32, y| x.min(y))?),
        BinaryOp::Eq => I64(map2(a, sa, b, sb, out, |x, y| m(x == y))?),
        BinaryOp::Ne => I64(map2(a, sa, b, sb, out, |x, y| m(x != y))?),
        BinaryOp::Lt => I64(map2(a, sa, b, sb, out, |x, y| m(x < y))?),
        BinaryOp::Le => I64(map2(a, sa, b, sb, out, |x, y| m(x <= y))?),
        BinaryOp::Gt => I64(map2(a, sa, b, sb, out, |x, y| m(x > y))?),
        BinaryOp::Ge => I64(map2(a, sa, b, sb, out, |x, y| m(x >= y))?),
    })
}

pub(super) fn binary_i64(
    op: BinaryOp,
    a: &[i64],
    sa: &[usize],
    b: &[i64],
    sb: &[usize],
    out: &[usize],
) -> Result<HostData> {
    let m = |c: bool| c as i64;
    Ok(HostData::I64(match op {
        BinaryOp::Add => map2(a, sa, b, sb, out, |x: i64, y| x.wrapping_add(y))?,
        BinaryOp::Sub => map2(a, sa, b, sb, out, |x: i64, y| x.wrapping_sub(y))?,
        BinaryOp::Mul => map2(a, sa, b, sb, out, |x: i64, y| x.wrapping_mul(y))?,
        BinaryOp::Div => map2(a, sa, b, sb, out, |x: i64, y| x.checked_div(y).unwrap_or(0))?,
        BinaryOp::Maximum => map2(a, sa, b, sb, out, |x: i64, y| x.max(y))?,
        BinaryOp::Minimum => map2(a, sa, b, sb, out, |x: i64, y| x.min(y))?,
        BinaryOp::Eq => map2(a, sa, b, sb, out, |x, y| m(x == y))?,
        BinaryOp::Ne => map2(a, sa, b, sb, out, |x, y| m(x != y))?,
        BinaryOp::Lt => map2(a, sa, b, sb, out, |x, y| m(x < y))?,
        BinaryOp::Le => map2(a, sa, b, sb, out, |x, y| m(x <= y))?,
        BinaryOp::Gt => map2(a, sa, b, sb, out, |x, y| m(x > y))?,
        BinaryOp::Ge => map2(a, sa, b, sb, out, |x, y| m(x >= y))?,
    }))
}

/// A comparison as a `Bool` mask (`op` must be one of the six comparisons).
pub(super) fn compare<T: Copy + PartialOrd + Sync>(
    op: BinaryOp,
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    out: &[usize],
) -> Result<HostData> {
    // one monomorphic loop per comparison
    macro_rules! m {
        ($f:expr) => {
            map2(a, sa, b, sb, out, |x: T, y: T| u8::from($f(x, y)))?
        };
    }
    Ok(HostData::Bool(match op {
        BinaryOp::Eq => m!(|x, y| x == y),
        BinaryOp::Ne => m!(|x, y| x != y),
        BinaryOp::Lt => m!(|x, y| x < y),
        BinaryOp::Le => m!(|x, y| x <= y),
        BinaryOp::Gt => m!(|x, y| x > y),
        BinaryOp::Ge => m!(|x, y| x >= y),
        other => {
            return Err(crate::Error::invalid_config(
                "compare",
                "op",
                format!("{other:?}"),
                "not a comparison",
            ))
        }
    }))
}

/// The condition of a `where`: an i64 mask or a bool / u8 one (nonzero = true).
#[derive(Clone, Copy)]
pub(super) enum Cond<'a> {
    /// i64 elements.
    I64(&'a [i64]),
    /// bool or u8 elements, one byte each.
    U8(&'a [u8]),
}

impl Cond<'_> {
    pub(super) fn len(self) -> usize {
        match self {
            Cond::I64(c) => c.len(),
            Cond::U8(c) => c.len(),
        }
    }
    #[inline]
    fn at(self, i: usize) -> bool {
        match self {
            Cond::I64(c) => c[i] != 0,
            Cond::U8(c) => c[i] != 0,
        }
    }
}

pub(super) fn where_cond<T: Copy + 'static>(
    cond: Cond<'_>,
    sc: &[usize],
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    out: &[usize],
) -> Result<Vec<T>> {
    let n = numel(out);
    let (stc, sta, stb) = (
        broadcast_strides(sc, out),
        broadcast_strides(sa, out),
        broadcast_strides(sb, out),
    );
    let mut res = try_with_capacity(n, "where")?;
    let mut idx = vec![0usize; out.len()];
    for _ in 0..n {
        let (mut oc, mut oa, mut ob) = (0, 0, 0);
        for d in 0..out.len() {
            oc += idx[d] * stc[d];
            oa += idx[d] * sta[d];
            ob += idx[d] * stb[d];
        }
        res.push(if cond.at(oc) { a[oa] } else { b[ob] });
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(res)
}

/// [`map2`] for a large output, split over the pool by chunks of whole rows (the
/// innermost dim); the same values.
fn map2_par<A: Copy + Sync, B: Copy + Sync, O: Send + 'static>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    out: &[usize],
    f: impl Fn(A, B) -> O + Sync,
) -> Result<Vec<O>> {
    use super::par;
    if sa == out && sb == out {
        return par::zip(a, b, "binary", f);
    }
    if let (true, [x]) = (sb == out, a) {
        return par::map(b, "binary", |y| f(*x, y));
    }
    if let (true, [y]) = (sa == out, b) {
        return par::map(a, "binary", |x| f(x, *y));
    }
    let st_a = broadcast_strides(sa, out);
    let st_b = broadcast_strides(sb, out);
    let last = out.len() - 1;
    let inner = out[last];
    let (ia, ib) = (st_a[last], st_b[last]);
    par::build(numel(out), inner, "binary", |start, dst| {
        let mut rows = par::Rows::at_row(
            &out[..last],
            [&st_a[..last], &st_b[..last]],
            start / inner.max(1),
        );
        let mut written = 0;
        for row in dst.chunks_mut(inner) {
            let [oa, ob] = rows.at;
            for (j, d) in row.iter_mut().enumerate() {
                d.write(f(a[oa + j * ia], b[ob + j * ib]));
                written += 1;
            }
            rows.advance();
        }
        written
    })
}

/// The per-channel vectors of [`channel_affine`] (each `[c]`).
pub(super) struct Channels<'a> {
    pub(super) mean: &'a [f32],
    pub(super) scale: &'a [f32],
    pub(super) shift: Option<&'a [f32]>,
}

/// `relu?((x - mean) * scale + shift + residual?)` per channel of `x` as `[outer, c,
/// inner]` (lengths checked by the caller), in one pass, split over the rayon pool by
/// channel planes when large. Each step is its own rounded f32 op, in the order the
/// separate ops run, so the result is the same bits as theirs.
pub(super) fn channel_affine(
    x: &[f32],
    [_, c, inner]: [usize; 3],
    ch: &Channels<'_>,
    residual: Option<&[f32]>,
    relu: bool,
) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let mut y = super::par::filled(x.len(), 0.0f32, "channel_affine")?;
    if x.is_empty() || inner == 0 {
        return Ok(y);
    }
    let plane = |(t, dst): (usize, &mut [f32])| {
        let k = t % c;
        let (m, s, b) = (ch.mean[k], ch.scale[k], ch.shift.map(|b| b[k]));
        let src = &x[t * inner..(t + 1) * inner];
        let res = residual.map(|r| &r[t * inner..(t + 1) * inner]);
        match (b, res) {
            (Some(b), Some(r)) => {
                for ((d, &v), &r) in dst.iter_mut().zip(src).zip(r) {
                    *d = (v - m) * s + b + r;
                }
            }
            (Some(b), None) => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = (v - m) * s + b;
                }
            }
            (None, Some(r)) => {
                for ((d, &v), &r) in dst.iter_mut().zip(src).zip(r) {
                    *d = (v - m) * s + r;
                }
            }
            (None, None) => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = (v - m) * s;
                }
            }
        }
        if relu {
            for d in dst.iter_mut() {
                // the same test as `UnaryOp::Relu` (NaN goes to 0)
                *d = if *d > 0.0 { *d } else { 0.0 };
            }
        }
    };
    if super::par::worth(x.len()) {
        y.par_chunks_mut(inner)
            .enumerate()
            .with_min_len((1usize << 13).div_ceil(inner))
            .for_each(plane);
    } else {
        y.chunks_mut(inner).enumerate().for_each(plane);
    }
    Ok(y)
}

/// `x > 0 ? g : 0` in one pass.
pub(super) fn relu_backward(x: &[f32], g: &[f32]) -> Result<Vec<f32>> {
    if super::par::worth(x.len()) {
        return super::par::zip(x, g, "relu_backward", |x, g| if x > 0.0 { g } else { 0.0 });
    }
    let it = x.iter().zip(g);
    try_collect(
        it.map(|(&x, &g)| if x > 0.0 { g } else { 0.0 }),
        "relu_backward",
    )
}

/// `g * (y > 0)` over `rows x cols` (the caller checked `y.len() == g.len()`, a
/// multiple of `cols`), with the column sums of the result, in one pass.
pub(super) fn relu_backward_colsum(
    y: &[f32],
    g: &[f32],
    cols: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut gm = try_with_capacity(y.len(), "relu_backward")?;
    let mut sums = try_filled(cols, 0.0f32, "relu_backward")?;
    if cols == 0 {
        return Ok((gm, sums));
    }
    // copy, then mask and sum in place: plain slices, so the loop vectorizes (an
    // `extend` over zipped iterators checks capacity per element and does not)
    gm.extend_from_slice(&g[..y.len().min(g.len())]);
    for (row, y) in gm.chunks_exact_mut(cols).zip(y.chunks_exact(cols)) {
        for ((v, &y), s) in row.iter_mut().zip(y).zip(sums.iter_mut()) {
            *v = if y > 0.0 { *v } else { 0.0 };
            *s += *v;
        }
    }
    Ok((gm, sums))
}

/// Conversion to `dtype` with Rust's `as` semantics (f32 to i64 truncates and saturates).
pub(super) fn cast(x: super::View<'_>, dtype: DType) -> Result<HostData> {
    use super::View;
    Ok(match (x, dtype) {
        (View::F32(x), DType::I64) => {
            HostData::I64(try_collect(x.iter().map(|&v| v as i64), "cast")?)
        }
        (View::I64(x), DType::F32) => {
            HostData::F32(try_collect(x.iter().map(|&v| v as f32), "cast")?)
        }
        (View::F32(_) | View::I64(_), d) if d == x.dtype() => x.to_owned()?,
        (View::Other(h), d) => h.to_dtype(d)?,
        // f32 or i64 to a storage-only dtype
        (x, d) => x.to_owned()?.to_dtype(d)?,
    })
}
