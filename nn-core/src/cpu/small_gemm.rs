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

/// The AVX2/FMA body of [`gemm_bt`]: one 8-lane dot product per element of C.
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
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let tail = k % 8;
    // SAFETY: AVX2 is enabled here (1).
    let (tmask, _) = unsafe { masks(tail) };
    let body = k - tail;
    // SAFETY: A row `i < m` is `a[i * a_rs..i * a_rs + k]`, inside `a` (2); B row `j < n`
    // is `b[j * k..(j + 1) * k]`, inside `b` (3). Full loads read lanes `p..p + 8` with
    // `p + 8 <= body <= k`; the tail mask enables lanes `body..k` only, and masked-off
    // lanes are not accessed. `i * n + j < m * n <= c.len()` (3), and `c` is borrowed
    // mutably, so nothing else accesses it meanwhile.
    unsafe {
        for j in 0..n {
            let brow = bp.add(j * k);
            for i in 0..m {
                let arow = ap.add(i * a_rs);
                let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut p = 0;
                while p + 16 <= body {
                    s0 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(arow.add(p)),
                        _mm256_loadu_ps(brow.add(p)),
                        s0,
                    );
                    s1 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(arow.add(p + 8)),
                        _mm256_loadu_ps(brow.add(p + 8)),
                        s1,
                    );
                    p += 16;
                }
                if p < body {
                    s0 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(arow.add(p)),
                        _mm256_loadu_ps(brow.add(p)),
                        s0,
                    );
                }
                if tail > 0 {
                    let x = _mm256_maskload_ps(arow.add(body), tmask);
                    let y = _mm256_maskload_ps(brow.add(body), tmask);
                    s1 = _mm256_fmadd_ps(x, y, s1);
                }
                let s = _mm256_add_ps(s0, s1);
                let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
                let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
                let v = _mm_cvtss_f32(h);
                let dst = cp.add(i * n + j);
                *dst = if acc { *dst + v } else { v };
            }
        }
    }
}
