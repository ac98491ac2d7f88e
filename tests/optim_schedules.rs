//! Every learning-rate scheduler against PyTorch's: the lrs of two parameter groups
//! after construction and after each of 300 steps, to 1e-7 relative, and the momentum
//! where the scheduler cycles it (`tests/fixtures/training/schedules.safetensors`, made by
//! `tools/make_training_fixtures.py`).

use nn::optim::lr_scheduler::*;
use nn::optim::{Optimizer, ParamGroup, Sgd, SgdConfig};
use nn::{HostData, Param, Result, StateDict, Tensor};

const STEPS: usize = 300;

fn fixture() -> StateDict {
    nn::io::load_state_dict_file("tests/fixtures/training/schedules.safetensors")
        .unwrap_or_else(|e| panic!("schedules.safetensors: {e}"))
}

fn rows(sd: &StateDict, key: &str) -> Option<Vec<[f64; 2]>> {
    let t = sd.get(key)?;
    match t.to_host() {
        Ok(HostData::F64(v)) => Some(v.chunks(2).map(|c| [c[0], c[1]]).collect()),
        other => panic!("{key}: {other:?}"),
    }
}

/// SGD over two one-element groups, lrs 0.1 and 0.02, momentum 0.9.
fn optimizer() -> Result<Sgd> {
    let base = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let p = || Param::new(Tensor::zeros(&[1]));
    Sgd::with_groups(vec![
        ParamGroup::new(vec![p()?], base),
        ParamGroup::new(vec![p()?], SgdConfig { lr: 0.02, ..base }),
    ])
}

fn make(name: &str, opt: &mut Sgd) -> Result<Box<dyn LrScheduler>> {
    Ok(match name {
        "StepLR" => Box::new(StepLR::new(opt, 30, 0.5)?),
        "MultiStepLR" => Box::new(MultiStepLR::new(opt, &[50, 120, 120, 200], 0.3)?),
        "ExponentialLR" => Box::new(ExponentialLR::new(opt, 0.99)?),
        "CosineAnnealingLR" => Box::new(CosineAnnealingLR::new(opt, 70, 0.001)?),
        "CosineAnnealingWarmRestarts" => {
            Box::new(CosineAnnealingWarmRestarts::new(opt, 20, 2, 0.0005)?)
        }
        "LinearLR" => Box::new(LinearLR::new(opt, 0.25, 0.9, 40)?),
        "ConstantLR" => Box::new(ConstantLR::new(opt, 0.5, 25)?),
        "PolynomialLR" => Box::new(PolynomialLR::new(opt, 150, 2.0)?),
        "OneCycleLR" => Box::new(OneCycleLR::builder(&[0.5, 0.1], STEPS).build(opt)?),
        "OneCycleLR_linear3" => {
            let mut b = OneCycleLR::builder(&[0.4], STEPS);
            b.pct_start = 0.2;
            b.anneal_strategy = AnnealStrategy::Linear;
            b.three_phase = true;
            b.div_factor = 10.0;
            b.final_div_factor = 100.0;
            Box::new(b.build(opt)?)
        }
        "CyclicLR_triangular2" => Box::new(CyclicLR::new(
            opt,
            &[0.01],
            &[0.1, 0.05],
            25,
            Some(15),
            CyclicMode::Triangular2,
            true,
        )?),
        "CyclicLR_exp_range" => Box::new(CyclicLR::new(
            opt,
            &[0.01, 0.002],
            &[0.1],
            30,
            None,
            CyclicMode::ExpRange { gamma: 0.995 },
            false,
        )?),
        "LambdaLR" => Box::new(LambdaLR::new(opt, |e| {
            0.95f64.powf(e as f64) + 0.01 * (e % 7) as f64
        })?),
        "SequentialLR" => {
            let a = LinearLR::new(opt, 0.1, 1.0, 10)?;
            let b = CosineAnnealingLR::new(opt, 290, 0.0)?;
            Box::new(SequentialLR::new(
                opt,
                vec![Box::new(a), Box::new(b)],
                &[10],
            )?)
        }
        "ChainedScheduler" => {
            let a = ConstantLR::new(opt, 0.5, 20)?;
            let b = ExponentialLR::new(opt, 0.99)?;
            Box::new(ChainedScheduler::new(opt, vec![Box::new(a), Box::new(b)])?)
        }
        other => panic!("no scheduler {other}"),
    })
}

fn close(name: &str, what: &str, step: usize, got: [f64; 2], want: [f64; 2]) {
    for g in 0..2 {
        let (a, b) = (got[g], want[g]);
        let tol = 1e-7 * b.abs().max(1e-12);
        assert!(
            (a - b).abs() <= tol,
            "{name} {what} step {step} group {g}: {a} vs PyTorch {b}"
        );
    }
}

