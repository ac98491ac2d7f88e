//! Tests of `conv2d` / `conv1d`: against a direct 7-loop definition and hand-derived
//! values, the fused node against the composite, finite differences, bad input.

use super::super::testing::check_grad;
use super::Conv2dOptions;
use crate::{Result, Tensor};

/// Direct 7-loop convolution, the definition in the module docs.
fn naive(x: &Tensor, w: &Tensor, o: &Conv2dOptions) -> Result<Vec<f32>> {
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (xv, wv) = (x.to_vec::<f32>()?, w.to_vec::<f32>()?);
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (oc, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let og = oc / o.groups;
    let sz = |i: usize, k: usize, d: usize| {
        (i + o.padding[d][0] + o.padding[d][1] - o.dilation[d] * (k - 1) - 1) / o.stride[d] + 1
    };
    let (oh, ow) = (sz(h, kh, 0), sz(wd, kw, 1));
    let mut y = vec![0.0; n * oc * oh * ow];
    for b in 0..n {
        for co in 0..oc {
            let grp = co / og;
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = 0.0;
                    for ci in 0..cg {
                        for p in 0..kh {
                            for q in 0..kw {
                                let r = (i * o.stride[0] + p * o.dilation[0]) as isize
                                    - o.padding[0][0] as isize;
                                let t = (j * o.stride[1] + q * o.dilation[1]) as isize
                                    - o.padding[1][0] as isize;
                                if r < 0 || t < 0 || r >= h as isize || t >= wd as isize {
                                    continue;
                                }
                                let cin = grp * cg + ci;
                                s += xv[((b * c + cin) * h + r as usize) * wd + t as usize]
                                    * wv[((co * cg + ci) * kh + p) * kw + q];
                            }
                        }
                    }
                    y[((b * oc + co) * oh + i) * ow + j] = s;
                }
            }
        }
    }
    Ok(y)
}

fn cases() -> Vec<(Vec<usize>, Vec<usize>, Conv2dOptions)> {
    let d = Conv2dOptions::default();
    vec![
        (vec![2, 3, 5, 6], vec![4, 3, 3, 3], d),
        (
            vec![1, 2, 7, 7],
            vec![3, 2, 3, 2],
            d.stride([2, 1]).padding([1, 2]),
        ),
        (
            vec![2, 4, 6, 5],
            vec![6, 2, 2, 3],
            d.groups(2).dilation([2, 1]),
        ),
        (
            vec![1, 3, 5, 5],
            vec![3, 1, 3, 3],
            d.groups(3).padding([1, 1]),
        ),
        (vec![2, 3, 4, 4], vec![2, 3, 1, 1], d),
        (vec![1, 2, 5, 4], vec![2, 2, 2, 2], d.same_padding([2, 2])),
    ]
}

#[test]
fn matches_the_definition() -> Result<()> {
    for (xs, ws, o) in cases() {
        let (x, w) = (Tensor::randn(&xs), Tensor::randn(&ws));
        let got = x.conv2d(&w, None, &o)?.to_vec::<f32>()?;
        let want = naive(&x, &w, &o)?;
        assert_eq!(got.len(), want.len(), "{xs:?} {ws:?} {o:?}");
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{xs:?} {o:?}: {a} vs {b}"
            );
        }
    }
    Ok(())
}

#[test]
fn hand_derived() -> Result<()> {
    // x = [[1, 2], [3, 4]], w = [[1]] with padding 1 and stride 2 reads the corners of
    // the padded 4x4: y = [[0, 0], [0, 4]]. dL/dw for L = sum(y) = sum of the picked
    // inputs (4), dL/dx = 1 at the picked element only, dL/db = #outputs = 4.
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2])?.with_requires_grad(true);
    let w = Tensor::from_vec(vec![1.0f32], &[1, 1, 1, 1])?.with_requires_grad(true);
    let b = Tensor::from_vec(vec![0.0f32], &[1])?.with_requires_grad(true);
    let o = Conv2dOptions::default().padding([1, 1]).stride([2, 2]);
    let y = x.conv2d(&w, Some(&b), &o)?;
    assert_eq!(y.to_vec::<f32>()?, vec![0.0, 0.0, 0.0, 4.0]);
    y.sum()?.backward()?;
    let g = |t: &Tensor| t.grad().map(|g| g.to_vec::<f32>()).transpose();
    assert_eq!(g(&x)?, Some(vec![0.0, 0.0, 0.0, 1.0]));
    assert_eq!(g(&w)?, Some(vec![4.0]));
    assert_eq!(g(&b)?, Some(vec![4.0]));
    Ok(())
}

