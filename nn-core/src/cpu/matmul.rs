//! Matrix products on the host: `gemm` for small and AVX2 products, `matrixmultiply`
//! for large ones where the CPU has AVX-512 (`gemm` again for those with a short side),
//! split over the rayon pool. The caller
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
    let rows = s.batch * s.m;
    let mut out = if super::par::worth(n_out) && n_out == rows * s.n && bias.len() == s.n && s.n > 0
    {
        // the bias rows written by the pool (a serial 3-4 MB copy on the calling thread
        // in a transformer's Linear layers, while the workers wait)
        super::par::build(n_out, s.n, "linear", |_, d| {
            d.chunks_exact_mut(s.n)
                .map(|row| {
                    for (x, &b) in row.iter_mut().zip(bias) {
                        x.write(b);
                    }
                })
                .count()
                * s.n
        })?
    } else {
        let mut out = try_with_capacity(n_out, "linear")?;
        for _ in 0..rows {
            out.extend_from_slice(bias);
        }
        out
    };
    gemm_into(&mut out, a, b, s, true);
    Ok(out)
}

/// `out[b] (+)= op(a[b]) @ op(b[b])`; accumulates into `out` when `acc`.
///
/// The `gemm` crate serves small products (lowest call overhead on tiny shapes) and, on
/// AVX2 machines, large ones too (threaded by its own rayon split above
/// [`PARALLEL_FLOPS`]). Where the CPU has AVX-512, large products go to `matrixmultiply`,
/// whose AVX-512 kernel is about 1.5x faster per core than `gemm`'s stable-Rust FMA
/// kernel, split by output rows over the rayon pool; except the products with a short
/// side ([`prefers_gemm`]: the Linear layers of a transformer), whose blocks of that
/// same split go to `gemm`'s kernel. The CPU check is std's cached feature detection:
/// no per-call system query.
pub(super) fn gemm_into(out: &mut [f32], a: &[f32], b: &[f32], s: &MatmulSpec, acc: bool) {
    let Some((m, n, k)) = nonempty(out, s, acc) else {
        return;
    };
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

/// [`gemm_into`] on the calling thread only: the product of one task of a split the
/// caller made (a convolution's per-sample products).
pub(super) fn gemm_serial(out: &mut [f32], a: &[f32], b: &[f32], s: &MatmulSpec, acc: bool) {
    if let Some(mnk) = nonempty(out, s, acc) {
        blocks(out, a, b, s, acc, mnk, false)
    }
}

/// `(m, n, k)` of a product that has work to do; `None` for an empty output, and for
/// an empty contraction after `out` is set to its value (zeros, or kept when `acc`).
fn nonempty(out: &mut [f32], s: &MatmulSpec, acc: bool) -> Option<(usize, usize, usize)> {
    let (m, n, k) = (s.m, s.n, s.k);
    if m == 0 || n == 0 {
        return None;
    }
    if k == 0 {
        if !acc {
            out.fill(0.0);
        }
        return None;
    }
    Some((m, n, k))
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
    let kernel = if prefers_gemm(s) {
        Kernel::Gemm
    } else {
        Kernel::Mm
    };
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
                        mm_crate(chunk, sub, r, (chunk.len() / n, n, k), acc, kernel);
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
                        unsafe { kernel.run(p.0.add(j0), n, l, sub, (m, nc, k), acc) };
                    }
                });
            }
        } else {
            mm_crate(dst, l, r, (m, n, k), acc, kernel);
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
    // SAFETY: `fits` checked that every addressed element of a (m x k), b (k x n) lies
    // inside its slice, and dst holds m*n elements addressed row-major, borrowed mutably.
    unsafe { gemm_raw(dst.as_mut_ptr(), n, a, b, (m, n, k), acc, par) }
}

/// `gemm` into an `m x n` block at `dst` with row stride `ldc`.
///
/// # Safety
/// 1. `a` fits `m x k` and `b` fits `k x n` (`Operand::fits`).
/// 2. `dst` addresses an `m x n` block with row stride `ldc`, valid for reads and
///    writes, that nothing else accesses during the call.
unsafe fn gemm_raw(
    dst: *mut f32,
    ldc: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    (m, n, k): (usize, usize, usize),
    acc: bool,
    par: gemm_common::Parallelism,
) {
    // `gemm`'s kernels want a column-major destination: compute C^T = op(B)^T op(A)^T
    // (what the `gemm` facade does for a row-major C), so the n x m product has column
    // stride ldc and row stride 1, B is its left operand and A its right one.
    // SAFETY: every element gemm reads at the given strides lies inside `a.data` and
    // `b.data` (1), and every element it writes lies in the exclusive `dst` block (2).
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            n,
            m,
            k,
            dst,
            ldc as isize,
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

/// Which single-threaded kernel computes a block of a large product on an AVX-512 CPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    /// `matrixmultiply`.
    Mm,
    /// `gemm`, without its own threads.
    Gemm,
}

/// Whether `gemm`'s kernel beats `matrixmultiply`'s on this product: with a plain
/// (untransposed) lhs and a short side `min(n, k) <= 256`, the Linear products of a
/// transformer (`x @ W^T` with W `[768|256|1024, 256]` or `[256, 1024]`, and the
/// backward's `G @ W`). Measured by `benches/bench_gemm_shapes.rs` on one AVX-512 core:
/// 107-113 GFLOP/s for `gemm` against 91-106 for `matrixmultiply`, equal for the 1024^3
/// product and the lhs-transposed `G^T @ X`, which stay on `matrixmultiply`. Also with
/// few rows `m <= 128` (a small batch through wide layers: W2's `x @ W^T` at batch 64 and
/// 128, and `G @ W`): 62-86 GFLOP/s for `gemm` against 54-74 for `matrixmultiply`, which
/// spends as long packing each 3-4 MB weight as multiplying it at these batches; its
/// `G^T @ X` (97-98 against 92-95) stays.
fn prefers_gemm(s: &MatmulSpec) -> bool {
    !s.lhs_t && (s.n.min(s.k) <= GEMM_SHORT_SIDE || s.m <= GEMM_FEW_ROWS)
}

