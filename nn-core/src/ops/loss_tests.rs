//! Tests of the losses in `loss_class`, `loss_binary` and `loss_regression`: values and
//! gradients against PyTorch (tests/fixtures/losses, made by tools/make_loss_fixtures.py),
//! finite differences, hand-derived cases and bad input.

use super::testing::{assert_close, check_grad, check_grad_positive, fixture_file, load};
use crate::functional as F;
use crate::{Error, Reduction, Result, Tensor};
use Reduction::{BatchMean, Mean, None as Each, Sum};

/// The non-differentiable arguments of a fixture case.
struct Extra<'a> {
    st: &'a safetensors::SafeTensors<'a>,
    name: &'a str,
}

impl Extra<'_> {
    fn get(&self, key: &str) -> Result<Tensor> {
        load(self.st, &format!("{}.{key}", self.name))
    }
    fn opt(&self, key: &str) -> Option<Tensor> {
        self.get(key).ok()
    }
}

/// Runs `f` on the fixture case `name`; its value and every input gradient must equal
/// PyTorch's.
fn case(name: &str, f: impl Fn(&[Tensor], &Extra<'_>) -> Result<Tensor>) -> Result<()> {
    let bytes = fixture_file("losses/losses.safetensors")?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
        path: "loss fixtures".into(),
        msg: e.to_string(),
    })?;
    let mut inputs = Vec::new();
    while let Ok(t) = load(&st, &format!("{name}.in{}", inputs.len())) {
        inputs.push(t.with_requires_grad(true));
    }
    let out = f(&inputs, &Extra { st: &st, name })?;
    assert_close(
        &format!("{name}.out"),
        &out,
        &load(&st, &format!("{name}.out"))?,
    )?;
    out.backward_with(&load(&st, &format!("{name}.upstream"))?)?;
    for (k, x) in inputs.iter().enumerate() {
        let want = load(&st, &format!("{name}.grad{k}"))?;
        let got = x.grad().ok_or_else(|| Error::MissingKey {
            container: format!("{name} gradients"),
            key: format!("input {k}"),
        })?;
        assert_close(&format!("{name}.grad{k}"), &got, &want)?;
    }
    Ok(())
}

#[test]
fn cross_entropy_against_pytorch() -> Result<()> {
    let ce = |r: Reduction, ignore: i64, ls: f32| {
        move |x: &[Tensor], e: &Extra<'_>| {
            F::cross_entropy(
                &x[0],
                &e.get("target")?,
                e.opt("weight").as_ref(),
                ignore,
                r,
                ls,
            )
        }
    };
    case("ce_plain", ce(Mean, -100, 0.0))?;
    case("ce_weight", ce(Mean, -100, 0.0))?;
    case("ce_ignore", ce(Mean, -100, 0.0))?;
    case("ce_ignore_custom_weight", ce(Mean, 2, 0.0))?;
    case("ce_ls", ce(Mean, -100, 0.1))?;
    case("ce_ls_weight_ignore", ce(Mean, -100, 0.2))?;
    case("ce_ls_weight_ignore_sum", ce(Sum, -100, 0.2))?;
    case("ce_ls_weight_ignore_none", ce(Each, -100, 0.2))?;
    case("ce_3d_weight_ignore", ce(Mean, -100, 0.1))?;
    case("ce_3d_none", ce(Each, -100, 0.0))?;
    case("ce_1d", ce(Mean, -100, 0.0))?;
    // probability targets: the target is input 1 (differentiable)
    let soft = |r: Reduction, ls: f32| {
        move |x: &[Tensor], e: &Extra<'_>| {
            F::cross_entropy(&x[0], &x[1], e.opt("weight").as_ref(), -100, r, ls)
        }
    };
    case("ce_probs", soft(Mean, 0.0))?;
    case("ce_probs_weight_ls", soft(Mean, 0.1))?;
    case("ce_probs_3d_none", soft(Each, 0.0))?;
    Ok(())
}

#[test]
fn nll_loss_against_pytorch() -> Result<()> {
    let nll = |r: Reduction| {
        move |x: &[Tensor], e: &Extra<'_>| {
            F::nll_loss(&x[0], &e.get("target")?, e.opt("weight").as_ref(), -100, r)
        }
    };
    case("nll_weight_ignore", nll(Mean))?;
    case("nll_weight_ignore_sum", nll(Sum))?;
    case("nll_3d_none", nll(Each))?;
    Ok(())
}

#[test]
fn binary_cross_entropy_against_pytorch() -> Result<()> {
    let bce = |r: Reduction| {
        move |x: &[Tensor], e: &Extra<'_>| {
            F::binary_cross_entropy(&x[0], &x[1], e.opt("weight").as_ref(), r)
        }
    };
    case("bce", bce(Mean))?;
    case("bce_weight_sum", bce(Sum))?;
    case("bce_none", bce(Each))?;
    let logits = |r: Reduction| {
        move |x: &[Tensor], e: &Extra<'_>| {
            let (w, pw) = (e.opt("weight"), e.opt("pos_weight"));
            F::binary_cross_entropy_with_logits(&x[0], &x[1], w.as_ref(), pw.as_ref(), r)
        }
    };
    case("bce_logits", logits(Mean))?;
    case("bce_logits_pos_weight", logits(Mean))?;
    case("bce_logits_none", logits(Each))?;
    Ok(())
}

