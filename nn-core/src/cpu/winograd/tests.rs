//! Winograd against the im2col path (forward and input gradient, many shapes, 1 and 2
//! threads), the dispatch, and the whole conv2d node by finite differences.

use super::super::conv;
use super::super::test_util::{close, entry_points_match, pool, values};
use super::{fits, force, forward, input_grad, takes};
use crate::backend::{Conv2dSpec, Im2ColSpec};
use crate::ops::testing::check_grad;
use crate::ops::Conv2dOptions;
use crate::Result;

/// A 3x3 stride-1 convolution of `[n, c, h, w]` into `o` channels.
fn spec(n: usize, c: usize, o: usize, [h, w]: [usize; 2], padding: [[usize; 2]; 2]) -> Conv2dSpec {
    let out = |d: usize, i: usize| (i + padding[d][0] + padding[d][1]).saturating_sub(2);
    Conv2dSpec {
        window: Im2ColSpec {
            batch: n,
            channels: c,
            input: [h, w],
            kernel: [3, 3],
            stride: [1, 1],
            padding,
            dilation: [1, 1],
            output: [out(0, h), out(1, w)],
            batch_inner: false,
            pad_value: 0.0,
        },
        out_channels: o,
        groups: 1,
    }
}

/// Batch, channels in and out, image, padding.
type Shape = (usize, usize, usize, [usize; 2], [[usize; 2]; 2]);

/// The shapes compared with im2col.
fn shapes() -> Vec<Shape> {
    let p1 = [[1, 1], [1, 1]];
    let p0 = [[0, 0], [0, 0]];
    let asym = [[2, 0], [1, 2]];
    let asym2 = [[0, 1], [2, 0]];
    let big = [[3, 1], [0, 4]];
    let mut v = Vec::new();
    for hw in [[1, 1], [2, 2], [3, 5], [7, 7], [16, 16]] {
        for (n, c, o) in [(1, 1, 1), (3, 3, 16), (8, 16, 3), (3, 16, 16)] {
            for pad in [p0, p1, asym, asym2] {
                if hw[0] + pad[0][0] + pad[0][1] >= 3 && hw[1] + pad[1][0] + pad[1][1] >= 3 {
                    v.push((n, c, o, hw, pad));
                }
            }
        }
    }
    v.extend([
        (8, 64, 64, [16, 16], p1),
        (8, 64, 64, [2, 2], p1),
        (1, 64, 16, [1, 1], p1),
        (3, 16, 64, [7, 7], asym),
        (2, 3, 5, [4, 6], big),
        (2, 64, 3, [3, 5], p1),
        (2, 5, 7, [37, 35], p1),
    ]);
    v
}

#[test]
fn forward_and_input_grad_match_im2col() -> Result<()> {
    for threads in [1, 2] {
        let pool = pool(threads)?;
        for (n, c, o, hw, pad) in shapes() {
            let s = spec(n, c, o, hw, pad);
            assert!(fits(&s), "{s:?}");
            let [oh, ow] = s.window.output;
            let x = values(n * c * hw[0] * hw[1], 1);
            let w = values(o * c * 9, 2);
            let b = values(o, 3);
            let dy = values(n * o * oh * ow, 4);
            conv::check_spec("test", &s, x.len(), w.len(), Some(b.len()))?;
            for bias in [None, Some(b.as_slice())] {
                let what = format!(
                    "{n} {c} {o} {hw:?} {pad:?} bias {} threads {threads}",
                    bias.is_some()
                );
                let got = pool.install(|| forward(&x, &w, bias, &s))?;
                let want = pool.install(|| conv::forward_im2col(&x, &w, bias, &s))?;
                close(&got, &want, 1e-4, &format!("forward {what}"));
            }
            let got = pool.install(|| input_grad(&w, &dy, &s))?;
            let (want, _, _) =
                pool.install(|| conv::backward_im2col(&x, &w, &dy, &s, [true, false, false]))?;
            let want = want.unwrap_or_default();
            close(
                &got,
                &want,
                1e-4,
                &format!("dx {n} {c} {o} {hw:?} {pad:?} threads {threads}"),
            );
        }
    }
    Ok(())
}

