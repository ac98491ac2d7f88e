use super::scaled_dot_product_attention as sdpa;
use crate::ops::testing::check_grad;
use crate::{Error, Result, Tensor};

fn close(what: &str, a: &Tensor, b: &Tensor, tol: f32) -> Result<()> {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (x, y) in a.to_vec::<f32>()?.iter().zip(b.to_vec::<f32>()?) {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()) || (x.is_nan() && y.is_nan()),
            "{what}: {x} vs {y}"
        );
    }
    Ok(())
}

/// The fused forward (no gradients) and the composite (inputs requiring gradients).
fn both(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    m: Option<&Tensor>,
    causal: bool,
) -> Result<(Tensor, Tensor)> {
    let fused = crate::no_grad(|| sdpa(q, k, v, m, 0.0, causal, None))?;
    let g = |t: &Tensor| t.detach().with_requires_grad(true);
    let comp = sdpa(&g(q), &g(k), &g(v), m, 0.0, causal, None)?;
    Ok((fused, comp.detach()))
}

#[test]
fn fused_forward_matches_the_composite() -> Result<()> {
    // L != S, tiles of keys and rows crossed (S > 256, L > 64), Ev != E, batch 1
    for (qs, ks, vs) in [
        (&[2, 3, 5, 8][..], &[2, 3, 7, 8][..], &[2, 3, 7, 3][..]),
        (&[1, 70, 4][..], &[1, 300, 4][..], &[1, 300, 6][..]),
        (&[6, 5][..], &[9, 5][..], &[9, 2][..]),
    ] {
        let (q, k, v) = (Tensor::randn(qs), Tensor::randn(ks), Tensor::randn(vs));
        let (l, s) = (qs[qs.len() - 2], ks[ks.len() - 2]);
        let (f, c) = both(&q, &k, &v, None, false)?;
        close("no mask", &f, &c, 1e-5)?;
        let (f, c) = both(&q, &k, &v, None, true)?;
        close("causal", &f, &c, 1e-5)?;
        // a float mask [L, S] and a bool one with a fully masked row (-> 0)
        let fm = Tensor::randn(&[l, s]);
        let (f, c) = both(&q, &k, &v, Some(&fm), false)?;
        close("float mask", &f, &c, 1e-5)?;
        let keep: Vec<bool> = (0..l * s).map(|i| i % 3 != 1 && i / s != 1).collect();
        let bm = Tensor::from_vec(keep, &[l, s])?;
        let (f, c) = both(&q, &k, &v, Some(&bm), false)?;
        close("bool mask", &f, &c, 1e-5)?;
        let row1 = f.narrow(-2, 1, 1)?.to_vec::<f32>()?;
        assert!(row1.iter().all(|&x| x == 0.0), "{row1:?}");
    }
    // per-batch masks broadcast over heads ([B, 1, L, S]) and per head ([B, H, L, S])
    let (q, k, v) = (
        Tensor::randn(&[2, 3, 4, 8]),
        Tensor::randn(&[2, 3, 6, 8]),
        Tensor::randn(&[2, 3, 6, 8]),
    );
    for shape in [&[2, 1, 4, 6][..], &[2, 3, 4, 6], &[1, 6], &[2, 1, 1, 6]] {
        let m = Tensor::randn(shape);
        let (f, c) = both(&q, &k, &v, Some(&m), false)?;
        close("broadcast mask", &f, &c, 1e-5)?;
        let b = m.gt(&Tensor::zeros(&[]))?.to_dtype(crate::DType::Bool)?;
        let (f, c) = both(&q, &k, &v, Some(&b), false)?;
        close("broadcast bool mask", &f, &c, 1e-5)?;
    }
    Ok(())
}

