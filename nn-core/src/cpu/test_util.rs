//! Helpers shared by the host kernels' tests (Winograd, direct convolution): fixed
//! inputs, a pool of a given size, a tolerance relative to the reference's scale, and
//! the check that `conv`'s entry points reach a path.

use super::conv;
use crate::backend::Conv2dSpec;
use crate::ops::Conv2dOptions;
use crate::{Error, Result, Tensor};

/// Values in [-1, 1) with a few exact zeros, from a fixed integer hash.
pub(super) fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + salt * 104_729) % 1013) as f32 / 506.5 - 1.0)
        .collect()
}

/// A rayon pool of `threads` threads.
pub(super) fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::custom(e.to_string()))
}

/// Asserts that `got` is `want` within `rel` of the largest `|want|` (at least 1).
pub(super) fn close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale,
            "{what}: element {i}: {g} vs {w} (scale {scale})"
        );
    }
}

/// A convolution path's `forward(x, w, bias, spec)`.
pub(super) type PathForward = fn(&[f32], &[f32], Option<&[f32]>, &Conv2dSpec) -> Result<Vec<f32>>;

/// A convolution path's `input_grad(w, dy, spec)`.
pub(super) type PathInputGrad = fn(&[f32], &[f32], &Conv2dSpec) -> Result<Vec<f32>>;

/// On `s` (stride 1, symmetric padding), `conv::forward`, `conv::backward`'s `dx` and the
/// tensor op `conv2d` return exactly what the path's own `forward` and `input_grad`
/// return, and `conv::backward`'s `dw`, `db` match the im2col path's within 1e-5.
pub(super) fn entry_points_match(
    s: &Conv2dSpec,
    forward: PathForward,
    input_grad: PathInputGrad,
) -> Result<()> {
    let (n, c, o) = (s.window.batch, s.window.channels, s.out_channels);
    let ([h, w_], [oh, ow], [kh, kw]) = (s.window.input, s.window.output, s.window.kernel);
    let x = values(n * c * h * w_, 1);
    let w = values(o * c * kh * kw, 2);
    let b = values(o, 3);
    let dy = values(n * o * oh * ow, 4);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let y = conv::forward(&x, &w, Some(&b), s)?;
    assert_eq!(bits(&y), bits(&forward(&x, &w, Some(&b), s)?));
    let (dx, dw, db) = conv::backward(&x, &w, &dy, s, [true; 3])?;
    assert_eq!(
        bits(&dx.unwrap_or_default()),
        bits(&input_grad(&w, &dy, s)?)
    );
    let (_, want_dw, want_db) = conv::backward_im2col(&x, &w, &dy, s, [false, true, true])?;
    close(
        &dw.unwrap_or_default(),
        &want_dw.unwrap_or_default(),
        1e-5,
        "dw",
    );
    close(
        &db.unwrap_or_default(),
        &want_db.unwrap_or_default(),
        1e-5,
        "db",
    );
    // the tensor op reaches the same path
    let xt = Tensor::from_slice(&x, &[n, c, h, w_])?;
    let wt = Tensor::from_slice(&w, &[o, c, kh, kw])?;
    let bt = Tensor::from_slice(&b, &[o])?;
    let pad = [s.window.padding[0][0], s.window.padding[1][0]];
    let opts = Conv2dOptions::default().padding(pad);
    let yt = xt.conv2d(&wt, Some(&bt), &opts)?.to_vec::<f32>()?;
    assert_eq!(bits(&yt), bits(&y));
    Ok(())
}