/// ResNet-18's 3x3 stride-1 layers go to Winograd, and `conv`'s entry points return
/// exactly its results there (with `dw`, `db` from the im2col path), while strided,
/// grouped, dilated and 1-3 channel layers stay on im2col.
#[test]
fn dispatch_takes_winograd_for_qualifying_layers() -> Result<()> {
    for (c, side) in [(64, 16), (128, 8)] {
        assert!(takes(&spec(8, c, c, [side, side], [[1, 1], [1, 1]])), "{c}");
    }
    // (17x17: larger than the direct path's small images)
    let s = spec(3, 64, 64, [17, 17], [[1, 1], [1, 1]]);
    assert!(takes(&s));
    // too few channels, or too few tiles (ResNet-18's last 3x3 layers at 2x2)
    assert!(!takes(&spec(8, 3, 64, [16, 16], [[1, 1], [1, 1]])));
    assert!(!takes(&spec(8, 32, 32, [16, 16], [[1, 1], [1, 1]])));
    assert!(!takes(&spec(8, 256, 256, [4, 4], [[1, 1], [1, 1]])));
    assert!(!takes(&spec(8, 512, 512, [2, 2], [[1, 1], [1, 1]])));
    assert!(fits(&spec(8, 512, 512, [2, 2], [[1, 1], [1, 1]])));
    // a layer whose transformed tiles would pass 64 MiB stays on im2col
    assert!(!takes(&spec(32, 64, 64, [224, 224], [[1, 1], [1, 1]])));
    assert!(takes(&spec(16, 64, 64, [56, 56], [[1, 1], [1, 1]])));
    let mut strided = s;
    strided.window.stride = [2, 2];
    strided.window.output = [9, 9];
    let mut grouped = s;
    grouped.groups = 2;
    let mut dilated = s;
    dilated.window.dilation = [2, 2];
    dilated.window.output = [15, 15];
    for other in [strided, grouped, dilated] {
        assert!(!fits(&other) && !takes(&other), "{other:?}");
    }

    entry_points_match(&s, forward, input_grad)?;
    let x = values(3 * 64 * 289, 1);
    let w = values(64 * 64 * 9, 2);
    let dy = values(3 * 64 * 289, 4);
    let (dx, dw, db) = conv::backward(&x, &w, &dy, &s, [true, false, false])?;
    assert!(dx.is_some() && dw.is_none() && db.is_none());
    Ok(())
}

/// The conv2d node on the Winograd path (forced for these small shapes), symmetric,
/// asymmetric and no padding, against finite differences of every input element (`dx`
/// from Winograd, `dw` and `db` from im2col).
#[test]
fn conv2d_node_grads_finite_difference() -> Result<()> {
    let d = Conv2dOptions::default();
    let mut asym = d;
    asym.padding = [[2, 0], [0, 1]];
    force(true);
    let run = || -> Result<()> {
        for o in [d.padding([1, 1]), asym, d] {
            let (xs, ws) = ([2, 5, 4, 5], [6, 5, 3, 3]);
            assert!(takes(&spec(2, 5, 6, [4, 5], o.padding)));
            check_grad(&[&xs, &ws, &[6]], |t| t[0].conv2d(&t[1], Some(&t[2]), &o))?;
        }
        Ok(())
    };
    let r = run();
    force(false);
    r
}

/// Seconds of CPU time this thread has used (immune to other processes sharing the
/// cores, unlike the wall clock), on unix; the wall clock elsewhere.
fn thread_secs() -> f64 {
    #[cfg(unix)]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec for the call's duration.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0 {
            return t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9;
        }
    }
    thread_local!(static START: std::time::Instant = std::time::Instant::now());
    START.with(|s| s.elapsed().as_secs_f64())
}

/// The fastest of 15 calls of `f` (after 3 untimed), in ms: thread CPU time on one
/// thread (`cpu`), wall time otherwise.
fn best(cpu: bool, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    let now = || {
        if cpu {
            thread_secs()
        } else {
            wall()
        }
    };
    for _ in 0..3 {
        f()?;
    }
    let mut b = f64::INFINITY;
    for _ in 0..15 {
        let t = now();
        f()?;
        b = b.min(now() - t);
    }
    Ok(b * 1e3)
}

