//! Optimizer tests: hand-computed updates, the in-place and tensor-op paths agreeing,
//! tied parameters, and exact state-dict round trips.

use super::{
    Adagrad, AdagradConfig, Adam, AdamConfig, AdamWConfig, Optimizer, RmsProp, RmsPropConfig, Sgd,
    SgdConfig,
};
use crate::{Param, Result, Tensor};

fn values(p: &Param) -> Result<Vec<f32>> {
    p.data()?.to_vec::<f32>()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn set_grad(p: &Param, g: &[f32]) -> Result<()> {
    p.set_grad(Some(Tensor::from_slice(g, &[g.len()])?));
    Ok(())
}

#[test]
fn sgd_momentum_hand_computed() -> Result<()> {
    // p0 = 1, g = 1 each step, lr 0.1, momentum 0.9:
    // step 1: buf = 1, p = 0.9; step 2: buf = 0.9 + 1 = 1.9, p = 0.9 - 0.19 = 0.71
    let p = Param::new(Tensor::ones(&[2]))?;
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let mut opt = Sgd::new(vec![p.clone()], cfg)?;
    for _ in 0..2 {
        set_grad(&p, &[1.0, -1.0])?;
        opt.step()?;
    }
    assert!(
        close(&values(&p)?, &[0.71, 1.29], 1e-6),
        "{:?}",
        values(&p)?
    );
    Ok(())
}

#[test]
fn sgd_nesterov_and_weight_decay_hand_computed() -> Result<()> {
    // p0 = 1, grad 1, wd 0.5 -> g = 1.5; buf = 1.5; nesterov g = 1.5 + 0.9*1.5 = 2.85;
    // p = 1 - 0.1 * 2.85 = 0.715
    let p = Param::new(Tensor::ones(&[1]))?;
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.5,
        nesterov: true,
        ..Default::default()
    };
    let mut opt = Sgd::new(vec![p.clone()], cfg)?;
    set_grad(&p, &[1.0])?;
    opt.step()?;
    assert!(close(&values(&p)?, &[0.715], 1e-6), "{:?}", values(&p)?);
    assert!(Sgd::new(
        vec![],
        SgdConfig {
            nesterov: true,
            ..Default::default()
        }
    )
    .is_err());
    Ok(())
}

#[test]
fn adam_two_steps_hand_computed() -> Result<()> {
    // With a constant gradient g, m_t = (1 - b1^t) g and v_t = (1 - b2^t) g^2, so after
    // bias correction m_hat = g, sqrt(v_hat) = |g| and each step moves lr * sign(g)
    // (up to eps). Step 1 by hand for g = 0.5, lr 0.1: m = 0.05, v = 0.00025,
    // step_size = 0.1 / 0.1 = 1, denom = sqrt(0.00025) / sqrt(0.001) = 0.5, p = 1 - 0.1.
    // Step 2: m = 0.095, v = 0.00049975, step_size = 0.1 / 0.19, denom = 0.5,
    // p = 0.9 - (0.1 / 0.19) * 0.095 / 0.5 = 0.8.
    let p = Param::new(Tensor::ones(&[3]))?;
    let mut opt = Adam::with_lr(vec![p.clone()], 0.1)?;
    let mut seen = Vec::new();
    for _ in 0..2 {
        set_grad(&p, &[0.5, -2.0, 1e-3])?;
        opt.step()?;
        seen.push(values(&p)?);
    }
    assert!(close(&seen[0], &[0.9, 1.1, 0.9], 1e-5), "{seen:?}");
    assert!(close(&seen[1], &[0.8, 1.2, 0.8], 1e-5), "{seen:?}");
    Ok(())
}

#[test]
fn adam_weight_decay_hand_computed() -> Result<()> {
    // wd 1: g = grad + p = 0 + 2 = 2 at p = 2; first step moves by lr regardless of |g|
    let p = Param::new(Tensor::full(&[1], 2.0))?;
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: 1.0,
        ..Default::default()
    };
    let mut opt = Adam::new(vec![p.clone()], cfg)?;
    set_grad(&p, &[0.0])?;
    opt.step()?;
    assert!(close(&values(&p)?, &[1.99], 1e-6), "{:?}", values(&p)?);
    Ok(())
}

