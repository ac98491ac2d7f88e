//! A register-blocked AVX2/FMA kernel for small products `C (+)= A B` whose B rows are
//! contiguous (`B` not transposed). Small products are dominated by call overhead in the
//! general GEMM crates (packing buffers allocated and zeroed per call); this kernel packs
//! nothing and allocates nothing: 4 rows x 16 columns of C live in eight registers while
//! it walks the shared dimension. Column edges use masked loads and stores.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether the kernel can run on this CPU (std caches the detection).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C[m x n] (+)= A[m x k] B[k x n]`: A element (i, p) at `a[i * a_rs + p * a_cs]`,
/// B element (p, j) at `b[p * n + j]`, C row-major. Returns false (doing nothing) when the
/// CPU lacks AVX2/FMA or the slices are too short for the shapes.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    c: &mut [f32],
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    acc: bool,
) -> bool {
    if m == 0 || n == 0 || k == 0 {
        return false;
    }
    let a_ok = (m - 1) * a_rs + (k - 1) * a_cs < a.len();
    if !available() || !a_ok || b.len() < k * n || c.len() < m * n {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AVX2 and FMA were detected above; all indices were bounds-checked
        // against the slice lengths for the given shapes and strides.
        unsafe { gemm_avx2(c, a, a_rs, a_cs, b, m, n, k, acc) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = acc;
        false
    }
}

/// The AVX2/FMA body of [`gemm`]: walks C in 4 x 16 blocks and hands each to [`block`].
///
/// # Safety
/// 1. The CPU supports AVX2 and FMA.
/// 2. `c.len() >= m * n` and `b.len() >= k * n`.
/// 3. If `m > 0` and `k > 0`: `(m - 1) * a_rs + (k - 1) * a_cs < a.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2(
    c: &mut [f32],
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    acc: bool,
) {
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(4);
        let mut j = 0;
        while j < n {
            let cols = (n - j).min(16);
            // SAFETY: (1) is ours; `1 <= rows <= 4` with `i + rows <= m` and
            // `1 <= cols <= 16` with `j + cols <= n`, so the block's rows and columns lie
            // inside the m x n product whose extents in `a`, `b`, `c` (2)-(3) guarantee.
            unsafe {
                match rows {
                    4 => block::<4>(c, a, a_rs, a_cs, b, n, k, i, j, cols, acc),
                    3 => block::<3>(c, a, a_rs, a_cs, b, n, k, i, j, cols, acc),
                    2 => block::<2>(c, a, a_rs, a_cs, b, n, k, i, j, cols, acc),
                    _ => block::<1>(c, a, a_rs, a_cs, b, n, k, i, j, cols, acc),
                }
            }
            j += 16;
        }
        i += 4;
    }
}

/// Lane masks selecting the first `cols` of 16 columns, as two 8-lane halves.
///
/// # Safety
/// 1. The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn masks(cols: usize) -> (__m256i, __m256i) {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32), idx);
    let hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32 - 8), idx);
    (lo, hi)
}

/// One `R x cols` block of C at (i, j), cols <= 16.
///
/// # Safety
/// 1. The CPU supports AVX2 and FMA.
/// 2. `1 <= cols <= 16` and `j + cols <= n`.
/// 3. `c.len() >= (i + R) * n` and `b.len() >= k * n`.
/// 4. If `k > 0`: `(i + R - 1) * a_rs + (k - 1) * a_cs < a.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn block<const R: usize>(
    c: &mut [f32],
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    n: usize,
    k: usize,
    i: usize,
    j: usize,
    cols: usize,
    acc: bool,
) {
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let full = cols == 16;
    // SAFETY: AVX2 is enabled here (1).
    let (m0, m1) = unsafe { masks(cols) };
    let mut r0 = [_mm256_setzero_ps(); R];
    let mut r1 = [_mm256_setzero_ps(); R];
    if acc {
        // SAFETY: row `i + r` of C, columns `j..j + 16` when full, lies inside `c` (2)-(3);
        // otherwise the masks enable only columns `j..j + cols`, inside `c`, and
        // masked-off lanes are not accessed (`wrapping_add` keeps the address computation
        // of a wholly masked upper half defined).
        unsafe {
            for r in 0..R {
                let row = cp.add((i + r) * n + j);
                if full {
                    r0[r] = _mm256_loadu_ps(row);
                    r1[r] = _mm256_loadu_ps(row.add(8));
                } else {
                    r0[r] = _mm256_maskload_ps(row, m0);
                    r1[r] = _mm256_maskload_ps(row.wrapping_add(8), m1);
                }
            }
        }
    }
    // SAFETY: row `p < k` of B, columns `j..j + 16` when full (or the masked
    // `j..j + cols`), lies inside `b` (2)-(3); A element `(i + r, p)` with `r < R`,
    // `p < k` lies inside `a` (4). Masked-off lanes are not accessed.
    unsafe {
        for p in 0..k {
            let brow = bp.add(p * n + j);
            let (b0, b1) = if full {
                (_mm256_loadu_ps(brow), _mm256_loadu_ps(brow.add(8)))
            } else {
                (
                    _mm256_maskload_ps(brow, m0),
                    _mm256_maskload_ps(brow.wrapping_add(8), m1),
                )
            };
            for r in 0..R {
                let av = _mm256_set1_ps(*ap.add((i + r) * a_rs + p * a_cs));
                r0[r] = _mm256_fmadd_ps(av, b0, r0[r]);
                r1[r] = _mm256_fmadd_ps(av, b1, r1[r]);
            }
        }
    }
    // SAFETY: as for the loads from C above; `c` is borrowed mutably, so nothing else
    // reads or writes it meanwhile.
    unsafe {
        for r in 0..R {
            let row = cp.add((i + r) * n + j);
            if full {
                _mm256_storeu_ps(row, r0[r]);
                _mm256_storeu_ps(row.add(8), r1[r]);
            } else {
                _mm256_maskstore_ps(row, m0, r0[r]);
                _mm256_maskstore_ps(row.wrapping_add(8), m1, r1[r]);
            }
        }
    }
}

