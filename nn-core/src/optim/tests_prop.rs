//! Property tests over random hyper-parameters: invalid ones are errors, never panics,
//! and an error leaves the optimizer (and its schedule) as it was.

use super::lr_scheduler::{
    ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR, CyclicMode,
    ExponentialLR, LinearLR, LrScheduler, OneCycleLR, PolynomialLR, StepLR,
};
use super::{
    Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, ParamGroup, RmsProp,
    RmsPropConfig, Sgd, SgdConfig,
};
use crate::{Param, Tensor};
use proptest::prelude::*;

/// Finite numbers of both signs, plus the non-finite ones.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -2.0f64..2.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
    ]
}

fn ok(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

fn params() -> Vec<Param> {
    let p = Param::new(Tensor::ones(&[3]));
    p.into_iter().collect()
}

/// Two groups of SGD with momentum: what the schedulers run over.
fn sgd2() -> Sgd {
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let made = Sgd::with_groups(vec![
        ParamGroup::new(params(), cfg),
        ParamGroup::new(params(), SgdConfig { lr: 0.02, ..cfg }),
    ]);
    made.unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a scheduler may change in the optimizer.
fn snapshot(o: &dyn Optimizer) -> Vec<Option<f64>> {
    (0..o.num_groups())
        .flat_map(|g| [o.group_lr(g), o.group_momentum(g), o.group_initial_lr(g)])
        .collect()
}

/// Builds a scheduler from two numbers and two sizes.
type Build = fn(&mut Sgd, f64, f64, usize, usize) -> crate::Result<Box<dyn LrScheduler>>;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn optimizer_configs_are_checked(
        lr in any_f64(), a in any_f64(), b in any_f64(), c in any_f64(), d in any_f64(),
    ) {
        let sgd = Sgd::new(params(), SgdConfig { lr, momentum: a, dampening: b, weight_decay: c, ..Default::default() });
        prop_assert_eq!(sgd.is_ok(), ok(lr) && ok(a) && ok(b) && ok(c));
        let adam = Adam::new(params(), AdamConfig { lr, betas: (a, b), eps: c, weight_decay: d, ..Default::default() });
        let beta = |x: f64| (0.0..1.0).contains(&x);
        prop_assert_eq!(adam.is_ok(), ok(lr) && beta(a) && beta(b) && ok(c) && ok(d));
        let adamw = AdamW::new(params(), AdamWConfig { lr, betas: (a, b), eps: c, weight_decay: d, ..Default::default() });
        prop_assert_eq!(adamw.is_ok(), ok(lr) && beta(a) && beta(b) && ok(c) && ok(d));
        let rms = RmsProp::new(params(), RmsPropConfig { lr, alpha: a, eps: b, weight_decay: c, momentum: d, ..Default::default() });
        prop_assert_eq!(rms.is_ok(), ok(lr) && ok(a) && ok(b) && ok(c) && ok(d));
        let ada = Adagrad::new(params(), AdagradConfig { lr, lr_decay: a, weight_decay: b, initial_accumulator_value: c, eps: d, ..Default::default() });
        prop_assert_eq!(ada.is_ok(), ok(lr) && ok(a) && ok(b) && ok(c) && ok(d));
    }

    #[test]
    fn a_bad_group_lr_or_momentum_changes_nothing(g in 0usize..3, lr in any_f64(), m in any_f64()) {
        let mut o = sgd2();
        let before = snapshot(&o);
        let r = o.set_group_lr(g, lr);
        prop_assert_eq!(r.is_ok(), g < 2 && ok(lr));
        if r.is_err() {
            prop_assert_eq!(snapshot(&o), before.clone());
        }
        let mut o = sgd2();
        let r = o.set_group_momentum(g, m);
        prop_assert_eq!(r.is_ok(), g < 2 && ok(m));
        if r.is_err() {
            prop_assert_eq!(snapshot(&o), before);
        }
    }

    #[test]
    fn schedulers_with_any_arguments_error_or_run_never_panic(
        x in any_f64(), y in any_f64(), n in 0usize..8, k in 0usize..4, steps in 0usize..12,
    ) {
        let builds: [Build; 9] = [
            |o, x, _, n, _| Ok(Box::new(StepLR::new(o, n, x)?)),
            |o, x, _, _, _| Ok(Box::new(ExponentialLR::new(o, x)?)),
            |o, x, y, n, _| Ok(Box::new(LinearLR::new(o, x, y, n)?)),
            |o, x, _, n, _| Ok(Box::new(ConstantLR::new(o, x, n)?)),
            |o, x, _, n, _| Ok(Box::new(PolynomialLR::new(o, n, x)?)),
            |o, x, _, n, _| Ok(Box::new(CosineAnnealingLR::new(o, n, x)?)),
            |o, x, _, n, k| Ok(Box::new(CosineAnnealingWarmRestarts::new(o, n, k, x)?)),
            |o, x, y, n, _| {
                let mut b = OneCycleLR::builder(&[x], n);
                b.pct_start = y;
                Ok(Box::new(b.build(o)?))
            },
            |o, x, y, n, k| Ok(Box::new(CyclicLR::new(o, &[x], &[y], n, Some(k), CyclicMode::Triangular2, true)?)),
        ];
        for build in builds {
            let mut o = sgd2();
            let before = snapshot(&o);
            match build(&mut o, x, y, n, k) {
                Err(_) => prop_assert_eq!(snapshot(&o), before),
                Ok(mut s) => {
                    for _ in 0..steps {
                        let was = snapshot(&o);
                        if s.step(&mut o).is_err() {
                            prop_assert_eq!(snapshot(&o), was);
                        }
                    }
                }
            }
        }
    }
}
