//! Every optimizer rule against PyTorch's: one parameter, six given gradients, the
//! parameter after them (`tests/fixtures/training/optimizers.safetensors`, made by
//! `tools/make_training_fixtures.py`); and parameter groups.

use nn::optim::{
    partition_by_name, Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer,
    ParamGroup, RmsProp, RmsPropConfig, Sgd, SgdConfig,
};
use nn::{Linear, ModuleExt, Param, Result, StateDict, Tensor};

fn fixture() -> Result<StateDict> {
    nn::io::load_state_dict_file("tests/fixtures/training/optimizers.safetensors")
}

fn get(fx: &StateDict, k: &str) -> Vec<f32> {
    fx.get(k)
        .map(|t| t.to_vec::<f32>())
        .transpose()
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("fixture has no {k}"))
}

type Make = fn(Vec<Param>) -> Result<Box<dyn Optimizer>>;

fn boxed<O: Optimizer + 'static>(o: Result<O>) -> Result<Box<dyn Optimizer>> {
    Ok(Box::new(o?))
}

#[test]
fn every_rule_matches_pytorch_over_six_steps() -> Result<()> {
    let fx = fixture()?;
    let cases: [(&str, Make); 8] = [
        ("sgd_nesterov_maximize", |p| {
            boxed(Sgd::new(
                p,
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 0.01,
                    maximize: true,
                    ..Default::default()
                },
            ))
        }),
        ("sgd_dampening", |p| {
            boxed(Sgd::new(
                p,
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.8,
                    dampening: 0.3,
                    weight_decay: 0.05,
                    ..Default::default()
                },
            ))
        }),
        ("adam_amsgrad_maximize", |p| {
            boxed(Adam::new(
                p,
                AdamConfig {
                    lr: 0.05,
                    amsgrad: true,
                    maximize: true,
                    weight_decay: 0.1,
                    ..Default::default()
                },
            ))
        }),
        ("adamw", |p| {
            boxed(AdamW::new(
                p,
                AdamWConfig {
                    lr: 0.05,
                    weight_decay: 0.1,
                    betas: (0.8, 0.99),
                    ..Default::default()
                },
            ))
        }),
        ("adamw_amsgrad", |p| {
            boxed(AdamW::new(
                p,
                AdamWConfig {
                    lr: 0.02,
                    amsgrad: true,
                    ..Default::default()
                },
            ))
        }),
        ("rmsprop", |p| {
            boxed(RmsProp::new(
                p,
                RmsPropConfig {
                    lr: 0.01,
                    ..Default::default()
                },
            ))
        }),
        ("rmsprop_centered_momentum", |p| {
            boxed(RmsProp::new(
                p,
                RmsPropConfig {
                    lr: 0.01,
                    alpha: 0.9,
                    momentum: 0.8,
                    centered: true,
                    weight_decay: 0.05,
                    maximize: true,
                    ..Default::default()
                },
            ))
        }),
        ("adagrad", |p| {
            boxed(Adagrad::new(
                p,
                AdagradConfig {
                    lr: 0.1,
                    lr_decay: 0.05,
                    weight_decay: 0.01,
                    initial_accumulator_value: 0.2,
                    ..Default::default()
                },
            ))
        }),
    ];
    let (p0, grads) = (get(&fx, "p0"), get(&fx, "grads"));
    for (name, make) in cases {
        let p = Param::new(Tensor::from_vec(p0.clone(), &[5])?)?;
        let mut opt = make(vec![p.clone()])?;
        for g in grads.chunks(5) {
            p.set_grad(Some(Tensor::from_vec(g.to_vec(), &[5])?));
            opt.step()?;
        }
        let (got, want) = (p.data()?.to_vec::<f32>()?, get(&fx, name));
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-6, "{name}: {got:?} vs PyTorch {want:?}");
        }
    }
    Ok(())
}

#[test]
fn a_parameter_in_two_groups_is_an_error_naming_it() -> Result<()> {
    let net = Linear::new(3, 2);
    let named = net.named_parameters();
    let all: Vec<Param> = named.iter().map(|(_, p)| p.clone()).collect();
    let bias = vec![named[1].1.clone()];
    let cfg = AdamWConfig::default();
    let e = AdamW::with_groups(vec![
        ParamGroup::new(all, cfg),
        ParamGroup::new(bias.clone(), cfg),
    ])
    .err()
    .map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("bias")), "{e:?}");
    // add_param_group says the same and changes nothing
    let mut opt = AdamW::new(net.parameters(), cfg)?;
    assert!(opt.add_param_group(ParamGroup::new(bias, cfg)).is_err());
    assert_eq!((opt.num_groups(), opt.params().len()), (1, 2));
    Ok(())
}

#[test]
fn groups_have_their_own_hyper_parameters_and_indices() -> Result<()> {
    let (a, b) = (Linear::new(3, 2), Linear::new(2, 1));
    let (no_decay, decay) = partition_by_name(a.named_parameters(), &["*bias"])?;
    assert_eq!((no_decay.len(), decay.len()), (1, 1));
    let cfg = SgdConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..Default::default()
    };
    let mut opt = Sgd::with_groups(vec![
        ParamGroup::new(decay, cfg),
        ParamGroup::new(
            no_decay,
            SgdConfig {
                weight_decay: 0.0,
                ..cfg
            },
        ),
    ])?;
    opt.add_param_group(ParamGroup::new(
        b.parameters(),
        SgdConfig { lr: 0.01, ..cfg },
    ))?;
    assert_eq!(opt.num_groups(), 3);
    assert_eq!(opt.params().len(), 4);
    assert_eq!(opt.group_lr(2), Some(0.01));
    assert!(opt.set_group_lr(3, 0.1).is_err());
    assert!(opt.set_group_lr(0, f64::NAN).is_err());
    assert_eq!(opt.group_lr(0), Some(0.1));
    // a zero gradient: only weight decay moves the weights, and only in group 0
    for p in opt.params() {
        p.set_grad(Some(p.data()?.zeros_like()?));
    }
    let (w0, b0) = (
        a.weight.data()?.to_vec::<f32>()?,
        a.bias.as_ref().map(|b| b.data()).transpose()?,
    );
    opt.step()?;
    let w1 = a.weight.data()?.to_vec::<f32>()?;
    for (x, y) in w0.iter().zip(&w1) {
        assert!((y - x * 0.95).abs() < 1e-6);
    }
    let b1 = a.bias.as_ref().map(|b| b.data()).transpose()?;
    assert_eq!(
        b0.map(|t| t.to_vec::<f32>()).transpose()?,
        b1.map(|t| t.to_vec::<f32>()).transpose()?
    );
    let sd = opt.state_dict()?;
    let params = |g: usize| {
        sd.get(&format!("param_groups.{g}.params"))
            .map(|t| t.to_vec::<i64>())
            .transpose()
    };
    assert_eq!(params(0)?, Some(vec![0]));
    assert_eq!(params(2)?, Some(vec![2, 3]));
    Ok(())
}