/// `C[m x n] (+)= A[m x k] B^T` with B stored `[n, k]` (a Linear weight): row-by-row dot
/// products, A row i at `a[i * a_rs..]` contiguous. Returns false (doing nothing) when the
/// CPU lacks AVX2/FMA or the slices are too short for the shapes.
pub(super) fn gemm_bt(
    c: &mut [f32],
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    acc: bool,
) -> bool {
    if m == 0 || n == 0 || k == 0 {
        return false;
    }
    if !available() || (m - 1) * a_rs + k > a.len() || b.len() < n * k || c.len() < m * n {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AVX2 and FMA were detected above; rows read are inside the slices.
        unsafe { dots_avx2(c, a, a_rs, b, m, n, k, acc) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = acc;
        false
    }
}

/// The AVX2/FMA body of [`gemm_bt`]: C in blocks of up to 3 rows (of A) x 4 columns (rows
/// of B), up to twelve 8-lane dot products kept in registers while the shared dimension is
/// walked once (each A load serves four columns, each B load up to three rows); each row's
/// four dot products are then summed across lanes together (three horizontal adds for
/// four sums, where summing one at a time costs six instructions each: for a short shared
/// dimension, such as a batch-2 `Linear(20, 256)`, the sums are most of the work). The
/// last `n % 4` columns go one at a time.
///
/// # Safety
/// 1. The CPU supports AVX2 and FMA.
/// 2. If `m > 0`: `(m - 1) * a_rs + k <= a.len()`.
/// 3. `b.len() >= n * k` and `c.len() >= m * n`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_avx2(
    c: &mut [f32],
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    acc: bool,
) {
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(3);
        let mut j = 0;
        while j < n {
            let cols = if n - j >= 4 { 4 } else { 1 };
            // SAFETY: (1)-(3) are ours; the block's `rows` rows of A start at row `i` with
            // `i + rows <= m`, and its `cols` rows of B at row `j` with `j + cols <= n`.
            unsafe {
                match (rows, cols) {
                    (3, 4) => dot_block::<3, 4>(c, a, a_rs, b, n, k, i, j, acc),
                    (2, 4) => dot_block::<2, 4>(c, a, a_rs, b, n, k, i, j, acc),
                    (1, 4) => dot_block::<1, 4>(c, a, a_rs, b, n, k, i, j, acc),
                    (3, _) => dot_block::<3, 1>(c, a, a_rs, b, n, k, i, j, acc),
                    (2, _) => dot_block::<2, 1>(c, a, a_rs, b, n, k, i, j, acc),
                    _ => dot_block::<1, 1>(c, a, a_rs, b, n, k, i, j, acc),
                }
            }
            j += cols;
        }
        i += rows;
    }
}

