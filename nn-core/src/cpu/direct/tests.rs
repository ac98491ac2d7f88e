//! The direct path against im2col (forward with and without bias, input, weight and
//! bias gradients; many geometries; 1 and 2 threads; the AVX-512 and the portable tile
//! bodies), the dispatch, and the conv2d node by finite differences.

use super::super::conv;
use super::super::test_util::{close, entry_points_match, pool, values};
use super::{fits, force, forward, input_grad, kernel, takes, takes_input_grad, weight_grad, Plan};
use crate::backend::{Conv2dSpec, Im2ColSpec};
use crate::ops::testing::check_grad;
use crate::ops::Conv2dOptions;
use crate::Result;

/// A convolution of `[n, c, h, w]` into `o` channels.
fn spec(
    (n, c, o): (usize, usize, usize),
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [[usize; 2]; 2],
    dilation: [usize; 2],
) -> Conv2dSpec {
    let out = |d: usize| {
        (input[d] + padding[d][0] + padding[d][1])
            .saturating_sub(dilation[d] * (kernel[d] - 1))
            .saturating_sub(1)
            / stride[d]
            + 1
    };
    Conv2dSpec {
        window: Im2ColSpec {
            batch: n,
            channels: c,
            input,
            kernel,
            stride,
            padding,
            dilation,
            output: [out(0), out(1)],
            batch_inner: false,
            pad_value: 0.0,
        },
        out_channels: o,
        groups: 1,
    }
}

/// A 3x3 stride-`s` convolution with padding 1, ResNet's.
fn resnet(n: usize, c: usize, o: usize, side: usize, s: usize) -> Conv2dSpec {
    spec(
        (n, c, o),
        [side, side],
        [3, 3],
        [s, s],
        [[1, 1], [1, 1]],
        [1, 1],
    )
}

/// The geometries compared with im2col: ResNet's late layers, odd channel counts (a
/// partial block of 32 output channels, partial tiles of 8 columns), asymmetric and
/// large padding, strides, dilation, non-square kernels, 1x1 images.
fn shapes() -> Vec<Conv2dSpec> {
    let p1 = [[1, 1], [1, 1]];
    let mut v = vec![
        resnet(4, 64, 40, 16, 1),
        resnet(8, 256, 256, 4, 1),
        resnet(8, 512, 512, 2, 1),
        resnet(8, 128, 256, 8, 2),
        resnet(8, 256, 512, 4, 2),
        resnet(3, 5, 37, 4, 1),
        resnet(1, 3, 1, 1, 1),
        resnet(5, 7, 33, 3, 1),
        resnet(2, 64, 70, 2, 1),
        spec((3, 6, 40), [4, 3], [3, 3], [1, 1], [[2, 0], [1, 2]], [1, 1]),
        spec((2, 4, 9), [2, 2], [3, 3], [1, 1], [[2, 2], [2, 2]], [1, 1]),
        spec((2, 4, 9), [1, 1], [3, 3], [1, 1], [[3, 0], [3, 0]], [1, 1]),
        spec((2, 4, 9), [4, 4], [3, 3], [1, 1], p1, [2, 2]),
        spec((3, 5, 11), [5, 5], [3, 3], [2, 2], p1, [1, 1]),
        spec((2, 3, 35), [4, 4], [1, 3], [1, 1], [[0, 0], [1, 1]], [1, 1]),
        spec((2, 3, 8), [4, 4], [5, 5], [1, 1], [[2, 2], [2, 2]], [1, 1]),
        spec((9, 3, 8), [2, 2], [3, 3], [1, 1], p1, [1, 1]),
    ];
    v.push(spec(
        (1, 2, 3),
        [1, 1],
        [1, 1],
        [1, 1],
        [[0, 0], [0, 0]],
        [1, 1],
    ));
    v
}

