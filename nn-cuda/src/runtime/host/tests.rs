//! The host runtime's own checks: what it must refuse (out-of-bounds accesses, argument
//! lists that do not match the kernel, launches a GPU would reject) and its GEMM.

use super::*;
use crate::kernels::copy::MODULE as COPY;
use crate::layout::Layout3;
use crate::runtime::Runtime;

fn rt() -> Runtime {
    Runtime::Host(HostRt::new(false))
}

fn launch(n: usize, threads: u32) -> Launch {
    Launch {
        grid: (n.div_ceil(threads as usize) as u32, 1, 1),
        block: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[test]
fn an_out_of_bounds_read_names_the_kernel_and_the_parameter() -> Result<()> {
    let rt = rt();
    let x = rt.htod(&[1.0f32, 2.0, 3.0, 4.0])?;
    let mut y = rt.alloc::<f32>(4, true)?;
    // stride 2 in the source: element 2 reads x[4], one past the end
    let l = Layout3::from_strides("test", &[4], &[&[2], &[1]])?;
    let mut args = [
        Arg::U64(4),
        Arg::Layout3(&l),
        Arg::F32s(&x, 0),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match nn_copy_f32; the out-of-bounds read is the point, and
    // the host runtime checks it.
    let e = unsafe { rt.launch(&COPY, "nn_copy_f32", launch(4, 256), &mut args) }
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("nn_copy_f32") && e.contains("`x`") && e.contains("index 4 of 4"),
        "{e}"
    );
    // an offset argument shortens the buffer the kernel sees
    let l = Layout3::from_strides("test", &[4], &[&[1], &[1]])?;
    let mut args = [
        Arg::U64(4),
        Arg::Layout3(&l),
        Arg::F32s(&x, 1),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: as above.
    let e = unsafe { rt.launch(&COPY, "nn_copy_f32", launch(4, 256), &mut args) }
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("index 3 of 3"), "{e}");
    Ok(())
}

#[test]
fn argument_lists_must_match_the_kernel() -> Result<()> {
    let rt = rt();
    let x = rt.htod(&[1.0f32; 4])?;
    let mut y = rt.alloc::<i64>(4, true)?;
    let l = Layout3::from_strides("test", &[4], &[&[1], &[1]])?;
    let mut swapped = [
        Arg::Layout3(&l),
        Arg::U64(4),
        Arg::F32s(&x, 0),
        Arg::I64sMut(&mut y, 0),
    ];
    // SAFETY: the runtime refuses the list before running anything.
    let e = unsafe { rt.launch(&COPY, "nn_copy_f32", launch(4, 256), &mut swapped) }
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("argument 0 is Layout3"), "{e}");
    let mut wrong_dtype = [
        Arg::U64(4),
        Arg::Layout3(&l),
        Arg::F32s(&x, 0),
        Arg::I64sMut(&mut y, 0),
    ];
    // SAFETY: as above.
    let e = unsafe { rt.launch(&COPY, "nn_copy_f32", launch(4, 256), &mut wrong_dtype) }
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("argument 3 is I64Ptr"), "{e}");
    let mut short = [Arg::U64(4)];
    // SAFETY: as above.
    let e = unsafe { rt.launch(&COPY, "nn_copy_f32", launch(4, 256), &mut short) }
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("1 arguments for 4 parameters"), "{e}");
    Ok(())
}

#[test]
fn launches_a_gpu_rejects_are_errors() -> Result<()> {
    let rt = rt();
    let x = rt.htod(&[1.0f32; 4])?;
    let mut y = rt.alloc::<f32>(4, true)?;
    let l = Layout3::from_strides("test", &[4], &[&[1], &[1]])?;
    for (dims, want) in [
        (launch(4, 2048), "1024 threads"),
        (launch(0, 256), "empty grid"),
    ] {
        let mut args = [
            Arg::U64(4),
            Arg::Layout3(&l),
            Arg::F32s(&x, 0),
            Arg::F32sMut(&mut y, 0),
        ];
        // SAFETY: the runtime refuses the launch before running anything.
        let e = unsafe { rt.launch(&COPY, "nn_copy_f32", dims, &mut args) }
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(want), "{e}");
    }
    Ok(())
}

#[test]
fn unwritten_device_memory_is_poisoned() -> Result<()> {
    let rt = rt();
    let y = rt.alloc::<f32>(3, false)?;
    assert!(rt.dtoh(&y, 3)?.iter().all(|v| v.is_nan()));
    let z = rt.alloc::<i64>(2, true)?;
    assert_eq!(rt.dtoh(&z, 2)?, vec![0, 0]);
    Ok(())
}

