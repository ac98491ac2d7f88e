//! Matrix products on the host: `gemm` for small and AVX2 products, `matrixmultiply`
//! for large ones where the CPU has AVX-512, split over the rayon pool. The caller
//! (`check::matmul`) validated the spec against the operands' lengths.

use crate::backend::MatmulSpec;
use crate::host::try_with_capacity;
use crate::Result;

/// Products at or above this many multiply-adds use every thread of the rayon pool.
const PARALLEL_FLOPS: usize = 1 << 22;

pub(super) fn matmul(a: &[f32], b: &[f32], s: &MatmulSpec, n_out: usize) -> Result<Vec<f32>> {
    let mut out = super::par::filled(n_out, 0.0f32, "matmul")?;
    gemm_into(&mut out, a, b, s, false);
    Ok(out)
}

/// `a @ b + bias` (bias broadcast over rows): the output starts as the bias rows and the
/// GEMM accumulates into it, so the bias costs no extra pass.
pub(super) fn matmul_bias(
    a: &[f32],
    b: &[f32],
    s: &MatmulSpec,
    bias: &[f32],
    n_out: usize,
) -> Result<Vec<f32>> {
    let mut out = try_with_capacity(n_out, "linear")?;
    for _ in 0..s.batch * s.m {
        out.extend_from_slice(bias);
    }
    gemm_into(&mut out, a, b, s, true);
    Ok(out)
}

/// `out[b] (+)= op(a[b]) @ op(b[b])`; accumulates into `out` when `acc`.
///
/// The `gemm` crate serves small products (lowest call overhead on tiny shapes) and, on
/// AVX2 machines, large ones too (threaded by its own rayon split above
/// [`PARALLEL_FLOPS`]). Where the CPU has AVX-512, large products go to `matrixmultiply`,
/// whose AVX-512 kernel is about 1.5x faster per core than `gemm`'s stable-Rust FMA
/// kernel, split by output rows over the rayon pool. The CPU check is std's cached
/// feature detection: no per-call system query.
pub(super) fn gemm_into(out: &mut [f32], a: &[f32], b: &[f32], s: &MatmulSpec, acc: bool) {
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
    let macs = m * n * k;
    let threaded = macs >= PARALLEL_FLOPS && rayon::current_num_threads() > 1;
    if threaded && rayon::current_thread_index().is_none() {
        // Called from outside the pool: run the whole product on a worker, so that the
        // caller blocks (and is woken) once per product rather than once per fork of the
        // split (the threaded `gemm` forks per packed block), and each fork starts on a
        // running worker that goes on with the work itself when the other is slow to wake.
        return rayon::scope(|_| blocks(out, a, b, s, acc, (m, n, k), threaded));
    }
    blocks(out, a, b, s, acc, (m, n, k), threaded)
}

/// The body of [`gemm_into`]: one product per batch element.
fn blocks(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    s: &MatmulSpec,
    acc: bool,
    (m, n, k): (usize, usize, usize),
    threaded: bool,
) {
    let macs = m * n * k;
    // element (i, p) of op(lhs) sits at i*rs + p*cs
    let (a_rs, a_cs) = if s.lhs_t { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if s.rhs_t { (1, k) } else { (n, 1) };
    let one = |bi: usize, dst: &mut [f32]| {
        let ao = s.lhs_batch[bi] * m * k;
        let bo = s.rhs_batch[bi] * k * n;
        let (a, b) = (&a[ao..ao + m * k], &b[bo..bo + k * n]);
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
                return;
            }
        }
        if macs < SMALL_MACS || !has_avx512() {
            let par = if threaded {
                gemm_common::Parallelism::Rayon(0)
            } else {
                gemm_common::Parallelism::None
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
    };
    // Many products each too small to split (attention's per-head products): one
    // product per task instead, when together they are worth the threads.
    let per_batch = !threaded
        && s.batch > 1
        && macs.saturating_mul(s.batch) >= PARALLEL_FLOPS
        && rayon::current_num_threads() > 1;
    let out = &mut out[..s.batch * m * n];
    if per_batch {
        use rayon::prelude::*;
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(bi, dst)| one(bi, dst));
    } else {
        for (bi, dst) in out.chunks_mut(m * n).enumerate() {
            one(bi, dst);
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
    par: gemm_common::Parallelism,
) {
    if !(a.fits(m, k) && b.fits(k, n) && dst.len() >= m * n) {
        return;
    }
    // `gemm`'s kernels want a column-major destination: compute C^T = op(B)^T op(A)^T
    // (what the `gemm` facade does for a row-major C), so the n x m product has column
    // stride n and row stride 1, B is its left operand and A its right one.
    // SAFETY: `fits` checked that every addressed element of a (m x k), b (k x n) lies
    // inside its slice, and dst holds m*n elements addressed row-major.
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            n,
            m,
            k,
            dst.as_mut_ptr(),
            n as isize,
            1,
            acc,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
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
/// 1. `a` fits `m x k` and `b` fits `k x n` (`Operand::fits`).
/// 2. `dst` addresses an `m x n` block with row stride `ldc`, valid for reads and
///    writes, that nothing else accesses during the call.
unsafe fn mm_raw(
    dst: *mut f32,
    ldc: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    (m, n, k): (usize, usize, usize),
    acc: bool,
) {
    // SAFETY: every element sgemm reads at the given strides lies inside `a.data` and
    // `b.data` (1), and every element it writes lies in the exclusive `dst` block (2).
    unsafe {
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
}