#[test]
fn finite_differences_and_hand_derived() -> Result<()> {
    check_grad(&[&[2, 3, 4], &[2, 5, 4], &[2, 5, 3]], |t| {
        sdpa(&t[0], &t[1], &t[2], None, 0.0, false, None)
    })?;
    check_grad(&[&[1, 4, 2], &[1, 3, 2], &[1, 3, 2]], |t| {
        sdpa(&t[0], &t[1], &t[2], None, 0.0, true, Some(0.7))
    })?;
    let keep = Tensor::from_vec(vec![true, false, true, false, false, false], &[2, 3])?;
    check_grad(&[&[2, 3], &[3, 3], &[3, 2]], |t| {
        sdpa(&t[0], &t[1], &t[2], Some(&keep), 0.0, false, None)
    })?;
    // equal keys: uniform weights, so the output is the mean of the value rows, for
    // any query: v rows [1, 2] and [3, 4] -> [2, 3]
    let q = Tensor::randn(&[2, 2]);
    let k = Tensor::ones(&[2, 2]);
    let v = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    for grad in [false, true] {
        let o = sdpa(&q.with_requires_grad(grad), &k, &v, None, 0.0, false, None)?;
        close(
            "uniform",
            &o,
            &Tensor::from_vec(vec![2.0f32, 3.0, 2.0, 3.0], &[2, 2])?,
            1e-6,
        )?;
    }
    Ok(())
}

#[test]
fn dropout_one_zeroes_and_bad_arguments_are_errors() -> Result<()> {
    let (q, k) = (Tensor::randn(&[2, 3, 4]), Tensor::randn(&[2, 5, 4]));
    let o = sdpa(&q, &k, &k, None, 1.0, false, None)?;
    assert!(o.to_vec::<f32>()?.iter().all(|&x| x == 0.0));
    let m = Tensor::zeros(&[3, 5]);
    let bad: Vec<Result<Tensor>> = vec![
        sdpa(&q, &k, &k, Some(&m), 0.0, true, None),
        sdpa(&q, &k, &k, Some(&Tensor::zeros(&[3, 4])), 0.0, false, None),
        sdpa(&q, &k.narrow(-1, 0, 3)?, &k, None, 0.0, false, None),
        sdpa(&q, &k, &k.narrow(1, 0, 4)?, None, 0.0, false, None),
        sdpa(&q.get(0)?.get(0)?, &k, &k, None, 0.0, false, None),
        sdpa(&q, &k, &k, None, 1.5, false, None),
        sdpa(
            &q,
            &k,
            &k,
            Some(&Tensor::zeros(&[3, 5]).to_dtype(crate::DType::I64)?),
            0.0,
            false,
            None,
        ),
    ];
    for (i, r) in bad.into_iter().enumerate() {
        let msg = r.err().map(|e: Error| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("scaled_dot_product_attention"),
            "case {i}: {msg:?}"
        );
    }
    Ok(())
}

#[test]
fn fully_masked_rows_have_zero_output_and_finite_gradients() -> Result<()> {
    // a NaN there would spread through dk to every key (check_grad cannot see a NaN:
    // every comparison with one is false)
    let keep = Tensor::from_vec(vec![true, false, true, false, false, false], &[2, 3])?;
    let q = Tensor::randn(&[2, 3]).with_requires_grad(true);
    let k = Tensor::randn(&[3, 3]).with_requires_grad(true);
    let v = Tensor::randn(&[3, 2]).with_requires_grad(true);
    let o = sdpa(&q, &k, &v, Some(&keep), 0.0, false, None)?;
    assert_eq!(&o.to_vec::<f32>()?[2..], &[0.0, 0.0]);
    o.sum()?.backward()?;
    for t in [&q, &k, &v] {
        let g = t
            .grad()
            .ok_or_else(|| Error::custom("no grad"))?
            .to_vec::<f32>()?;
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    }
    let gq = q
        .grad()
        .ok_or_else(|| Error::custom("no grad"))?
        .to_vec::<f32>()?;
    assert_eq!(&gq[3..], &[0.0, 0.0, 0.0]);
    Ok(())
}