#[test]
fn regression_losses_against_pytorch() -> Result<()> {
    case("l1", |x, _| F::l1_loss(&x[0], &x[1], Mean))?;
    case("l1_none", |x, _| F::l1_loss(&x[0], &x[1], Each))?;
    case("mse", |x, _| F::mse_loss(&x[0], &x[1], Mean))?;
    case("mse_sum", |x, _| F::mse_loss(&x[0], &x[1], Sum))?;
    case("smooth_l1", |x, _| {
        F::smooth_l1_loss(&x[0], &x[1], Mean, 0.5)
    })?;
    case("smooth_l1_none", |x, _| {
        F::smooth_l1_loss(&x[0], &x[1], Each, 1.0)
    })?;
    case("huber", |x, _| F::huber_loss(&x[0], &x[1], Mean, 0.7))?;
    case("huber_sum", |x, _| F::huber_loss(&x[0], &x[1], Sum, 1.5))?;
    case("kl_batchmean", |x, _| {
        F::kl_div(&x[0], &x[1], BatchMean, false)
    })?;
    case("kl_mean", |x, _| F::kl_div(&x[0], &x[1], Mean, false))?;
    case("kl_none_zero_target", |x, _| {
        F::kl_div(&x[0], &x[1], Each, false)
    })?;
    case("kl_log_target_sum", |x, _| {
        F::kl_div(&x[0], &x[1], Sum, true)
    })?;
    case("cosine", |x, e| {
        F::cosine_embedding_loss(&x[0], &x[1], &e.get("target")?, 0.1, Mean)
    })?;
    case("cosine_none", |x, e| {
        F::cosine_embedding_loss(&x[0], &x[1], &e.get("target")?, -0.2, Each)
    })?;
    Ok(())
}

#[test]
fn grads_finite_difference() -> Result<()> {
    let y = Tensor::from_vec(vec![0i64, 4, -100, 2], &[4])?;
    let w = Tensor::from_vec(vec![0.5f32, 1.0, 2.0, 1.5, 0.7], &[5])?;
    check_grad(&[&[4, 5]], |x| {
        F::cross_entropy(&x[0], &y, Some(&w), -100, Mean, 0.2)
    })?;
    check_grad(&[&[4, 5], &[4, 5]], |x| {
        F::cross_entropy(&x[0], &x[1].softmax(-1)?, Some(&w), -100, Sum, 0.1)
    })?;
    check_grad(&[&[4, 5]], |x| F::nll_loss(&x[0], &y, Some(&w), -100, Each))?;
    let y3 = Tensor::from_vec(vec![0i64, 3, 1, 2, -100, 1], &[2, 3])?;
    check_grad(&[&[2, 4, 3]], |x| {
        F::cross_entropy(&x[0], &y3, None, -100, Mean, 0.0)
    })?;
    check_grad(&[&[3, 4], &[3, 4]], |x| {
        F::binary_cross_entropy(&x[0].sigmoid()?, &x[1].sigmoid()?, None, Mean)
    })?;
    let pw = Tensor::from_vec(vec![0.5f32, 2.0, 3.0, 1.0], &[4])?;
    check_grad(&[&[3, 4], &[3, 4]], |x| {
        F::binary_cross_entropy_with_logits(&x[0], &x[1].sigmoid()?, None, Some(&pw), Sum)
    })?;
    check_grad(&[&[3, 4], &[3, 4]], |x| F::l1_loss(&x[0], &x[1], Each))?;
    check_grad(&[&[3, 4], &[3, 4]], |x| F::mse_loss(&x[0], &x[1], Sum))?;
    check_grad(&[&[3, 4], &[3, 4]], |x| {
        F::smooth_l1_loss(&x[0], &x[1], Each, 0.8)
    })?;
    check_grad(&[&[3, 4], &[3, 4]], |x| {
        F::huber_loss(&x[0], &x[1], Each, 0.8)
    })?;
    check_grad_positive(&[&[3, 4], &[3, 4]], |x| {
        F::kl_div(&x[0].log_softmax(-1)?, &x[1].softmax(-1)?, BatchMean, false)
    })?;
    check_grad(&[&[3, 4], &[3, 4]], |x| {
        F::kl_div(&x[0].log_softmax(-1)?, &x[1].log_softmax(-1)?, Each, true)
    })?;
    let yc = Tensor::from_vec(vec![1.0f32, -1.0, -1.0], &[3])?;
    check_grad(&[&[3, 4], &[3, 4]], |x| {
        F::cosine_embedding_loss(&x[0], &x[1], &yc, -0.5, Each)
    })?;
    Ok(())
}