/// The `R x S` block of C at (i, j) of [`dots_avx2`]: `R` rows of A against `S` rows of B.
///
/// # Safety
/// 1. The CPU supports AVX2 and FMA.
/// 2. `i + R <= m`, `j + S <= n`, with `(m - 1) * a_rs + k <= a.len()`,
///    `b.len() >= n * k` and `c.len() >= m * n`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_block<const R: usize, const S: usize>(
    c: &mut [f32],
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    n: usize,
    k: usize,
    i: usize,
    j: usize,
    acc: bool,
) {
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let tail = k % 8;
    let body = k - tail;
    // SAFETY: AVX2 is enabled here (1).
    let (tmask, _) = unsafe { masks(tail) };
    let mut s = [[_mm256_setzero_ps(); S]; R];
    // SAFETY: A row `i + r < m` is `a[(i + r) * a_rs..][..k]` and B row `j + t < n` is
    // `b[(j + t) * k..][..k]`, inside the slices (2). Full loads read lanes `p..p + 8`
    // with `p + 8 <= body <= k`; the tail mask enables lanes `body..k` only, and
    // masked-off lanes are not accessed.
    unsafe {
        let mut p = 0;
        // R A vectors, then one B vector at a time: R * S + R + 1 registers (at most 16)
        while p < body {
            let mut av = [_mm256_setzero_ps(); R];
            for (r, v) in av.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(ap.add((i + r) * a_rs + p));
            }
            for t in 0..S {
                let bv = _mm256_loadu_ps(bp.add((j + t) * k + p));
                for (row, av) in s.iter_mut().zip(av) {
                    row[t] = _mm256_fmadd_ps(av, bv, row[t]);
                }
            }
            p += 8;
        }
        if tail > 0 {
            let mut av = [_mm256_setzero_ps(); R];
            for (r, v) in av.iter_mut().enumerate() {
                *v = _mm256_maskload_ps(ap.add((i + r) * a_rs + body), tmask);
            }
            for t in 0..S {
                let bv = _mm256_maskload_ps(bp.add((j + t) * k + body), tmask);
                for (row, av) in s.iter_mut().zip(av) {
                    row[t] = _mm256_fmadd_ps(av, bv, row[t]);
                }
            }
        }
    }
    for (r, row) in s.iter().enumerate() {
        if let &[v0, v1, v2, v3] = &row[..] {
            // SAFETY: AVX is enabled here (1); the four sums go to `c[(i + r) * n + j..][..4]`
            // with `j + 4 <= n`, inside `c` (2), borrowed mutably.
            unsafe {
                let sums = hsum4(v0, v1, v2, v3);
                let dst = cp.add((i + r) * n + j);
                let v = if acc {
                    _mm_add_ps(_mm_loadu_ps(dst), sums)
                } else {
                    sums
                };
                _mm_storeu_ps(dst, v);
            }
            continue;
        }
        for (t, v) in row.iter().enumerate() {
            // SAFETY: AVX is enabled here (1).
            let sum = unsafe { hsum(*v) };
            // SAFETY: `(i + r) * n + j + t < m * n <= c.len()` (2), and `c` is borrowed
            // mutably, so nothing else accesses it meanwhile.
            unsafe {
                let dst = cp.add((i + r) * n + j + t);
                *dst = if acc { *dst + sum } else { sum };
            }
        }
    }
}

/// The lane sums of four vectors, `[sum(a), sum(b), sum(c), sum(d)]`.
///
/// # Safety
/// 1. The CPU supports AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum4(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
    // per 128-bit half: [a01, a23, b01, b23], [c01, c23, d01, d23], then [a, b, c, d]
    let ab = _mm256_hadd_ps(a, b);
    let cd = _mm256_hadd_ps(c, d);
    let abcd = _mm256_hadd_ps(ab, cd);
    _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1))
}

/// The sum of the 8 lanes of `v`.
///
/// # Safety
/// 1. The CPU supports AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    _mm_cvtss_f32(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `C (+)= A op(B)` the slow way, in f64.
    fn naive(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize), bt: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let bv = if bt { b[j * k + p] } else { b[p * n + j] };
                    s += a[i * k + p] as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn kernels_match_the_naive_product_on_every_edge_shape() {
        if !available() {
            return;
        }
        let val = |x: usize| ((x * 7919) % 23) as f32 / 11.0 - 1.0;
        for m in 1..=9 {
            for n in [1, 2, 3, 7, 8, 15, 16, 17, 33] {
                for k in [1, 3, 7, 8, 9, 16, 17, 31, 64] {
                    let a: Vec<f32> = (0..m * k).map(val).collect();
                    let b: Vec<f32> = (0..k * n).map(|x| val(x + 5)).collect();
                    for bt in [false, true] {
                        let want = naive(&a, &b, (m, n, k), bt);
                        for acc in [false, true] {
                            let mut c = vec![if acc { 1.0 } else { f32::NAN }; m * n];
                            let done = if bt {
                                gemm_bt(&mut c, &a, k, &b, (m, n, k), acc)
                            } else {
                                gemm(&mut c, &a, k, 1, &b, (m, n, k), acc)
                            };
                            assert!(done, "kernel refused {m}x{n}x{k}");
                            for (x, (g, w)) in c.iter().zip(&want).enumerate() {
                                let w = if acc { w + 1.0 } else { *w };
                                assert!(
                                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                                    "{m}x{n}x{k} bt={bt} acc={acc} element {x}: {g} vs {w}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