/// Builds an optimizer over the given parameters.
type Maker = dyn Fn(Vec<Param>) -> Result<Box<dyn Optimizer>>;

/// Runs `steps` updates of `make`'s optimizer on a fresh param, optionally keeping a
/// handle on the data so the in-place path cannot be taken.
fn run(make: &Maker, hold: bool) -> Result<Vec<f32>> {
    let p = Param::new(Tensor::from_vec(vec![0.3f32, -1.2, 2.0, 0.0], &[2, 2])?)?;
    let mut opt = make(vec![p.clone()])?;
    let mut held = Vec::new();
    for s in 0..4 {
        if hold {
            held.push(p.data()?);
        }
        let g = Tensor::from_vec(vec![0.1f32 * s as f32, -0.5, 1.5, 0.25], &[2, 2])?;
        p.set_grad(Some(g));
        opt.step()?;
    }
    values(&p)
}

#[test]
fn in_place_and_tensor_paths_agree() -> Result<()> {
    let makers: Vec<Box<Maker>> = vec![
        Box::new(|ps| {
            let cfg = SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                dampening: 0.1,
                weight_decay: 0.01,
                nesterov: false,
                maximize: false,
            };
            Ok(Box::new(Sgd::new(ps, cfg)?) as Box<dyn Optimizer>)
        }),
        Box::new(|ps| Ok(Box::new(Sgd::with_lr(ps, 0.1)?) as Box<dyn Optimizer>)),
        Box::new(|ps| {
            let cfg = AdamConfig {
                lr: 0.05,
                weight_decay: 0.1,
                ..Default::default()
            };
            Ok(Box::new(Adam::new(ps, cfg)?) as Box<dyn Optimizer>)
        }),
    ];
    for make in &makers {
        let fast = run(make.as_ref(), false)?;
        let slow = run(make.as_ref(), true)?;
        assert!(close(&fast, &slow, 1e-6), "{fast:?} vs {slow:?}");
    }
    Ok(())
}

#[test]
fn in_place_update_never_changes_a_held_tensor() -> Result<()> {
    let p = Param::new(Tensor::ones(&[2]))?;
    let before = p.data()?;
    let mut opt = Sgd::with_lr(vec![p.clone()], 0.5)?;
    set_grad(&p, &[1.0, 1.0])?;
    opt.step()?;
    assert_eq!(before.to_vec::<f32>()?, vec![1.0, 1.0]);
    assert_eq!(values(&p)?, vec![0.5, 0.5]);
    Ok(())
}

#[test]
fn tied_params_are_updated_once() -> Result<()> {
    let p = Param::new(Tensor::ones(&[1]))?;
    let mut opt = Sgd::with_lr(vec![p.clone(), p.clone()], 0.5)?;
    assert_eq!(opt.params().len(), 1);
    set_grad(&p, &[1.0])?;
    opt.step()?;
    assert_eq!(values(&p)?, vec![0.5]);
    opt.zero_grad();
    assert!(p.grad().is_none());
    Ok(())
}

