//! Device cases of the training toolkit: clamp, masks and logical ops, the losses of
//! `nn::functional`, gradient clipping.

use super::{grads_on, same_on, seeded_randn};
use nn::{functional as F, utils, Device, Param, Reduction, Result, Tensor};

/// `clamp` and its one-sided forms, comparisons, logical ops and masked fills on `dev`
/// equal the CPU's.
pub(crate) fn clamp_and_masks(dev: &Device) -> Result<()> {
    let x = seeded_randn(40, &[3, 5]);
    grads_on(dev, "clamp", &[x.clone()], |v| v[0].clamp(-0.5, 0.5))?;
    grads_on(dev, "clamp_min", &[x.clone()], |v| v[0].clamp_min(0.1))?;
    grads_on(dev, "clamp_max", &[x.clone()], |v| v[0].clamp_max(0.1))?;
    grads_on(dev, "softplus", &[x.clone()], |v| v[0].softplus())?;
    let y = seeded_randn(41, &[5]);
    same_on(dev, "logical ops", &[x.clone(), y.clone()], |v| {
        let a = v[0].gt_scalar(0.0)?;
        let b = v[1].lt_scalar(0.3)?;
        ((&a & &b)? | (!&a)?)?.logical_xor(&b)
    })?;
    grads_on(dev, "masked_fill with a mask", &[x, y], |v| {
        v[0].masked_fill(&v[1].gt_scalar(0.0)?.logical_not()?, -1.0)
    })?;
    Ok(())
}

/// Every loss of `nn::functional`, value and gradients, on `dev` equals the CPU's.
pub(crate) fn functional_losses(dev: &Device) -> Result<()> {
    let x = seeded_randn(42, &[4, 5]);
    let y = Tensor::from_vec(vec![0i64, 4, -100, 2], &[4])?;
    let w = seeded_randn(43, &[5]).abs()?;
    let p = seeded_randn(44, &[4, 5]);
    let on = |t: &Tensor, v: &Tensor| t.to_device(&v.device());
    grads_on(dev, "cross_entropy", &[x.clone(), w.clone()], |v| {
        F::cross_entropy(
            &v[0],
            &on(&y, &v[0])?,
            Some(&v[1].detach()),
            -100,
            Reduction::Mean,
            0.1,
        )
    })?;
    grads_on(dev, "cross_entropy probs", &[x.clone(), p.clone()], |v| {
        F::cross_entropy(&v[0], &v[1].softmax(-1)?, None, -100, Reduction::Sum, 0.0)
    })?;
    grads_on(dev, "nll_loss", &[x.clone()], |v| {
        F::nll_loss(
            &v[0].log_softmax(-1)?,
            &on(&y, &v[0])?,
            None,
            -100,
            Reduction::None,
        )
    })?;
    grads_on(dev, "bce", &[x.clone(), p.clone()], |v| {
        F::binary_cross_entropy(&v[0].sigmoid()?, &v[1].sigmoid()?, None, Reduction::Mean)
    })?;
    grads_on(dev, "bce_with_logits", &[x.clone(), p.clone(), w], |v| {
        let pw = v[2].detach();
        F::binary_cross_entropy_with_logits(
            &v[0],
            &v[1].sigmoid()?,
            None,
            Some(&pw),
            Reduction::Mean,
        )
    })?;
    grads_on(dev, "l1", &[x.clone(), p.clone()], |v| {
        F::l1_loss(&v[0], &v[1], Reduction::Mean)
    })?;
    grads_on(dev, "smooth_l1", &[x.clone(), p.clone()], |v| {
        F::smooth_l1_loss(&v[0], &v[1], Reduction::None, 0.5)
    })?;
    grads_on(dev, "huber", &[x.clone(), p.clone()], |v| {
        F::huber_loss(&v[0], &v[1], Reduction::Sum, 0.5)
    })?;
    let yc = Tensor::from_vec(vec![1.0f32, -1.0, -1.0, 1.0], &[4])?;
    grads_on(dev, "cosine_embedding", &[x.clone(), p.clone()], |v| {
        F::cosine_embedding_loss(
            &v[0],
            &v[1],
            &yc.to_device(&v[0].device())?,
            0.1,
            Reduction::Sum,
        )
    })?;
    grads_on(dev, "kl_div", &[x, p], |v| {
        F::kl_div(
            &v[0].log_softmax(-1)?,
            &v[1].softmax(-1)?,
            Reduction::BatchMean,
            false,
        )
    })?;
    Ok(())
}

/// `clip_grad_norm` (2, inf, p) and `clip_grad_value` on gradients living on `dev` give
/// the CPU's totals and gradients.
pub(crate) fn clip_grads(dev: &Device) -> Result<()> {
    let make = |d: &Device| -> Result<Vec<Param>> {
        (0..3u64)
            .map(|k| {
                let g = seeded_randn(50 + k, &[3 + k as usize, 2]).mul_scalar(2.0)?;
                let p = Param::new(Tensor::zeros(g.shape()).to_device(d)?)?;
                p.set_grad(Some(g.to_device(d)?));
                Ok(p)
            })
            .collect()
    };
    for norm in [2.0, f64::INFINITY, 3.0] {
        let (cpu, other) = (make(&Device::Cpu)?, make(dev)?);
        let a = utils::clip_grad_norm(&cpu, 1.0, norm, true)?;
        let b = utils::clip_grad_norm(&other, 1.0, norm, true)?;
        assert!(
            (a - b).abs() <= 1e-5 * a,
            "norm {norm}: {b} on {dev} vs {a}"
        );
        for (p, q) in cpu.iter().zip(&other) {
            let (g, h) = (p.grad(), q.grad());
            let (Some(g), Some(h)) = (g, h) else {
                panic!("a gradient went missing");
            };
            super::assert_same(&format!("clipped grad, norm {norm}"), dev, &h, &g)?;
        }
    }
    let (cpu, other) = (make(&Device::Cpu)?, make(dev)?);
    utils::clip_grad_value(&cpu, 0.5)?;
    utils::clip_grad_value(&other, 0.5)?;
    for (p, q) in cpu.iter().zip(&other) {
        if let (Some(g), Some(h)) = (p.grad(), q.grad()) {
            super::assert_same("clip_grad_value", dev, &h, &g)?;
        }
    }
    Ok(())
}
