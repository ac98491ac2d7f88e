//! The tile kernel of the direct convolution: `acc[k][r] = sum_{ic, (t, off) in taps}
//! panel[ic, t, r] * src[tile.src[k] + ic * plane + off]`, for the [`OB`] rows of a
//! packed block and the `tile.len` columns of a tile. An AVX-512 body where the CPU has
//! it (the 16 accumulators of a full tile in registers), a portable one elsewhere (the
//! tests' reference on every machine).

use super::{Plan, Tile, NC, OB};

/// Fills `acc[..tile.len]` for one tile (see the module docs). The tile's reads were
/// checked inside `src` when the tiles were made (`super::tiles`), and `panel` holds
/// `cin * kh * kw * OB` elements (`super::pack`).
pub(super) fn tile(
    panel: &[f32],
    p: &Plan,
    taps: &[(usize, isize)],
    src: &[f32],
    tile: &Tile,
    acc: &mut [[f32; OB]; NC],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::kernel_available() && !portable_only() && panel.len() >= p.cin * p.taps() * OB {
            // SAFETY: AVX-512F was detected; the panel holds `cin * taps * OB` elements
            // (checked just above) and every tap index is below `taps`; each source read
            // `tile.src[k] + ic * plane + off` lies inside `src` (checked by `tiles`).
            unsafe {
                match tile.len {
                    8 => avx512::<8>(panel, p, taps, src, tile, acc),
                    7 => avx512::<7>(panel, p, taps, src, tile, acc),
                    6 => avx512::<6>(panel, p, taps, src, tile, acc),
                    5 => avx512::<5>(panel, p, taps, src, tile, acc),
                    4 => avx512::<4>(panel, p, taps, src, tile, acc),
                    3 => avx512::<3>(panel, p, taps, src, tile, acc),
                    2 => avx512::<2>(panel, p, taps, src, tile, acc),
                    _ => avx512::<1>(panel, p, taps, src, tile, acc),
                }
            }
            return;
        }
    }
    portable(panel, p, taps, src, tile, acc)
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
    p: &Plan,
    taps: &[(usize, isize)],
    src: &[f32],
    tile: &Tile,
    acc: &mut [[f32; OB]; NC],
) {
    let (plane, nt) = (p.input[0] * p.input[1], p.taps());
    for (k, a) in acc[..tile.len].iter_mut().enumerate() {
        *a = [0.0; OB];
        for ic in 0..p.cin {
            for &(t, off) in taps {
                let at = tile.src[k] + (ic * plane) as isize + off;
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
/// AVX-512F is available; `panel` holds `p.cin * p.taps() * OB` elements and every tap
/// index in `taps` is below `p.taps()`; for every column `k < N`, input channel `ic` and
/// tap offset `off`, `tile.src[k] + ic * plane + off` indexes inside `src`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<const N: usize>(
    panel: &[f32],
    p: &Plan,
    taps: &[(usize, isize)],
    src: &[f32],
    tile: &Tile,
    acc: &mut [[f32; OB]; NC],
) {
    use std::arch::x86_64::*;
    // SAFETY: the contract above covers every pointer read and the AVX-512
    // instructions; the stores write acc[k], 32 elements, for k < N <= NC.
    unsafe {
        let plane = (p.input[0] * p.input[1]) as isize;
        let nt = p.taps();
        let (wp, sp) = (panel.as_ptr(), src.as_ptr());
        let mut lo = [_mm512_setzero_ps(); N];
        let mut hi = [_mm512_setzero_ps(); N];
        let mut base = [0isize; N];
        base.copy_from_slice(&tile.src[..N]);
        for ic in 0..p.cin {
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
