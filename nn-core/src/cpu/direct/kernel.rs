//! The tile kernel of the direct convolution: `acc[k][r] = sum_{ic, (t, off) in taps}
//! panel[ic, t, r] * src[tile.src[k] + ic * plane + off]`, for the [`OB`] rows of a
//! packed block and the `tile.len` columns of a tile. An AVX-512 body where the CPU has
//! it (the 16 accumulators of a full tile in registers), a portable one elsewhere (the
//! tests' reference on every machine).

use super::{Tile, NC, OB};

/// The reduction a tile walks: `outer` steps (input channels for the forward, samples
/// for the weight gradient), each over `rows` panel rows of [`OB`] (the `taps`' panel
/// index is below it) and `step` source elements further on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Walk {
    pub outer: usize,
    pub rows: usize,
    pub step: isize,
}

/// Fills `acc[..tile.len]` for one tile: `acc[k][r] = sum_{i < outer, (t, off) in taps}
/// panel[(i * rows + t) * OB + r] * src[tile.src[k] + i * step + off]`. The tile's reads
/// were checked inside `src` when the tiles were made (`super::tiles`,
/// `super::grad_tiles`); the panel's length and the tap indices are checked here.
pub(super) fn tile(
    panel: &[f32],
    walk: &Walk,
    taps: &[(usize, isize)],
    src: &[f32],
    tile: &Tile,
    acc: &mut [[f32; OB]; NC],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let fits =
            panel.len() >= walk.outer * walk.rows * OB && taps.iter().all(|&(t, _)| t < walk.rows);
        if super::kernel_available() && !portable_only() && fits {
            // SAFETY: AVX-512F was detected; the panel holds `outer * rows * OB` elements
            // and every tap index is below `rows` (checked just above); each source read
            // `tile.src[k] + i * step + off` lies inside `src` (checked with the tiles).
            unsafe {
                match tile.len {
                    8 => avx512::<8>(panel, walk, taps, src, tile, acc),
                    7 => avx512::<7>(panel, walk, taps, src, tile, acc),
                    6 => avx512::<6>(panel, walk, taps, src, tile, acc),
                    5 => avx512::<5>(panel, walk, taps, src, tile, acc),
                    4 => avx512::<4>(panel, walk, taps, src, tile, acc),
                    3 => avx512::<3>(panel, walk, taps, src, tile, acc),
                    2 => avx512::<2>(panel, walk, taps, src, tile, acc),
                    _ => avx512::<1>(panel, walk, taps, src, tile, acc),
                }
            }
            return;
        }
    }
    portable(panel, walk, taps, src, tile, acc)
}

#[cfg(test)]
thread_local! {
    /// Tests: the portable body runs even where AVX-512 is available, on this thread.
    static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test asked for the portable body on this thread (`false` outside tests).
#[cfg(test)]
fn portable_only() -> bool {
    PORTABLE.with(|f| f.get())
}
#[cfg(not(test))]
fn portable_only() -> bool {
    false
}

/// Tests: the portable body (`on`) or the fastest available one, on this thread.
#[cfg(test)]
pub(super) fn set_portable(on: bool) {
    PORTABLE.with(|f| f.set(on));
}

/// The reference body: plain loops, indices checked.
pub(super) fn portable(
    panel: &[f32],
    walk: &Walk,
    taps: &[(usize, isize)],
    src: &[f32],
    tile: &Tile,
    acc: &mut [[f32; OB]; NC],
) {
    let nt = walk.rows;
    for (k, a) in acc[..tile.len].iter_mut().enumerate() {
        *a = [0.0; OB];
        for ic in 0..walk.outer {
            for &(t, off) in taps {
                let at = tile.src[k] + ic as isize * walk.step + off;
                let v = usize::try_from(at).ok().and_then(|i| src.get(i)).copied();
                let w = panel.get((ic * nt + t) * OB..(ic * nt + t + 1) * OB);
                if let (Some(v), Some(w)) = (v, w) {
                    for (x, wr) in a.iter_mut().zip(w) {
                        *x += wr * v;
                    }
                }
            }
        }
    }
}

/// The AVX-512 body for a tile of `N` columns.
///
/// # Safety
/// AVX-512F is available; `panel` holds `walk.outer * walk.rows * OB` elements and every
/// tap index in `taps` is below `walk.rows`; for every column `k < N`, outer step `i`
/// and tap offset `off`, `tile.src[k] + i * walk.step + off` indexes inside `src`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<const N: usize>(
    panel: &[f32],
    walk: &Walk,
    taps: &[(usize, isize)],
    src: &[f32],
    tile: &Tile,
    acc: &mut [[f32; OB]; NC],
) {
    use std::arch::x86_64::*;
    // SAFETY: the contract above covers every pointer read and the AVX-512
    // instructions; the stores write acc[k], 32 elements, for k < N <= NC.
    unsafe {
        let (plane, nt) = (walk.step, walk.rows);
        let (wp, sp) = (panel.as_ptr(), src.as_ptr());
        let mut lo = [_mm512_setzero_ps(); N];
        let mut hi = [_mm512_setzero_ps(); N];
        let mut base = [0isize; N];
        base.copy_from_slice(&tile.src[..N]);
        for ic in 0..walk.outer {
            let wc = wp.add(ic * nt * OB);
            let xc = ic as isize * plane;
            for &(t, off) in taps {
                let w = wc.add(t * OB);
                let (w0, w1) = (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16)));
                let at = xc + off;
                for k in 0..N {
                    let v = _mm512_set1_ps(*sp.offset(base[k] + at));
                    lo[k] = _mm512_fmadd_ps(w0, v, lo[k]);
                    hi[k] = _mm512_fmadd_ps(w1, v, hi[k]);
                }
            }
        }
        for k in 0..N {
            let a = acc[k].as_mut_ptr();
            _mm512_storeu_ps(a, lo[k]);
            _mm512_storeu_ps(a.add(16), hi[k]);
        }
    }
}