/// See [`prefers_gemm`].
const GEMM_SHORT_SIDE: usize = 256;

/// See [`prefers_gemm`].
const GEMM_FEW_ROWS: usize = 128;

impl Kernel {
    /// Runs the kernel on one block.
    ///
    /// # Safety
    /// As [`mm_raw`].
    unsafe fn run(
        self,
        dst: *mut f32,
        ldc: usize,
        a: Operand<'_>,
        b: Operand<'_>,
        mnk: (usize, usize, usize),
        acc: bool,
    ) {
        // SAFETY: the caller upholds mm_raw's contract, which is gemm_raw's too.
        unsafe {
            match self {
                Kernel::Mm => mm_raw(dst, ldc, a, b, mnk, acc),
                Kernel::Gemm => gemm_raw(dst, ldc, a, b, mnk, acc, gemm_common::Parallelism::None),
            }
        }
    }
}

fn mm_crate(
    dst: &mut [f32],
    a: Operand<'_>,
    b: Operand<'_>,
    (m, n, k): (usize, usize, usize),
    acc: bool,
    kernel: Kernel,
) {
    if !(a.fits(m, k) && b.fits(k, n) && dst.len() >= m * n) {
        return;
    }
    // SAFETY: as in `gemm_crate`; dst holds the m x n block with row stride n.
    unsafe { kernel.run(dst.as_mut_ptr(), n, a, b, (m, n, k), acc) }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `op(A) @ op(B)` the slow way, in f64.
    fn naive(a: &[f32], b: &[f32], s: &MatmulSpec, bi: usize) -> Vec<f32> {
        let (m, n, k) = (s.m, s.n, s.k);
        let (a, b) = (&a[s.lhs_batch[bi] * m * k..], &b[s.rhs_batch[bi] * k * n..]);
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut t = 0.0f64;
                for p in 0..k {
                    let av = if s.lhs_t { a[p * m + i] } else { a[i * k + p] };
                    let bv = if s.rhs_t { b[j * k + p] } else { b[p * n + j] };
                    t += av as f64 * bv as f64;
                }
                c[i * n + j] = t as f32;
            }
        }
        c
    }

    /// Both kernels, both thread splits, transposed operands, a batch and accumulation,
    /// on odd shapes on both sides of the `gemm` / `matrixmultiply` boundary.
    #[test]
    fn every_route_matches_the_naive_product() {
        let val = |x: usize| ((x * 7919) % 23) as f32 / 11.0 - 1.0;
        let shapes = [
            (67, 45, 81),   // under SMALL_MACS
            (130, 97, 257), // n short: gemm unless lhs_t
            (97, 259, 130), // k short
            (300, 257, 258),
            (259, 300, 257), // both long: matrixmultiply
            (300, 200, 130), // threaded, gemm, split by rows
            (70, 600, 200),  // threaded, gemm, split by columns
            (70, 600, 300),  // threaded, matrixmultiply, split by columns
        ];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (m, n, k) in shapes {
                for (lhs_t, rhs_t) in [(false, false), (false, true), (true, false), (true, true)] {
                    let s = MatmulSpec {
                        batch: 2,
                        m,
                        n,
                        k,
                        lhs_batch: vec![0, 1],
                        rhs_batch: vec![1, 0],
                        lhs_t,
                        rhs_t,
                    };
                    let a: Vec<f32> = (0..2 * m * k).map(val).collect();
                    let b: Vec<f32> = (0..2 * k * n).map(|x| val(x + 5)).collect();
                    for acc in [false, true] {
                        let mut c = vec![if acc { 1.0 } else { f32::NAN }; 2 * m * n];
                        pool.install(|| gemm_into(&mut c, &a, &b, &s, acc));
                        for bi in 0..2 {
                            let want = naive(&a, &b, &s, bi);
                            let got = &c[bi * m * n..][..m * n];
                            for (x, (g, w)) in got.iter().zip(&want).enumerate() {
                                let w = if acc { w + 1.0 } else { *w };
                                assert!(
                                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                    "{m}x{n}x{k} t={lhs_t}{rhs_t} acc={acc} threads={threads} \
                                     batch {bi} element {x}: {g} vs {w}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_transformer_linear_products_go_to_gemm() {
        let spec = |m, n, k, lhs_t, rhs_t| MatmulSpec {
            batch: 1,
            m,
            n,
            k,
            lhs_batch: vec![0],
            rhs_batch: vec![0],
            lhs_t,
            rhs_t,
        };
        assert!(prefers_gemm(&spec(1024, 768, 256, false, true)));
        assert!(prefers_gemm(&spec(1024, 256, 1024, false, true)));
        assert!(prefers_gemm(&spec(1024, 256, 768, false, false)));
        assert!(!prefers_gemm(&spec(1024, 1024, 1024, false, false)));
        assert!(!prefers_gemm(&spec(768, 256, 1024, true, false)));
        // a small batch through an MLP's wide layers (W2 / W8)
        assert!(prefers_gemm(&spec(64, 1024, 784, false, true)));
        assert!(prefers_gemm(&spec(128, 1024, 1024, false, false)));
        assert!(!prefers_gemm(&spec(1024, 784, 64, true, false)));
        assert!(!prefers_gemm(&spec(129, 1024, 1024, false, false)));
    }
}