/// Saves after 2 steps, restores into a fresh optimizer over a copy of the params, and
/// checks both take the identical third step.
fn round_trip(make: &Maker) -> Result<()> {
    let a = Param::new(Tensor::from_vec(vec![0.5f32, -0.5, 1.0], &[3])?)?;
    let b = Param::new(Tensor::from_vec(vec![2.0f32], &[1])?)?;
    let mut opt = make(vec![a.clone(), b.clone()])?;
    for s in 0..2 {
        set_grad(&a, &[0.3, -0.1 * s as f32, 0.7])?;
        // `b` gets a gradient only at the second step
        if s == 1 {
            set_grad(&b, &[1.0])?;
        }
        opt.step()?;
    }
    let sd = opt.state_dict()?;
    let (a2, b2) = (a.deep_copy(), b.deep_copy());
    let mut opt2 = make(vec![a2.clone(), b2.clone()])?;
    opt2.load_state_dict(&sd)?;
    for (p, g) in [(&a, [0.2f32, 0.2, -0.4]), (&a2, [0.2, 0.2, -0.4])] {
        set_grad(p, &g)?;
    }
    set_grad(&b, &[0.5])?;
    set_grad(&b2, &[0.5])?;
    opt.step()?;
    opt2.step()?;
    assert_eq!(values(&a)?, values(&a2)?);
    assert_eq!(values(&b)?, values(&b2)?);
    // the snapshot did not move with the steps
    let sd2 = opt.state_dict()?;
    assert_eq!(sd.keys().count(), sd2.keys().count());
    // wrong shapes and unknown keys are reported together
    let mut bad = crate::StateDict::new();
    for (k, t) in sd.iter() {
        bad.insert(k, t.clone());
    }
    bad.insert("state.7.exp_avg", Tensor::zeros(&[3]));
    let e = opt2.load_state_dict(&bad).err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("state.7.exp_avg")),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn state_dict_round_trip_is_exact() -> Result<()> {
    round_trip(&|ps| {
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        };
        Ok(Box::new(Sgd::new(ps, cfg)?) as Box<dyn Optimizer>)
    })?;
    round_trip(&|ps| Ok(Box::new(Adam::with_lr(ps, 0.01)?) as Box<dyn Optimizer>))?;
    Ok(())
}

#[test]
fn shape_mismatch_in_state_names_the_parameter() -> Result<()> {
    let p = Param::new(Tensor::ones(&[2]))?;
    p.set_name("0.weight");
    let mut opt = Sgd::with_lr(vec![p], 0.1)?;
    let mut sd = crate::StateDict::new();
    sd.insert("state.0.momentum_buffer", Tensor::zeros(&[3]));
    let e = opt.load_state_dict(&sd).err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("0.weight")),
        "{e:?}"
    );
    Ok(())
}

/// Runs `steps` updates over three parameters (one with a gradient that skips a step, one
/// large enough for the fused update to split it over threads) with the fused path or
/// the tensor-op reference; returns the parameters' values.
fn run_fused_or_reference<O: Optimizer>(
    make: impl Fn(Vec<Param>) -> Result<O>,
    step: impl Fn(&mut O, bool) -> Result<()>,
    fused: bool,
) -> Result<Vec<Vec<f32>>> {
    let a = Param::new(Tensor::from_vec(
        vec![0.3f32, -1.2, 2.0, 0.0, 5.0, -0.01],
        &[2, 3],
    )?)?;
    let b = Param::new(Tensor::from_vec(vec![1.5f32, -0.25], &[2])?)?;
    // past the CPU's split threshold (2^18), with a ragged last chunk
    let n = (1 << 18) + 5;
    let wave = |k: f32| (0..n).map(move |i| ((i as f32) * 0.37 + k).sin());
    let c = Param::new(Tensor::from_vec(wave(0.0).collect(), &[n])?)?;
    let mut opt = make(vec![a.clone(), b.clone(), c.clone()])?;
    for s in 0..5 {
        let t = s as f32;
        let ga = vec![0.1 * t, -0.5, 1.5, 0.25 - t, 3.0, 1e-3];
        a.set_grad(Some(Tensor::from_vec(ga, &[2, 3])?));
        // `b` misses step 2: its own step count (Adam's bias correction) lags
        let gb = (s != 2).then(|| Tensor::from_vec(vec![t - 1.0, 0.75], &[2]));
        b.set_grad(gb.transpose()?);
        c.set_grad(Some(Tensor::from_vec(wave(t + 1.0).collect(), &[n])?));
        step(&mut opt, fused)?;
    }
    Ok(vec![values(&a)?, values(&b)?, values(&c)?])
}