/// `dst[row(j) * dst_stride + i] = src[i * src_stride + j]` for `i < 16`, `j < cols`
/// (`cols <= 16`), `row(j)` being `j`, or `cols - 1 - j` when `rev`: a 16 x `cols`
/// block of the weight packing transposed in registers (four rounds of shuffles, one
/// vector store per output row instead of 16 scalar ones). Each source row is read 16
/// elements wide, so `src` must hold `15 * src_stride + 16` elements even where `cols`
/// is smaller. Returns false (doing nothing) without AVX-512 or when the block does
/// not fit the slices.
pub(super) fn transpose16(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    (cols, rev): (usize, bool),
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let ok = src_stride > 0
            && (1..=16).contains(&cols)
            && 15 * src_stride + 16 <= src.len()
            && dst_stride >= 16
            && (cols - 1) * dst_stride + 16 <= dst.len();
        if super::kernel_available() && ok {
            // SAFETY: AVX-512F was detected; the 16 source rows of 16 elements and the
            // `cols` destination rows of 16 lie inside the slices (checked just above).
            unsafe {
                transpose16_avx512(
                    src.as_ptr(),
                    src_stride,
                    dst.as_mut_ptr(),
                    dst_stride,
                    cols,
                    rev,
                )
            };
            return true;
        }
    }
    let _ = (src, src_stride, dst, dst_stride, cols, rev);
    false
}

/// The AVX-512 body of [`transpose16`].
///
/// # Safety
/// AVX-512F is available; `src` is valid for 16 rows of 16 elements at stride `ss`, and
/// `dst` for `cols <= 16` rows of 16 at stride `ds`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16_avx512(
    src: *const f32,
    ss: usize,
    dst: *mut f32,
    ds: usize,
    cols: usize,
    rev: bool,
) {
    use std::arch::x86_64::*;
    // SAFETY: the contract above covers every load and store.
    unsafe {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, v) in r.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(src.add(i * ss));
            // the forward's packing goes on along these rows: ask for 4 lines ahead
            // (a hint; the address is never dereferenced, so it may lie past `src`)
            _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(i * ss + 64).cast());
        }
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        for i in 0..4 {
            let b = 4 * i;
            r[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
            r[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
            r[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
            r[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
        }
        for h in 0..2 {
            let b = 8 * h;
            for i in 0..4 {
                t[b + i] = _mm512_shuffle_f32x4::<0x88>(r[b + i], r[b + 4 + i]);
                t[b + 4 + i] = _mm512_shuffle_f32x4::<0xDD>(r[b + i], r[b + 4 + i]);
            }
        }
        for i in 0..8 {
            r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
            r[8 + i] = _mm512_shuffle_f32x4::<0xDD>(t[i], t[8 + i]);
        }
        for (j, v) in r.iter().enumerate().take(cols) {
            let row = if rev { cols - 1 - j } else { j };
            _mm512_storeu_ps(dst.add(row * ds), *v);
        }
    }
}

/// Asks the CPU to bring `data` toward L1 (every 64-byte line of it), a hint with no
/// effect on results; nothing where the CPU has no AVX-512 path to feed.
pub(super) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::kernel_available() {
            for line in data.chunks(16) {
                // SAFETY: `_mm_prefetch` only hints the cache; the address is inside
                // `data` and is never dereferenced by the instruction's semantics.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        line.as_ptr().cast(),
                    )
                };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
