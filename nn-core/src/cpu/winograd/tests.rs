//! Winograd against the im2col path (forward and input gradient, many shapes, 1 and 2
//! threads), the dispatch, and the whole conv2d node by finite differences.

use super::super::conv;
use super::{fits, forward, input_grad, takes};
use crate::backend::{Conv2dSpec, Im2ColSpec};
use crate::ops::testing::check_grad;
use crate::ops::Conv2dOptions;
use crate::{Error, Result, Tensor};

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

/// Values in [-1, 1) with a few exact zeros, from a fixed integer hash.
fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + salt * 104_729) % 1013) as f32 / 506.5 - 1.0)
        .collect()
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::custom(e.to_string()))
}

/// Whether `got` is `want` within `rel` of the largest `|want|` (at least 1).
fn close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale,
            "{what}: element {i}: {g} vs {w} (scale {scale})"
        );
    }
}

/// The shapes: batch, channels in and out, image, padding.
fn shapes() -> Vec<(usize, usize, usize, [usize; 2], [[usize; 2]; 2])> {
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
                let what = format!("{n} {c} {o} {hw:?} {pad:?} bias {} threads {threads}", bias.is_some());
                let got = pool.install(|| forward(&x, &w, bias, &s))?;
                let want = pool.install(|| conv::forward_im2col(&x, &w, bias, &s))?;
                close(&got, &want, 1e-4, &format!("forward {what}"));
            }
            let got = pool.install(|| input_grad(&w, &dy, &s))?;
            let (want, _, _) =
                pool.install(|| conv::backward_im2col(&x, &w, &dy, &s, [true, false, false]))?;
            let want = want.unwrap_or_default();
            close(&got, &want, 1e-4, &format!("dx {n} {c} {o} {hw:?} {pad:?} threads {threads}"));
        }
    }
    Ok(())
}

/// ResNet-18's 3x3 stride-1 layers go to Winograd, and `conv`'s entry points return
/// exactly its results there (with `dw`, `db` from the im2col path), while strided,
/// grouped, dilated and 1-3 channel layers stay on im2col.
#[test]
fn dispatch_takes_winograd_for_qualifying_layers() -> Result<()> {
    for (c, side) in [(64, 16), (128, 8), (256, 4)] {
        assert!(takes(&spec(8, c, c, [side, side], [[1, 1], [1, 1]])), "{c}");
    }
    let s = spec(3, 16, 16, [7, 7], [[1, 1], [1, 1]]);
    assert!(takes(&s));
    assert!(!takes(&spec(8, 3, 64, [16, 16], [[1, 1], [1, 1]])));
    let mut strided = s;
    strided.window.stride = [2, 2];
    strided.window.output = [4, 4];
    let mut grouped = s;
    grouped.groups = 2;
    let mut dilated = s;
    dilated.window.dilation = [2, 2];
    dilated.window.output = [5, 5];
    for other in [strided, grouped, dilated] {
        assert!(!fits(&other) && !takes(&other), "{other:?}");
    }

    let x = values(3 * 16 * 49, 1);
    let w = values(16 * 16 * 9, 2);
    let b = values(16, 3);
    let dy = values(3 * 16 * 49, 4);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let y = conv::forward(&x, &w, Some(&b), &s)?;
    assert_eq!(bits(&y), bits(&forward(&x, &w, Some(&b), &s)?));
    let (dx, dw, db) = conv::backward(&x, &w, &dy, &s, [true; 3])?;
    assert_eq!(bits(&dx.unwrap_or_default()), bits(&input_grad(&w, &dy, &s)?));
    let (_, want_dw, want_db) = conv::backward_im2col(&x, &w, &dy, &s, [false, true, true])?;
    close(&dw.unwrap_or_default(), &want_dw.unwrap_or_default(), 1e-5, "dw");
    close(&db.unwrap_or_default(), &want_db.unwrap_or_default(), 1e-5, "db");
    let (dx, dw, db) = conv::backward(&x, &w, &dy, &s, [true, false, false])?;
    assert!(dx.is_some() && dw.is_none() && db.is_none());

    // the tensor op reaches the same path
    let xt = Tensor::from_slice(&x, &[3, 16, 7, 7])?;
    let wt = Tensor::from_slice(&w, &[16, 16, 3, 3])?;
    let bt = Tensor::from_slice(&b, &[16])?;
    let opts = Conv2dOptions::default().padding([1, 1]);
    let yt = xt.conv2d(&wt, Some(&bt), &opts)?.to_vec::<f32>()?;
    assert_eq!(bits(&yt), bits(&y));
    Ok(())
}

/// The conv2d node on the Winograd path (16 channels, 3x3 stride 1), symmetric and
/// asymmetric padding, against finite differences of every input element.
#[test]
fn conv2d_node_grads_finite_difference() -> Result<()> {
    let d = Conv2dOptions::default();
    let mut asym = d;
    asym.padding = [[2, 0], [0, 1]];
    for o in [d.padding([1, 1]), asym, d] {
        let (xs, ws) = ([2, 16, 4, 5], [16, 16, 3, 3]);
        assert!(takes(&spec(2, 16, 16, [4, 5], o.padding)));
        check_grad(&[&xs, &ws, &[16]], |t| t[0].conv2d(&t[1], Some(&t[2]), &o))?;
    }
    Ok(())
}

/// Per-layer timings of ResNet-18's 3x3 stride-1 layers (W6, batch 8), Winograd
/// against im2col, forward and input gradient, 1 and 2 threads:
/// `cargo test --release -p nn-core --lib winograd::tests::timings -- --ignored --nocapture`.
#[test]
#[ignore]
fn timings() -> Result<()> {
    let best = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut b = f64::INFINITY;
        for _ in 0..15 {
            let t = std::time::Instant::now();
            f()?;
            b = b.min(t.elapsed().as_secs_f64());
        }
        Ok(b * 1e3)
    };
    for threads in [1, 2] {
        let pool = pool(threads)?;
        for (c, side) in [(64, 16), (128, 8), (256, 4), (512, 2), (16, 16), (32, 8)] {
            let s = spec(8, c, c, [side, side], [[1, 1], [1, 1]]);
            let x = values(8 * c * side * side, 1);
            let w = values(c * c * 9, 2);
            let b = values(c, 3);
            pool.install(|| -> Result<()> {
                let wf = best(&mut || forward(&x, &w, Some(&b), &s).map(drop))?;
                let i2f = best(&mut || conv::forward_im2col(&x, &w, Some(&b), &s).map(drop))?;
                let wd = best(&mut || input_grad(&w, &x, &s).map(drop))?;
                let i2d = best(&mut || {
                    conv::backward_im2col(&x, &w, &x, &s, [true, false, false]).map(drop)
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