/// The packed self-attention (heads read from `[B, L, 3E]`, written merged) against the
/// split it replaces (chunk, heads to `[B, H, L, D]`, the fused forward, merge): bit for
/// bit, the same kernel on the same numbers.
#[test]
fn packed_self_attention_is_the_split_bit_for_bit() -> Result<()> {
    use super::packed_self_attention;
    // batch 1, several heads, D = 1, rows and keys tiles crossed (L > 64), and one big
    // enough for the parallel branch
    for (b, l, h, d) in [
        (1, 5, 3, 4),
        (2, 7, 4, 2),
        (3, 1, 2, 1),
        (1, 70, 2, 3),
        (2, 64, 4, 16),
    ] {
        let e = h * d;
        let qkv = Tensor::randn(&[b, l, 3 * e]);
        let scale = 1.0 / (d as f32).sqrt();
        let split = |m: Option<&Tensor>| -> Result<Tensor> {
            let p = qkv.chunk(3, -1)?;
            let heads = |t: &Tensor| t.reshape(&[b, l, h, d])?.permute(&[0, 2, 1, 3]);
            let (q, k, v) = (heads(&p[0])?, heads(&p[1])?, heads(&p[2])?);
            sdpa(&q, &k, &v, m, 0.0, false, Some(scale))?
                .permute(&[0, 2, 1, 3])?
                .reshape(&[b, l, e])
        };
        // MultiheadAttention's masks: attn_mask 2-d ([1, 1, L, L]) and 3-d
        // ([B, H, L, L]), key_padding_mask ([B, 1, 1, L], a fully masked sample), a sum
        let keep: Vec<f32> = (0..b * l)
            .map(|i| {
                if i % 3 == 1 || i < l {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let kpm = Tensor::from_vec(keep, &[b, 1, 1, l])?;
        let m2 = Tensor::randn(&[1, 1, l, l]);
        let m3 = Tensor::randn(&[b, h, l, l]);
        let both = m3.add(&kpm)?;
        for (what, m) in [
            ("no mask", None),
            ("2-d", Some(&m2)),
            ("3-d", Some(&m3)),
            ("key padding", Some(&kpm)),
            ("both", Some(&both)),
        ] {
            let packed = crate::no_grad(|| packed_self_attention(&qkv, h, m, scale))?;
            let Some(packed) = packed else {
                panic!("{what}: no fused packed path on the CPU")
            };
            let old = crate::no_grad(|| split(m))?;
            assert_eq!(packed.shape(), old.shape(), "{what}");
            let (p, o) = (packed.to_vec::<f32>()?, old.to_vec::<f32>()?);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&p), bits(&o), "{what} {b} {l} {h} {d}");
        }
    }
    // with gradients it is not taken: the caller composes
    let qkv = Tensor::randn(&[1, 3, 6]).with_requires_grad(true);
    assert!(packed_self_attention(&qkv, 2, None, 1.0)?.is_none());
    Ok(())
}

/// Output and input gradients (of `sum(o * w)`) of `f` on fresh leaves copied from `xs`.
fn with_grads(
    xs: &[&Tensor],
    w: &Tensor,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let leaves: Vec<Tensor> = xs
        .iter()
        .map(|t| t.detach().with_requires_grad(true))
        .collect();
    let o = f(&leaves)?;
    o.mul(w)?.sum()?.backward()?;
    let mut out = vec![o.detach()];
    for t in &leaves {
        out.push(t.grad().ok_or_else(|| Error::custom("no grad"))?);
    }
    Ok(out)
}

/// The fused training node (one autograd node, its own backward) against the composite
/// it replaces, outputs and the three gradients: masks of both kinds (a fully masked
/// row), causal, L != S, Ev != E, dropout with the same draws, and enough problems for
/// the parallel branch.
#[test]
fn fused_training_matches_the_composite() -> Result<()> {
    use super::{additive_mask, composed, drop_mask};
    for (qs, ks, vs) in [
        (&[2, 3, 5, 8][..], &[2, 3, 7, 8][..], &[2, 3, 7, 3][..]),
        (&[6, 5][..], &[9, 5][..], &[9, 2][..]),
        (
            &[4, 16, 64, 16][..],
            &[4, 16, 64, 16][..],
            &[4, 16, 64, 16][..],
        ),
    ] {
        let r = qs.len();
        let (l, s, e) = (qs[r - 2], ks[r - 2], qs[r - 1]);
        let (q, k, v) = (Tensor::randn(qs), Tensor::randn(ks), Tensor::randn(vs));
        let fm = Tensor::randn(&[l, s]);
        let keep: Vec<bool> = (0..l * s).map(|i| i % 3 != 1 && i / s != 1).collect();
        let bm = Tensor::from_vec(keep, &[l, s])?;
        let out: Vec<usize> = [&qs[..r - 1], &[vs[r - 1]]].concat();
        let w = Tensor::randn(&out);
        for (what, m, causal, p) in [
            ("plain", None, false, 0.0),
            ("causal", None, true, 0.0),
            ("float mask", Some(&fm), false, 0.0),
            ("bool mask", Some(&bm), false, 0.0),
            ("dropout", Some(&fm), false, 0.3),
            ("dropout causal", None, true, 0.5),
        ] {
            let fused = with_grads(&[&q, &k, &v], &w, |t| {
                crate::manual_seed(17);
                sdpa(&t[0], &t[1], &t[2], m, p, causal, None)
            })?;
            let comp = with_grads(&[&q, &k, &v], &w, |t| {
                crate::manual_seed(17);
                let mask = additive_mask(m, &t[0], &qs[..r - 2], l, s)?;
                let drop = drop_mask(p, &[&qs[..r - 2], &[l, s]].concat(), &t[0].device())?;
                composed(
                    &t[0],
                    &t[1],
                    &t[2],
                    mask,
                    drop,
                    causal,
                    1.0 / (e as f32).sqrt(),
                )
            })?;
            for (i, (a, b)) in fused.iter().zip(&comp).enumerate() {
                close(&format!("{what} {qs:?} #{i}"), a, b, 1e-4)?;
            }
        }
    }
    Ok(())
}

/// The packed training path (heads read from `[B, L, 3E]`, the gradient written packed)
/// against the split composite, with masks and dropout; and finite differences through
/// it and through the unpacked fused node with dropout (one seed per call: one fixed
/// mask).
#[test]
fn packed_training_matches_the_split_and_finite_differences() -> Result<()> {
    use super::{additive_mask, composed, drop_mask, packed_self_attention_train};
    for (b, l, h, d, p) in [(1, 5, 3, 4, 0.0), (2, 7, 4, 2, 0.2), (2, 64, 4, 16, 0.1)] {
        let e = h * d;
        let qkv = Tensor::randn(&[b, l, 3 * e]);
        let scale = 1.0 / (d as f32).sqrt();
        let m = Tensor::randn(&[b, h, l, l]);
        let w = Tensor::randn(&[b, l, e]);
        for mask in [None, Some(&m)] {
            let fused = with_grads(&[&qkv], &w, |t| {
                crate::manual_seed(23);
                packed_self_attention_train(&t[0], h, mask, p, scale)
            })?;
            let split = with_grads(&[&qkv], &w, |t| {
                crate::manual_seed(23);
                let am = additive_mask(mask, &t[0], &[b, h], l, l)?;
                let drop = drop_mask(p, &[b, h, l, l], &t[0].device())?;
                let c = t[0].chunk(3, -1)?;
                let heads = |t: &Tensor| t.reshape(&[b, l, h, d])?.permute(&[0, 2, 1, 3]);
                composed(
                    &heads(&c[0])?,
                    &heads(&c[1])?,
                    &heads(&c[2])?,
                    am,
                    drop,
                    false,
                    scale,
                )?
                .permute(&[0, 2, 1, 3])?
                .reshape(&[b, l, e])
            })?;
            for (i, (x, y)) in fused.iter().zip(&split).enumerate() {
                close(&format!("packed {b} {l} {h} {d} {p} #{i}"), x, y, 1e-4)?;
            }
        }
    }
    let m = Tensor::randn(&[2, 2, 3, 3]);
    check_grad(&[&[2, 3, 12]], |t| {
        crate::manual_seed(29);
        packed_self_attention_train(&t[0], 2, Some(&m), 0.25, 0.5)
    })?;
    check_grad(&[&[2, 3, 4], &[2, 5, 4], &[2, 5, 3]], |t| {
        crate::manual_seed(31);
        sdpa(&t[0], &t[1], &t[2], None, 0.4, false, None)
    })?;
    Ok(())
}