#[test]
fn grads_finite_difference() -> Result<()> {
    for (xs, ws, o) in cases() {
        let bias = [ws[0]];
        check_grad(&[&xs, &ws, &bias], |t| t[0].conv2d(&t[1], Some(&t[2]), &o))?;
    }
    // the per-sample schedule (64 output positions or more), 3x3 and 1x1
    check_grad(&[&[2, 2, 9, 8], &[3, 2, 2, 2], &[3]], |t| {
        let o = Conv2dOptions::default().padding([1, 1]);
        t[0].conv2d(&t[1], Some(&t[2]), &o)
    })?;
    check_grad(&[&[2, 3, 8, 9], &[2, 3, 1, 1], &[2]], |t| {
        t[0].conv2d(&t[1], Some(&t[2]), &Conv2dOptions::default())
    })?;
    check_grad(&[&[2, 2, 7], &[4, 1, 3], &[4]], |t| {
        t[0].conv1d(&t[1], Some(&t[2]), 2, [1, 1], 2, 2)
    })?;
    Ok(())
}

/// Shapes for the fused op against the composite: both schedules of the CPU (per
/// sample from 64 output positions, batch in the columns below), a split over
/// threads into uneven sample ranges (3 samples, enough work), 1x1 with and without
/// stride, groups and depthwise on each schedule, asymmetric padding, dilation, odd
/// sizes, batch 1.
fn fused_cases() -> Vec<(Vec<usize>, Vec<usize>, Conv2dOptions)> {
    let d = Conv2dOptions::default();
    let mut asym = d.stride([1, 2]).dilation([2, 1]);
    asym.padding = [[2, 0], [1, 3]];
    let mut v = cases();
    v.extend([
        (vec![3, 8, 20, 20], vec![16, 8, 3, 3], d.padding([1, 1])),
        (vec![2, 6, 11, 9], vec![5, 6, 3, 3], asym),
        (
            vec![2, 6, 13, 9],
            vec![6, 1, 3, 3],
            d.groups(6).padding([1, 1]),
        ),
        (vec![3, 6, 9, 10], vec![4, 3, 2, 2], d.groups(2)),
        (vec![3, 16, 10, 9], vec![24, 16, 1, 1], d),
        (vec![3, 16, 10, 9], vec![24, 16, 1, 1], d.stride([2, 2])),
        (vec![2, 16, 5, 3], vec![8, 16, 1, 1], d),
        (
            vec![1, 3, 17, 15],
            vec![4, 3, 7, 7],
            d.stride([2, 2]).padding([3, 3]),
        ),
        (vec![1, 4, 12, 12], vec![4, 4, 3, 3], d.padding([1, 1])),
        (vec![5, 8, 4, 4], vec![16, 8, 3, 3], d.padding([1, 1])),
    ]);
    v
}

/// `(y, dx, dw, db)` of `sum(conv(x) * r)` (r fixed) by the fused op or the composite.
fn run(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    o: &Conv2dOptions,
    fused: bool,
) -> Result<Vec<Vec<f32>>> {
    let leaf = |t: &Tensor| t.detach().with_requires_grad(true);
    let (x, w, b) = (leaf(x), leaf(w), b.map(leaf));
    let y = x.conv2d_with(&w, b.as_ref(), o, fused)?;
    let r: Vec<f32> = (0..y.numel())
        .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let r = Tensor::from_vec(r, y.shape())?;
    y.mul(&r)?.sum()?.backward()?;
    let mut out = vec![y.to_vec::<f32>()?];
    for t in [Some(&x), Some(&w), b.as_ref()].into_iter().flatten() {
        out.push(
            t.grad()
                .map(|g| g.to_vec::<f32>())
                .transpose()?
                .unwrap_or_default(),
        );
    }
    Ok(out)
}