#[test]
fn hand_derived_cases() -> Result<()> {
    // uniform logits over C = 4 with smoothing 0.1 and weights w: every class has
    // lp = -ln 4, so nll_n = w[y_n] ln 4, smooth_n = (sum w) ln 4 and the weighted mean
    // = ((1 - ls) sum w[y] + ls / C * N sum w) ln 4 / sum w[y]
    let x = Tensor::zeros(&[2, 4]);
    let y = Tensor::from_vec(vec![0i64, 3], &[2])?;
    let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4])?;
    let l = F::cross_entropy(&x, &y, Some(&w), -100, Mean, 0.1)?.item()?;
    let ln4 = 4f32.ln();
    let want = (0.9 * 5.0 + 0.1 / 4.0 * 2.0 * 10.0) * ln4 / 5.0;
    assert!((l - want).abs() < 1e-6, "{l} vs {want}");
    // every target ignored: 0 / 0, as PyTorch
    let all = Tensor::from_vec(vec![-100i64, -100], &[2])?;
    assert!(F::cross_entropy(&x, &all, None, -100, Mean, 0.0)?
        .item()?
        .is_nan());
    assert_eq!(
        F::cross_entropy(&x, &all, None, -100, Sum, 0.0)?.item()?,
        0.0
    );
    // the plain case takes the fused path and equals the method
    let z = Tensor::randn(&[3, 4]);
    let t = Tensor::from_vec(vec![1i64, 0, 3], &[3])?;
    let a = F::cross_entropy(&z, &t, None, -100, Mean, 0.0)?.item()?;
    let b = F::cross_entropy(&z, &t, None, -100, Sum, 0.0)?.item()? / 3.0;
    assert!((a - z.cross_entropy(&t)?.item()?).abs() < 1e-6 && (a - b).abs() < 1e-5);
    // bce at p = 0 and 1 stays finite (log clamped at -100), gradient PyTorch's
    let p = Tensor::from_vec(vec![0.0f32, 1.0], &[2])?.with_requires_grad(true);
    let tt = Tensor::from_vec(vec![1.0f32, 1.0], &[2])?;
    let l = F::binary_cross_entropy(&p, &tt, None, Sum)?;
    assert_eq!(l.item()?, 100.0);
    l.backward()?;
    let g = p
        .grad()
        .map(|g| g.to_vec::<f32>())
        .transpose()?
        .unwrap_or_default();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    Ok(())
}

#[test]
fn bad_input_is_an_error_naming_the_loss() -> Result<()> {
    let x = Tensor::zeros(&[3, 4]);
    let msg = |r: Result<Tensor>| r.err().map(|e| e.to_string()).unwrap_or_default();
    let y = Tensor::from_vec(vec![0i64, 4, 1], &[3])?;
    let m = msg(F::cross_entropy(&x, &y, None, -100, Mean, 0.0));
    assert!(m.contains("cross_entropy") && m.contains('4'), "{m}");
    let short = Tensor::from_vec(vec![0i64, 1], &[2])?;
    let m = msg(F::nll_loss(&x, &short, None, -100, Mean));
    assert!(
        m.contains("nll_loss") && m.contains("[3, 4]") && m.contains("[2]"),
        "{m}"
    );
    let w3 = Tensor::ones(&[3]);
    assert!(F::cross_entropy(&x, &y.clamp_max(3.0)?, Some(&w3), -100, Mean, 0.0).is_err());
    assert!(F::cross_entropy(&x, &Tensor::zeros(&[3, 5]), None, -100, Mean, 0.0).is_err());
    assert!(F::cross_entropy(&x, &short, None, -100, Mean, 1.5).is_err());
    let p = Tensor::full(&[3, 4], 1.5);
    let m = msg(F::binary_cross_entropy(
        &p,
        &Tensor::zeros(&[3, 4]),
        None,
        Mean,
    ));
    assert!(
        m.contains("binary_cross_entropy") && m.contains("between 0 and 1"),
        "{m}"
    );
    let nan = Tensor::full(&[3, 4], f32::NAN);
    assert!(F::binary_cross_entropy(&nan, &Tensor::zeros(&[3, 4]), None, Mean).is_err());
    let m = msg(F::l1_loss(&x, &Tensor::zeros(&[4]), Mean));
    assert!(
        m.contains("l1_loss") && m.contains("[3, 4]") && m.contains("[4]"),
        "{m}"
    );
    assert!(F::mse_loss(&x, &x, BatchMean).is_err());
    assert!(F::smooth_l1_loss(&x, &x, Mean, -1.0).is_err());
    assert!(F::huber_loss(&x, &x, Mean, 0.0).is_err());
    let pw = Tensor::ones(&[5]);
    assert!(F::binary_cross_entropy_with_logits(&x, &x, None, Some(&pw), Mean).is_err());
    Ok(())
}