#[test]
fn fused_updates_equal_the_tensor_op_reference_exactly() -> Result<()> {
    let sgd_cfgs = [
        SgdConfig::default(),
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 0.01,
            nesterov: false,
            maximize: true,
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.8,
            weight_decay: 0.2,
            nesterov: true,
            ..Default::default()
        },
    ];
    for cfg in sgd_cfgs {
        let make = |ps| Sgd::new(ps, cfg);
        let fused = run_fused_or_reference(make, |o, f| o.step_with(f), true)?;
        let reference = run_fused_or_reference(make, |o, f| o.step_with(f), false)?;
        assert_eq!(fused, reference, "SGD {cfg:?}");
    }
    let adam_cfgs = [
        AdamConfig::default(),
        AdamConfig {
            lr: 0.05,
            betas: (0.8, 0.99),
            eps: 1e-6,
            weight_decay: 0.1,
            ..Default::default()
        },
        AdamConfig {
            amsgrad: true,
            maximize: true,
            weight_decay: 0.05,
            ..Default::default()
        },
        AdamConfig::from(AdamWConfig {
            lr: 0.05,
            weight_decay: 0.1,
            ..Default::default()
        }),
        AdamConfig::from(AdamWConfig {
            amsgrad: true,
            ..Default::default()
        }),
    ];
    for cfg in adam_cfgs {
        let make = |ps| Adam::new(ps, cfg);
        let fused = run_fused_or_reference(make, |o, f| o.step_with(f), true)?;
        let reference = run_fused_or_reference(make, |o, f| o.step_with(f), false)?;
        assert_eq!(fused, reference, "Adam {cfg:?}");
    }
    for centered in [false, true] {
        for momentum in [0.0, 0.9] {
            let cfg = RmsPropConfig {
                centered,
                momentum,
                weight_decay: 0.01,
                maximize: momentum > 0.0,
                ..Default::default()
            };
            let make = |ps| RmsProp::new(ps, cfg);
            let fused = run_fused_or_reference(make, |o, f| o.step_with(f), true)?;
            let reference = run_fused_or_reference(make, |o, f| o.step_with(f), false)?;
            assert_eq!(fused, reference, "RMSprop {cfg:?}");
        }
    }
    let cfg = AdagradConfig {
        lr_decay: 0.1,
        weight_decay: 0.01,
        initial_accumulator_value: 0.1,
        ..Default::default()
    };
    let make = |ps| Adagrad::new(ps, cfg);
    let fused = run_fused_or_reference(make, |o, f| o.step_with(f), true)?;
    let reference = run_fused_or_reference(make, |o, f| o.step_with(f), false)?;
    assert_eq!(fused, reference, "Adagrad {cfg:?}");
    Ok(())
}

#[test]
fn fused_update_of_shared_data_copies_on_write() -> Result<()> {
    let p = Param::new(Tensor::from_vec(vec![1.0f32, 2.0], &[2])?)?;
    let held = p.data()?;
    let mut opt = Adam::with_lr(vec![p.clone()], 0.1)?;
    set_grad(&p, &[1.0, -1.0])?;
    opt.step()?;
    assert_eq!(held.to_vec::<f32>()?, vec![1.0, 2.0]);
    // Adam's first step moves every element by lr (sign of the gradient)
    assert!(close(&values(&p)?, &[0.9, 2.1], 1e-6), "{:?}", values(&p)?);
    // the copy is the data now: later steps update it in place, the held tensor stays
    set_grad(&p, &[1.0, -1.0])?;
    opt.step()?;
    assert_eq!(held.to_vec::<f32>()?, vec![1.0, 2.0]);
    Ok(())
}

