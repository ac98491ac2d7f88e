//! Tests of gradient clipping against PyTorch (tests/fixtures/trainops/clip.safetensors,
//! made by tools/make_trainops_fixtures.py) and by hand.

// `&[p.clone()]` reads as "these parameters" at every call site
#![allow(clippy::cloned_ref_to_slice_refs)]

use super::{clip_grad_norm, clip_grad_value};
use crate::ops::testing::{assert_close, fixture_file, load};
use crate::{Error, Param, Result, Tensor};

fn fixtures() -> Result<Vec<u8>> {
    fixture_file("trainops/clip.safetensors")
}

/// Three parameters holding the fixture's gradients.
fn params(st: &safetensors::SafeTensors<'_>) -> Result<Vec<Param>> {
    (0..3)
        .map(|k| {
            let g = load(st, &format!("grads.{k}"))?;
            let p = Param::new(g.zeros_like()?)?;
            p.set_grad(Some(g));
            Ok(p)
        })
        .collect()
}

fn grad(p: &Param) -> Result<Tensor> {
    p.grad().ok_or_else(|| Error::MissingKey {
        container: "parameter".into(),
        key: "grad".into(),
    })
}

#[test]
fn clip_grad_norm_matches_pytorch() -> Result<()> {
    let bytes = fixtures()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
        path: "clip fixtures".into(),
        msg: e.to_string(),
    })?;
    let cases = [
        ("norm2", 1.0, 2.0),
        ("norm2_no_clip", 100.0, 2.0),
        ("norm_inf", 0.5, f64::INFINITY),
        ("norm1", 2.0, 1.0),
        ("norm3_5", 0.7, 3.5),
    ];
    for (name, max_norm, norm_type) in cases {
        let ps = params(&st)?;
        // a parameter listed twice (tied) counts once
        let listed = [ps.clone(), vec![ps[0].clone()]].concat();
        let total = clip_grad_norm(&listed, max_norm, norm_type, true)?;
        let want = load(&st, &format!("{name}.total"))?.item()? as f64;
        assert!(
            (total - want).abs() <= 1e-5 * want.abs(),
            "{name}: {total} vs {want}"
        );
        for (k, p) in ps.iter().enumerate() {
            let w = load(&st, &format!("{name}.grad{k}"))?;
            assert_close(&format!("{name}.grad{k}"), &grad(p)?, &w)?;
        }
    }
    let ps = params(&st)?;
    clip_grad_value(&ps, 0.5)?;
    for (k, p) in ps.iter().enumerate() {
        assert_close(
            &format!("value.grad{k}"),
            &grad(p)?,
            &load(&st, &format!("value.grad{k}"))?,
        )?;
    }
    Ok(())
}

#[test]
fn hand_derived_and_edge_cases() -> Result<()> {
    // grads (3, 4) and (0): norm 5; max_norm 1 scales by 1 / (5 + 1e-6)
    let a = Param::new(Tensor::zeros(&[2]))?;
    let b = Param::new(Tensor::zeros(&[1]))?;
    let none = Param::new(Tensor::zeros(&[1]))?; // no gradient: skipped
    a.set_grad(Some(Tensor::from_vec(vec![3.0f32, 4.0], &[2])?));
    b.set_grad(Some(Tensor::from_vec(vec![0.0f32], &[1])?));
    let held = grad(&a)?; // another handle: the clip must not write through it
    let total = clip_grad_norm(&[a.clone(), b.clone(), none.clone()], 1.0, 2.0, false)?;
    assert!((total - 5.0).abs() < 1e-6);
    let g = grad(&a)?.to_vec::<f32>()?;
    assert!(
        (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
        "{g:?}"
    );
    assert_eq!(held.to_vec::<f32>()?, vec![3.0, 4.0]);
    assert!(none.grad().is_none());
    // p = 0 counts nonzeros; no gradient at all gives 0
    assert_eq!(
        clip_grad_norm(&[a.clone(), b.clone()], 10.0, 0.0, false)?,
        2.0
    );
    assert_eq!(clip_grad_norm(&[none.clone()], 1.0, 2.0, false)?, 0.0);
    Ok(())
}

#[test]
fn non_finite_norms_and_bad_arguments() -> Result<()> {
    let a = Param::new(Tensor::zeros(&[2]))?;
    a.set_grad(Some(Tensor::from_vec(vec![f32::INFINITY, 1.0], &[2])?));
    let e = clip_grad_norm(&[a.clone()], 1.0, 2.0, true);
    let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("clip_grad_norm") && msg.contains("non-finite"),
        "{msg}"
    );
    assert_eq!(grad(&a)?.to_vec::<f32>()?, vec![f32::INFINITY, 1.0]);
    // without the check, PyTorch's arithmetic: coef = 1 / inf = 0, inf * 0 = NaN
    let t = clip_grad_norm(&[a.clone()], 1.0, 2.0, false)?;
    assert!(t.is_infinite());
    let g = grad(&a)?.to_vec::<f32>()?;
    assert!(g[0].is_nan() && g[1] == 0.0, "{g:?}");
    assert!(clip_grad_norm(&[a.clone()], 1.0, -1.0, false).is_err());
    assert!(clip_grad_norm(&[a.clone()], f64::NAN, 2.0, false).is_err());
    assert!(clip_grad_value(&[a.clone()], -1.0).is_err());
    assert!(clip_grad_value(&[a], f64::NAN).is_err());
    Ok(())
}

#[test]
fn gradients_add_up_until_zero_grad() -> Result<()> {
    // PyTorch's accumulation: backward adds into .grad; zero_grad (set_to_none) clears
    use crate::{Forward, Linear, ModuleExt};
    let net = Linear::new(3, 2);
    let (x1, x2) = (Tensor::randn(&[4, 3]), Tensor::randn(&[2, 3]));
    let grads_of = |x: &Tensor| -> Result<Vec<Vec<f32>>> {
        net.zero_grad();
        net.forward(x)?.square()?.sum()?.backward()?;
        net.parameters()
            .iter()
            .map(|p| grad(p)?.to_vec::<f32>())
            .collect()
    };
    let (g1, g2) = (grads_of(&x1)?, grads_of(&x2)?);
    net.zero_grad();
    assert!(net.parameters().iter().all(|p| p.grad().is_none()));
    for x in [&x1, &x2] {
        net.forward(x)?.square()?.sum()?.backward()?;
    }
    for (k, p) in net.parameters().iter().enumerate() {
        let g = grad(p)?.to_vec::<f32>()?;
        for (i, v) in g.iter().enumerate() {
            let want = g1[k][i] + g2[k][i];
            assert!(
                (v - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{v} vs {want}"
            );
        }
    }
    // clipping the accumulated gradients sees their sum
    let total = clip_grad_norm(&net.parameters(), f64::INFINITY, 1.0, true)?;
    let want: f32 = g1
        .iter()
        .zip(&g2)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x + y).abs()))
        .sum();
    assert!((total - f64::from(want)).abs() <= 1e-4 * f64::from(want));
    Ok(())
}
