//! GFLOP/s of the Linear products of W7 / W7i (x `[1024, 256]` against weights `[768, 256]`,
//! `[256, 256]`, `[1024, 256]`, `[256, 1024]`) and of their backward products, beside the
//! 1024^3 product of W3 and the convolution products of W6, for `nn`'s `linear` / `matmul` and for the two kernels under them
//! (`matrixmultiply`, `gemm`) called directly with the same strides.
//!
//! Run: `cargo bench --bench bench_gemm_shapes`, with `RAYON_NUM_THREADS=1` for one core.

use nn::{Result, Tensor};
use std::time::Instant;

/// GFLOP/s of the fastest single call of `f` among those of 0.4 s (at least 20 calls)
/// after a short warm-up: on a loaded machine the fastest call is the one least disturbed.
fn gflops(flop: f64, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let t0 = Instant::now();
    let mut best = f64::MAX;
    let mut calls = 0;
    while calls < 20 || t0.elapsed().as_secs_f64() < 0.4 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        calls += 1;
    }
    flop / best / 1e9
}

/// `m x k` (strides `a`) times `k x n` (strides `b`) into row-major `m x n` via matrixmultiply.
fn mm(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    sa: (isize, isize),
    sb: (isize, isize),
) {
    // SAFETY: the strides address m x k and k x n elements inside the slices (built to fit).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            sa.0,
            sa.1,
            b.as_ptr(),
            sb.0,
            sb.1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The same product via `gemm` (C^T = B^T A^T, as nn-core calls it).
fn gm(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    sa: (isize, isize),
    sb: (isize, isize),
    par: gemm_common::Parallelism,
) {
    // SAFETY: as in `mm`.
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            n,
            m,
            k,
            c.as_mut_ptr(),
            n as isize,
            1,
            false,
            b.as_ptr(),
            sb.0,
            sb.1,
            a.as_ptr(),
            sa.0,
            sa.1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn main() -> Result<()> {
    let threads = rayon::current_num_threads();
    // (label, m, n, k, lhs_t, rhs_t)
    let shapes: [(&str, usize, usize, usize, bool, bool); 27] = [
        ("W3 1024^3", 1024, 1024, 1024, false, false),
        ("fwd qkv x@W^T [768,256]", 1024, 768, 256, false, true),
        ("fwd out x@W^T [256,256]", 1024, 256, 256, false, true),
        ("fwd ff1 x@W^T [1024,256]", 1024, 1024, 256, false, true),
        ("fwd ff2 h@W^T [256,1024]", 1024, 256, 1024, false, true),
        ("dX qkv G@W", 1024, 256, 768, false, false),
        ("dX ff1 G@W", 1024, 256, 1024, false, false),
        ("dX ff2 G@W", 1024, 1024, 256, false, false),
        ("dW qkv G^T@X", 768, 256, 1024, true, false),
        ("dW ff1 G^T@X", 1024, 256, 1024, true, false),
        ("dW ff2 G^T@X", 256, 1024, 1024, true, false),
        // W6's convolutions (ResNet-18, batch 8 of 64x64): the per-sample forward
        // W [o, taps] @ cols [taps, l], its dW += dy [o, l] @ cols^T and dcols = W^T @ dy,
        // and the batch-in-columns forward of the late layers (n = 8 * l)
        ("conv stem W@cols", 64, 1024, 147, false, false),
        ("conv l1 W@cols", 64, 256, 576, false, false),
        ("conv l2 W@cols", 128, 64, 1152, false, false),
        ("conv l3 W@cols (batch)", 256, 128, 2304, false, false),
        ("conv l4 W@cols (batch)", 512, 32, 4608, false, false),
        ("conv stem dW dy@cols^T", 64, 147, 1024, false, true),
        ("conv l1 dW dy@cols^T", 64, 576, 256, false, true),
        ("conv l2 dW dy@cols^T", 128, 1152, 64, false, true),
        ("conv l1 dcols W^T@dy", 576, 256, 64, true, false),
        ("conv l2 dcols W^T@dy", 1152, 64, 128, true, false),
        // W2 / W8 (784-1024-1024-10 MLP): batch 128 (one process) and 64 (a rank of two)
        ("W2 fwd l1 x@W^T b128", 128, 1024, 784, false, true),
        ("W2 fwd l1 x@W^T b64", 64, 1024, 784, false, true),
        ("W2 fwd l2 x@W^T b64", 64, 1024, 1024, false, true),
        ("W2 dX l2 G@W b64", 64, 1024, 1024, false, false),
        ("W2 dW l1 G^T@X b64", 1024, 784, 64, true, false),
        ("W2 dW l2 G^T@X b64", 1024, 1024, 64, true, false),
    ];
    println!("threads {threads}; GFLOP/s (fastest call)");
    println!(
        "{:<26} {:>8} {:>8} {:>8} {:>8}",
        "product", "nn", "mm", "gemm1", "gemmR"
    );
    for (label, m, n, k, lt, rt) in shapes {
        let a = Tensor::randn(&[m * k]).to_vec::<f32>()?;
        let b = Tensor::randn(&[k * n]).to_vec::<f32>()?;
        let mut c = vec![0f32; m * n];
        let sa = if lt { (1, m as isize) } else { (k as isize, 1) };
        let sb = if rt { (1, k as isize) } else { (n as isize, 1) };
        let flop = 2.0 * (m * n * k) as f64;
        // nn: the forward products through `linear` with a bias (as the layer calls them),
        // the others through `matmul` on plain operands (same strides when not transposed)
        let ours = if rt {
            let x = Tensor::from_vec(a.clone(), &[m, k])?;
            let w = Tensor::from_vec(b.clone(), &[n, k])?;
            let bias = Tensor::randn(&[n]);
            nn::no_grad(|| gflops(flop, || drop(x.linear(&w, Some(&bias)))))
        } else if !lt {
            let x = Tensor::from_vec(a.clone(), &[m, k])?;
            let w = Tensor::from_vec(b.clone(), &[k, n])?;
            nn::no_grad(|| gflops(flop, || drop(x.matmul(&w))))
        } else {
            f64::NAN
        };
        let g_mm = gflops(flop, || mm(&mut c, &a, &b, (m, n, k), sa, sb));
        let g_1 = gflops(flop, || {
            gm(
                &mut c,
                &a,
                &b,
                (m, n, k),
                sa,
                sb,
                gemm_common::Parallelism::None,
            )
        });
        let g_r = gflops(flop, || {
            gm(
                &mut c,
                &a,
                &b,
                (m, n, k),
                sa,
                sb,
                gemm_common::Parallelism::Rayon(0),
            )
        });
        println!("{label:<26} {ours:>8.1} {g_mm:>8.1} {g_1:>8.1} {g_r:>8.1}");
    }
    Ok(())
}