/// The fused path really runs on the CPU (so the comparison above compares two paths):
/// the parameter's memory is updated where it is.
#[test]
fn fused_updates_write_the_parameter_memory_in_place() -> Result<()> {
    let addr = |p: &Param| -> Result<Option<usize>> { p.with_data_mut(|d| d.as_ptr() as usize) };
    {
        let fused = true;
        let p = Param::new(Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?)?;
        let q = Param::new(Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?)?;
        let mut sgd = Sgd::new(
            vec![p.clone()],
            SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            },
        )?;
        let mut adam = Adam::with_lr(vec![q.clone()], 0.1)?;
        let (p0, q0) = (addr(&p)?, addr(&q)?);
        assert!(p0.is_some() && q0.is_some());
        for _ in 0..2 {
            set_grad(&p, &[1.0, -1.0, 0.5])?;
            set_grad(&q, &[1.0, -1.0, 0.5])?;
            sgd.step_with(fused)?;
            adam.step_with(fused)?;
        }
        assert_eq!(addr(&p)?, p0, "SGD");
        assert_eq!(addr(&q)?, q0, "Adam");
    }
    Ok(())
}
#[test]
fn set_lr_rejects_nan_infinite_and_negative_rates() -> Result<()> {
    let p = Param::new(Tensor::ones(&[2]))?;
    let mut opts: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::with_lr(vec![p.clone()], 0.1)?),
        Box::new(Adam::with_lr(vec![p], 0.1)?),
    ];
    for opt in &mut opts {
        for bad in [f64::NAN, -0.5, f64::INFINITY] {
            let e = opt.set_lr(bad).err().map(|e| e.to_string());
            assert!(
                matches!(e.as_deref(), Some(m) if m.contains("set_lr: invalid lr")),
                "{e:?}"
            );
            assert_eq!(opt.lr(), 0.1, "a rejected rate leaves the old one");
        }
        opt.set_lr(0.0)?;
        opt.set_lr(0.25)?;
        assert_eq!(opt.lr(), 0.25);
    }
    Ok(())
}

#[test]
fn adam_step_counter_saturates_at_what_its_loader_accepts() -> Result<()> {
    let p = Param::new(Tensor::ones(&[2]))?;
    let mut opt = Adam::with_lr(vec![p.clone()], 0.01)?;
    set_grad(&p, &[0.1, 0.2])?;
    opt.step()?;
    // a state at the largest count an int64 entry holds
    let mut sd = crate::StateDict::new();
    for (k, t) in opt.state_dict()?.iter() {
        let t = if k.ends_with("step") {
            Tensor::from_vec(vec![i64::MAX], &[])?
        } else {
            t.clone()
        };
        sd.insert(k, t);
    }
    opt.load_state_dict(&sd)?;
    opt.step()?;
    let after = opt.state_dict()?;
    let v = after
        .get("state.0.step")
        .map(|t| t.to_vec::<i64>())
        .transpose()?;
    assert_eq!(v, Some(vec![i64::MAX]));
    // what it saves, it loads
    let mut twin = Adam::with_lr(vec![p.clone()], 0.01)?;
    twin.load_state_dict(&after)?;
    assert!(values(&p)?.iter().all(|v| v.is_finite()));
    Ok(())
}

#[test]
fn sgd_state_dict_keeps_every_buffer() -> Result<()> {
    let (a, b) = (
        Param::new(Tensor::ones(&[2]))?,
        Param::new(Tensor::ones(&[1]))?,
    );
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let mut opt = Sgd::new(vec![a.clone(), b.clone()], cfg)?;
    set_grad(&a, &[1.0, 1.0])?;
    set_grad(&b, &[1.0])?;
    opt.step()?;
    let keys: Vec<String> = opt.state_dict()?.keys().map(String::from).collect();
    assert_eq!(
        keys,
        [
            "state.0.momentum_buffer",
            "state.1.momentum_buffer",
            "param_groups.0.lr",
            "param_groups.0.momentum",
            "param_groups.0.dampening",
            "param_groups.0.weight_decay",
            "param_groups.0.nesterov",
            "param_groups.0.maximize",
            "param_groups.0.params"
        ]
    );
    Ok(())
}