/// cuBLAS semantics: column-major storage, `op` per transpose flag, leading dimensions
/// larger than the rows (padding skipped), strided batches.
#[test]
fn sgemm_follows_cublas_semantics() -> Result<()> {
    let (m, n, k) = (2usize, 3usize, 4usize);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        // A stored (rows_a x cols_a) column-major with lda = rows_a + 1 (one pad row)
        let (ra, ca) = if ta { (k, m) } else { (m, k) };
        let (rb, cb) = if tb { (n, k) } else { (k, n) };
        let (lda, ldb, ldc) = (ra + 1, rb + 1, m + 1);
        let batch = 2usize;
        let (sa, sb, sc) = (lda * ca, ldb * cb, ldc * n);
        let a: Vec<f32> = (0..sa * batch).map(|v| (v as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..sb * batch).map(|v| (v as f32 * 0.11).cos()).collect();
        let mut c = vec![f32::NAN; sc * batch];
        let g = Gemm {
            transa: ta,
            transb: tb,
            m: m as i32,
            n: n as i32,
            k: k as i32,
            lda: lda as i32,
            ldb: ldb as i32,
            ldc: ldc as i32,
            batch: batch as i32,
            stride_a: sa as i64,
            stride_b: sb as i64,
            stride_c: sc as i64,
            accumulate: false,
        };
        sgemm(g, (&a, 0), (&b, 0), (&mut c, 0))?;
        for t in 0..batch {
            let opa = |i: usize, p: usize| {
                let (r, col) = if ta { (p, i) } else { (i, p) };
                a[t * sa + r + col * lda]
            };
            let opb = |p: usize, j: usize| {
                let (r, col) = if tb { (j, p) } else { (p, j) };
                b[t * sb + r + col * ldb]
            };
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| opa(i, p) * opb(p, j)).sum();
                    let got = c[t * sc + i + j * ldc];
                    assert!(
                        (got - want).abs() < 1e-5,
                        "t=({ta},{tb}) batch {t} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
    // a leading dimension cuBLAS rejects, and a read past the end
    let g = Gemm {
        transa: false,
        transb: false,
        m: 2,
        n: 2,
        k: 2,
        lda: 1,
        ldb: 2,
        ldc: 2,
        batch: 1,
        stride_a: 0,
        stride_b: 0,
        stride_c: 0,
        accumulate: false,
    };
    let mut c = [0.0f32; 4];
    assert!(sgemm(g, (&[0.0; 4], 0), (&[0.0; 4], 0), (&mut c, 0)).is_err());
    let g = Gemm { lda: 2, ..g };
    let e = sgemm(g, (&[0.0; 3], 0), (&[0.0; 4], 0), (&mut c, 0))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("A read out of bounds"), "{e}");
    Ok(())
}

/// Offsets and strides near the top of their range are errors, never overflows
/// (issue 29: unchecked size arithmetic on the host side).
#[test]
fn offsets_near_the_top_of_their_range_are_errors() -> Result<()> {
    let rt = rt();
    let mut y = rt.alloc::<f32>(4, true)?;
    assert!(rt.write(&mut y, usize::MAX, &[1.0f32, 2.0]).is_err());
    assert!(rt.write(&mut y, 3, &[1.0f32, 2.0]).is_err());
    rt.write(&mut y, 2, &[1.0f32, 2.0])?;
    let g = Gemm {
        transa: false,
        transb: false,
        m: 1,
        n: 1,
        k: 1,
        lda: 1,
        ldb: 1,
        ldc: 1,
        batch: 3,
        stride_a: i64::MAX,
        stride_b: 1,
        stride_c: 1,
        accumulate: false,
    };
    let mut c = [0.0f32; 3];
    let (a, b) = ([1.0f32; 3], [1.0f32; 3]);
    assert!(sgemm(g, (&a, 0), (&b, 0), (&mut c, 0)).is_err());
    let g = Gemm {
        stride_a: i64::MAX / 2 + 1,
        ..g
    };
    assert!(sgemm(g, (&a, 0), (&b, 0), (&mut c, 0)).is_err());
    // a base offset near usize::MAX
    let g = Gemm { batch: 1, ..g };
    assert!(sgemm(g, (&a, usize::MAX), (&b, 0), (&mut c, 0)).is_err());
    assert!(sgemm(g, (&a, 0), (&b, 0), (&mut c, usize::MAX)).is_err());
    Ok(())
}

/// The probe kernels of `host/probe.cu`, for these tests.
static PROBE: KernelModule = KernelModule {
    name: "probe",
    src: include_str!("probe.cu"),
    kernels: &["nn_probe_reverse", "nn_probe_divergent", "nn_probe_race"],
};

/// `__syncthreads` is a real barrier: every thread's shared-memory write is seen by
/// every other thread after it.
#[test]
fn barriers_order_the_threads_of_a_block() -> Result<()> {
    let rt = rt();
    let xs: Vec<f32> = (0..200).map(|v| v as f32).collect();
    let x = rt.htod(&xs)?;
    let mut y = rt.alloc::<f32>(200, false)?;
    let mut args = [Arg::U64(200), Arg::F32s(&x, 0), Arg::F32sMut(&mut y, 0)];
    // SAFETY: the arguments match nn_probe_reverse; one block of 256 threads covers the
    // 200 elements.
    unsafe { rt.launch(&PROBE, "nn_probe_reverse", launch(256, 256), &mut args) }?;
    let want: Vec<f32> = xs.iter().rev().map(|v| v * 2.0).collect();
    assert_eq!(rt.dtoh(&y, 200)?, want);
    Ok(())
}

/// A barrier only some threads of a block reach is reported, not run through.
#[test]
fn a_divergent_barrier_is_an_error() -> Result<()> {
    let rt = rt();
    let mut y = rt.alloc::<f32>(32, true)?;
    let mut args = [Arg::F32sMut(&mut y, 0)];
    // SAFETY: the arguments match nn_probe_divergent; 32 threads write 32 elements.
    let e = unsafe { rt.launch(&PROBE, "nn_probe_divergent", launch(32, 32), &mut args) }
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("nn_probe_divergent") && e.contains("__syncthreads"),
        "{e}"
    );
    Ok(())
}

/// Two threads writing one element without an atomic is reported with both threads.
#[test]
fn a_write_race_is_an_error() -> Result<()> {
    let rt = rt();
    let mut y = rt.alloc::<f32>(1, true)?;
    let mut args = [Arg::F32sMut(&mut y, 0)];
    // SAFETY: the arguments match nn_probe_race; every thread writes element 0 of 1.
    let e = unsafe { rt.launch(&PROBE, "nn_probe_race", launch(8, 8), &mut args) }
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("threads 0 and 1 both write element 0 of `y`"),
        "{e}"
    );
    Ok(())
}