#[test]
fn fused_matches_the_composite() -> Result<()> {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| crate::Error::custom(e.to_string()))?;
        for (xs, ws, o) in fused_cases() {
            for with_bias in [true, false] {
                let (x, w, b) = (
                    Tensor::randn(&xs),
                    Tensor::randn(&ws),
                    Tensor::randn(&[ws[0]]),
                );
                let b = with_bias.then_some(&b);
                let got = pool.install(|| run(&x, &w, b, &o, true))?;
                let want = pool.install(|| run(&x, &w, b, &o, false))?;
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.len(), w.len(), "{xs:?} {ws:?} {o:?} output {k}");
                    for (a, e) in g.iter().zip(w) {
                        assert!(
                            (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "{xs:?} {ws:?} {o:?} bias {with_bias} threads {threads} \
                             output {k}: {a} vs {e}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn fused_unbatched_and_frozen_operands() -> Result<()> {
    let o = Conv2dOptions::default().padding([1, 1]);
    let (x, w) = (Tensor::randn(&[3, 9, 9]), Tensor::randn(&[4, 3, 3, 3]));
    let got = x.conv2d(&w, None, &o)?;
    let want = x.conv2d_with(&w, None, &o, false)?;
    assert_eq!(got.shape(), &[4, 9, 9]);
    super::super::testing::assert_close("unbatched", &got, &want)?;
    // only the weight asks for a gradient (a first layer), then only the input
    for (xg, wg) in [(false, true), (true, false)] {
        let xr = x.detach().with_requires_grad(xg);
        let wr = w.detach().with_requires_grad(wg);
        xr.conv2d(&wr, None, &o)?.sum()?.backward()?;
        assert_eq!((xr.grad().is_some(), wr.grad().is_some()), (xg, wg));
    }
    Ok(())
}

#[test]
fn unbatched_and_1d_shapes() -> Result<()> {
    let o = Conv2dOptions::default();
    let y = Tensor::zeros(&[3, 5, 5]).conv2d(&Tensor::zeros(&[2, 3, 3, 3]), None, &o)?;
    assert_eq!(y.shape(), &[2, 3, 3]);
    let y = Tensor::zeros(&[2, 3, 10]).conv1d(&Tensor::zeros(&[4, 3, 3]), None, 1, [1, 1], 1, 1)?;
    assert_eq!(y.shape(), &[2, 4, 10]);
    Ok(())
}

#[test]
fn bad_input_is_an_error() {
    let o = Conv2dOptions::default();
    let w = Tensor::zeros(&[2, 3, 3, 3]);
    let err = |x: &[usize], w: &Tensor, o: &Conv2dOptions| {
        Tensor::zeros(x)
            .conv2d(w, None, o)
            .err()
            .map(|e| e.to_string())
    };
    let e = err(&[1, 4, 5, 5], &w, &o).unwrap_or_default();
    assert!(
        e.contains("[1, 4, 5, 5]") && e.contains("[2, 3, 3, 3]"),
        "{e}"
    );
    let e = err(&[1, 3, 2, 2], &w, &o).unwrap_or_default();
    assert!(e.contains("larger than the padded input [2, 2]"), "{e}");
    assert!(err(&[1, 3, 5, 5], &w, &o.stride([0, 1])).is_some());
    assert!(err(&[1, 3, 5, 5], &w, &o.groups(2)).is_some());
    assert!(err(&[1, 3, 5, 5], &w, &o.groups(0)).is_some());
    assert!(err(&[3, 5], &w, &o).is_some());
}