#[test]
fn every_scheduler_follows_pytorchs_lrs_for_300_steps() -> Result<()> {
    let fx = fixture();
    let names = [
        "StepLR",
        "MultiStepLR",
        "ExponentialLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "LinearLR",
        "ConstantLR",
        "PolynomialLR",
        "OneCycleLR",
        "OneCycleLR_linear3",
        "CyclicLR_triangular2",
        "CyclicLR_exp_range",
        "LambdaLR",
        "SequentialLR",
        "ChainedScheduler",
    ];
    for name in names {
        let want = rows(&fx, &format!("{name}.lr")).unwrap_or_else(|| panic!("{name}"));
        let moms = rows(&fx, &format!("{name}.momentum"));
        let mut opt = optimizer()?;
        let mut s = make(name, &mut opt)?;
        let check = |s: &dyn LrScheduler, opt: &Sgd, e: usize| {
            let l = s.get_last_lr();
            close(name, "lr", e, [l[0], l[1]], want[e]);
            close(
                name,
                "group lr",
                e,
                [opt.lr(), opt.group_lr(1).unwrap_or(-1.0)],
                want[e],
            );
            if let Some(m) = &moms {
                let got = [
                    opt.group_momentum(0).unwrap_or(-1.0),
                    opt.group_momentum(1).unwrap_or(-1.0),
                ];
                close(name, "momentum", e, got, m[e]);
            }
        };
        check(s.as_ref(), &opt, 0);
        for e in 1..=STEPS {
            opt.step()?;
            s.step(&mut opt)?;
            check(s.as_ref(), &opt, e);
        }
    }
    Ok(())
}

#[test]
fn reduce_lr_on_plateau_follows_pytorch() -> Result<()> {
    let fx = fixture();
    let want = rows(&fx, "ReduceLROnPlateau.lr").unwrap_or_default();
    let metric = match fx.get("ReduceLROnPlateau.metric").map(|t| t.to_host()) {
        Some(Ok(HostData::F64(v))) => v,
        other => panic!("metric: {other:?}"),
    };
    let mut opt = optimizer()?;
    let mut s = ReduceLROnPlateau::new(&opt).with_min_lr(&[0.001, 0.0005])?;
    s.factor = 0.5;
    s.patience = 5;
    s.threshold = 1e-3;
    s.cooldown = 3;
    for e in 1..=STEPS {
        s.step(&mut opt, metric[e])?;
        let l = s.get_last_lr();
        close("ReduceLROnPlateau", "lr", e, [l[0], l[1]], want[e]);
    }
    // a NaN metric is an error and changes nothing
    let before = (s.state_dict(), opt.lr());
    assert!(s.step(&mut opt, f64::NAN).is_err());
    assert_eq!(s.last_epoch(), STEPS as i64);
    assert_eq!(opt.lr(), before.1);
    Ok(())
}

#[test]
fn a_scheduler_resumes_from_its_state_dict_on_the_same_lrs() -> Result<()> {
    for name in ["CosineAnnealingWarmRestarts", "SequentialLR", "OneCycleLR"] {
        let mut opt = optimizer()?;
        let mut s = make(name, &mut opt)?;
        for _ in 0..37 {
            s.step(&mut opt)?;
        }
        let (sd, osd) = (s.state_dict(), opt.state_dict()?);
        let mut opt2 = optimizer()?;
        let mut s2 = make(name, &mut opt2)?;
        opt2.load_state_dict(&osd)?;
        s2.load_state_dict(&sd)?;
        for _ in 0..50 {
            s.step(&mut opt)?;
            s2.step(&mut opt2)?;
            assert_eq!(s.get_last_lr(), s2.get_last_lr(), "{name}");
        }
    }
    Ok(())
}

#[test]
fn one_cycle_stepped_past_its_total_is_an_error_that_changes_nothing() -> Result<()> {
    let mut opt = optimizer()?;
    let mut s = OneCycleLR::builder(&[0.5], 3).build(&mut opt)?;
    for _ in 0..3 {
        s.step(&mut opt)?;
    }
    let lr = opt.lr();
    let e = s.step(&mut opt).err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("Tried to step 4 times")),
        "{e:?}"
    );
    assert_eq!((s.last_epoch(), opt.lr()), (3, lr));
    Ok(())
}

#[test]
fn bad_hyper_parameters_are_errors_and_leave_the_optimizer_as_it_was() -> Result<()> {
    let mut opt = optimizer()?;
    let before = opt.state_dict()?.keys().count();
    assert!(StepLR::new(&mut opt, 0, 0.5).is_err());
    assert!(StepLR::new(&mut opt, 3, f64::NAN).is_err());
    assert!(ExponentialLR::new(&mut opt, -0.5).is_err());
    assert!(LinearLR::new(&mut opt, 0.0, 1.0, 5).is_err());
    assert!(ConstantLR::new(&mut opt, 1.5, 5).is_err());
    assert!(CosineAnnealingLR::new(&mut opt, 10, f64::INFINITY).is_err());
    assert!(OneCycleLR::builder(&[0.1, 0.2, 0.3], 10)
        .build(&mut opt)
        .is_err());
    assert!(OneCycleLR::builder(&[f64::NAN], 10)
        .build(&mut opt)
        .is_err());
    assert!(LambdaLR::new(&mut opt, |_| f64::NAN).is_err());
    assert_eq!(opt.group_initial_lr(0), None);
    assert_eq!((opt.lr(), opt.group_lr(1)), (0.1, Some(0.02)));
    assert_eq!(opt.group_momentum(0), Some(0.9));
    assert_eq!(opt.state_dict()?.keys().count(), before);
    Ok(())
}

#[test]
fn reduce_lr_on_plateau_in_max_mode_waits_for_a_higher_metric() -> Result<()> {
    let mut opt = optimizer()?;
    let mut s = ReduceLROnPlateau::new(&opt).with_mode(PlateauMode::Max);
    s.patience = 1;
    // rising: no reduction; then flat for two epochs: one
    for m in [0.1, 0.2, 0.3, 0.3, 0.3] {
        s.step(&mut opt, m)?;
    }
    assert!((opt.lr() - 0.01).abs() < 1e-12, "{}", opt.lr());
    Ok(())
}