#[test]
fn forward_and_input_grad_match_im2col() -> Result<()> {
    for threads in [1, 2] {
        let pool = pool(threads)?;
        for portable in [false, true] {
            for s in shapes() {
                assert!(fits(&s), "{s:?}");
                let (n, c, o) = (s.window.batch, s.window.channels, s.out_channels);
                let ([h, w_], [oh, ow], [kh, kw]) =
                    (s.window.input, s.window.output, s.window.kernel);
                let x = values(n * c * h * w_, 1);
                let w = values(o * c * kh * kw, 2);
                let b = values(o, 3);
                let dy = values(n * o * oh * ow, 4);
                conv::check_spec("test", &s, x.len(), w.len(), Some(b.len()))?;
                let what = format!("{s:?} threads {threads} portable {portable}");
                for bias in [None, Some(b.as_slice())] {
                    let got = pool.install(|| {
                        kernel::set_portable(portable);
                        forward(&x, &w, bias, &s)
                    })?;
                    let want = pool.install(|| conv::forward_im2col(&x, &w, bias, &s))?;
                    close(
                        &got,
                        &want,
                        1e-4,
                        &format!("forward bias {} {what}", bias.is_some()),
                    );
                }
                let (_, want_dw, want_db) =
                    pool.install(|| conv::backward_im2col(&x, &w, &dy, &s, [false, true, true]))?;
                let got = pool.install(|| {
                    kernel::set_portable(portable);
                    weight_grad(&x, &dy, &s)
                })?;
                close(
                    &got,
                    &want_dw.unwrap_or_default(),
                    1e-4,
                    &format!("dw {what}"),
                );
                let got = conv::bias_grad(&dy, &s);
                close(
                    &got,
                    &want_db.unwrap_or_default(),
                    1e-4,
                    &format!("db {what}"),
                );
                if s.window.stride == [1, 1] {
                    let got = pool.install(|| {
                        kernel::set_portable(portable);
                        input_grad(&w, &dy, &s)
                    })?;
                    let (want, _, _) = pool
                        .install(|| conv::backward_im2col(&x, &w, &dy, &s, [true, false, false]))?;
                    close(&got, &want.unwrap_or_default(), 1e-4, &format!("dx {what}"));
                } else {
                    assert!(input_grad(&w, &dy, &s).is_err());
                }
            }
        }
        pool.install(|| kernel::set_portable(false));
    }
    Ok(())
}

/// ResNet-18's late padded layers go to the direct path where the CPU has AVX-512, and
/// `conv`'s entry points return exactly its results there; unpadded and large images
/// stay on im2col / Winograd.
#[test]
fn dispatch_takes_small_padded_layers() -> Result<()> {
    // the share of im2col's multiply-adds that read inside the image
    let useful = |s: &Conv2dSpec| Plan::forward(s).useful();
    assert!((useful(&resnet(8, 512, 512, 2, 1)) - 16.0 / 36.0).abs() < 1e-9);
    assert!((useful(&resnet(8, 256, 256, 4, 1)) - 100.0 / 144.0).abs() < 1e-9);
    let one = spec(
        (8, 256, 512),
        [4, 4],
        [1, 1],
        [2, 2],
        [[0, 0], [0, 0]],
        [1, 1],
    );
    assert!((useful(&one) - 1.0).abs() < 1e-9);
    assert!(!takes(&one), "a 1x1 unpadded layer reads no padding");
    assert!(fits(&resnet(8, 64, 64, 16, 1)), "256 positions");
    assert!(!fits(&resnet(8, 64, 64, 17, 1)), "289 positions");
    let mut grouped = resnet(8, 64, 64, 4, 1);
    grouped.groups = 2;
    assert!(!fits(&grouped));
    let avx512 = super::kernel_available();
    for s in [
        resnet(8, 64, 64, 16, 1),
        resnet(8, 128, 128, 8, 1),
        resnet(8, 64, 128, 16, 2),
        resnet(8, 256, 256, 4, 1),
        resnet(8, 512, 512, 2, 1),
        resnet(8, 128, 256, 8, 2),
        resnet(8, 256, 512, 4, 2),
    ] {
        assert_eq!(takes(&s), avx512, "{s:?}");
        assert_eq!(
            takes_input_grad(&s),
            avx512 && s.window.stride == [1, 1],
            "{s:?}"
        );
    }
    // the entry points, forced where the CPU lacks AVX-512
    force(true);
    let run = || entry_points_match(&resnet(3, 40, 36, 4, 1), forward, input_grad);
    let r = run();
    force(false);
    r
}

/// The conv2d node on the direct path (forced), padded, strided and dilated, against
/// finite differences of every input element (`dx` from the direct path at stride 1).
#[test]
fn conv2d_node_grads_finite_difference() -> Result<()> {
    let d = Conv2dOptions::default().padding([1, 1]);
    let mut asym = d;
    asym.padding = [[2, 0], [0, 1]];
    force(true);
    let run = || -> Result<()> {
        for o in [d, asym, d.stride([2, 2]), d.dilation([2, 2])] {
            check_grad(&[&[2, 5, 3, 4], &[6, 5, 3, 3], &[6]], |t| {
                t[0].conv2d(&t[1], Some(&t[2]), &o)
            })?;
        }
        Ok(())
    };
    let r = run();
    force(false);
    r
}