/// Seconds since the first call on this process.
fn wall() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

/// Per-layer timings of ResNet-18's 3x3 stride-1 layers (W6, batch 8) and two narrow
/// ones, Winograd against im2col, forward and input gradient: 1 thread in thread CPU
/// time, 2 threads in wall time (`WINO_SHAPES=c:side,...` for other layers):
/// `cargo test -p nn-core --lib winograd::tests::timings -- --ignored --nocapture`
/// (the test profile builds nn-core at opt-level 2).
#[test]
#[ignore]
fn timings() -> Result<()> {
    // outputs go back to the thread's buffer cache, as a dropped tensor's do
    use crate::host::pool::give;
    let shapes: Vec<(usize, usize)> = match std::env::var("WINO_SHAPES") {
        Ok(v) => v
            .split(',')
            .filter_map(|p| {
                let (c, s) = p.split_once(':')?;
                Some((c.parse().ok()?, s.parse().ok()?))
            })
            .collect(),
        Err(_) => vec![(64, 16), (128, 8), (256, 4), (512, 2), (16, 16), (32, 8)],
    };
    for threads in [1, 2] {
        let pool = pool(threads)?;
        let cpu = threads == 1;
        for &(c, side) in &shapes {
            let s = spec(8, c, c, [side, side], [[1, 1], [1, 1]]);
            let x = values(8 * c * side * side, 1);
            let w = values(c * c * 9, 2);
            let b = values(c, 3);
            pool.install(|| -> Result<()> {
                let wf = best(cpu, &mut || forward(&x, &w, Some(&b), &s).map(give))?;
                let i2f = best(cpu, &mut || {
                    conv::forward_im2col(&x, &w, Some(&b), &s).map(give)
                })?;
                let wd = best(cpu, &mut || input_grad(&w, &x, &s).map(give))?;
                let i2d = best(cpu, &mut || {
                    conv::backward_im2col(&x, &w, &x, &s, [true, false, false])
                        .map(|(dx, _, _)| give(dx.unwrap_or_default()))
                })?;
                println!(
                    "threads {threads} c {c:>3} {side:>2}x{side:<2}: forward wino {wf:.3} ms \
                     im2col {i2f:.3} ms ({:.2}x); dx wino {wd:.3} ms im2col {i2d:.3} ms ({:.2}x)",
                    i2f / wf,
                    i2d / wd
                );
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Where the Winograd forward's time goes, per stage, one thread, thread CPU time:
/// `cargo test -p nn-core --lib winograd::tests::stages -- --ignored --nocapture`.
#[test]
#[ignore]
fn stages() -> Result<()> {
    use super::{input_tiles, output, weights, Plan};
    use crate::backend::MatmulSpec;
    use crate::host::pool::give;
    pool(1)?.install(|| -> Result<()> {
        for (c, side) in [(64, 16), (128, 8), (256, 4), (512, 2)] {
            let x = values(8 * c * side * side, 1);
            let w = values(c * c * 9, 2);
            let p = Plan::new(8, c, c, [side, side], [side, side], 1, 1);
            let t = p.tiles();
            let tw = best(true, &mut || weights(&w, c, c, false).map(give))?;
            let u = weights(&w, c, c, false)?;
            let ti = best(true, &mut || input_tiles(&x, &p).map(give))?;
            let v = input_tiles(&x, &p)?;
            let spec = MatmulSpec {
                batch: 16,
                m: c,
                n: t,
                k: c,
                lhs_batch: (0..16).collect(),
                rhs_batch: (0..16).collect(),
                lhs_t: false,
                rhs_t: false,
            };
            let mut m = vec![0.0f32; 16 * c * t];
            let tg = best(true, &mut || {
                super::matmul::gemm_into(&mut m, &u, &v, &spec, false);
                Ok(())
            })?;
            let to = best(true, &mut || output(&m, None, &p).map(give))?;
            println!(
                "c {c:>3} {side:>2}x{side:<2} tiles {t:>4}: weights {tw:.3} ms input {ti:.3} ms \
                 gemm {tg:.3} ms output {to:.3} ms"
            );
        }
        Ok(())
    })
}
