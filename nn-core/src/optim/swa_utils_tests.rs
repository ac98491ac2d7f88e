//! Tests of `AveragedModel` and `update_bn` against PyTorch
//! (tests/fixtures/trainops/ema.safetensors, made by tools/make_trainops_fixtures.py).

use super::{get_ema_multi_avg_fn, get_swa_multi_avg_fn, update_bn, AveragedModel, AvgFn};
use crate::layers::BatchNorm1d;
use crate::ops::testing::{assert_close, fixture_file, load};
use crate::{DType, Error, Linear, ModuleExt, Result, Sequential, StateDict, Tensor};

type Net = Sequential<(Linear, BatchNorm1d, Linear)>;

struct Fixture(Vec<u8>);

impl Fixture {
    fn st(&self) -> Result<safetensors::SafeTensors<'_>> {
        safetensors::SafeTensors::deserialize(&self.0).map_err(|e| Error::Format {
            path: "ema fixtures".into(),
            msg: e.to_string(),
        })
    }
    /// The state dict stored under `prefix.`.
    fn sd(&self, prefix: &str) -> Result<StateDict> {
        let st = self.st()?;
        let mut sd = StateDict::new();
        for name in st.names() {
            if let Some(k) = name.strip_prefix(&format!("{prefix}.")) {
                sd.insert(k, load(&st, name)?);
            }
        }
        Ok(sd)
    }
}

fn net(f: &Fixture, prefix: &str) -> Result<Net> {
    let m = Sequential::new((Linear::new(3, 4), BatchNorm1d::new(4), Linear::new(4, 2)));
    m.load_state_dict(&f.sd(prefix)?, &Default::default())?;
    Ok(m)
}

/// Every tensor of `got`'s state dict equals PyTorch's under `prefix`.
fn same_state(what: &str, got: &StateDict, f: &Fixture, prefix: &str) -> Result<()> {
    let want = f.sd(prefix)?;
    let mut keys: Vec<&str> = got.keys().collect();
    let mut wkeys: Vec<&str> = want.keys().collect();
    keys.sort_unstable();
    wkeys.sort_unstable();
    assert_eq!(keys, wkeys, "{what}: keys");
    for (k, t) in got.iter() {
        let w = want.get(k).ok_or_else(|| Error::MissingKey {
            container: what.into(),
            key: k.into(),
        })?;
        if w.dtype() == DType::I64 {
            assert_eq!(t.to_vec::<i64>()?, w.to_vec::<i64>()?, "{what}: {k}");
        } else {
            assert_close(&format!("{what}: {k}"), t, w)?;
        }
    }
    Ok(())
}

#[test]
fn ema_and_swa_average_like_pytorch_and_update_bn_recomputes_statistics() -> Result<()> {
    let f = Fixture(fixture_file("trainops/ema.safetensors")?);
    let model = net(&f, "init")?;
    let mut ema = AveragedModel::new(&model, get_ema_multi_avg_fn(0.9), true);
    let mut swa = AveragedModel::new(&model, get_swa_multi_avg_fn(), false);
    for k in 0..3 {
        model.load_state_dict(&f.sd(&format!("step{k}"))?, &Default::default())?;
        ema.update_parameters(&model)?;
        swa.update_parameters(&model)?;
    }
    assert_eq!(ema.n_averaged()?, 3);
    same_state("ema", &ema.state_dict()?, &f, "ema")?;
    same_state("swa", &swa.state_dict()?, &f, "swa")?;
    // the copy is independent of the model
    assert!(!ema.module.0.weight.ptr_eq(&model.0.weight));
    let batches = load(&f.st()?, "bn_batches")?;
    let loader = (0..2)
        .map(|i| batches.get(i))
        .collect::<Result<Vec<Tensor>>>()?;
    swa.eval();
    update_bn(loader, &mut swa)?;
    same_state("swa after update_bn", &swa.state_dict()?, &f, "swa_bn")?;
    // momentum and mode restored
    assert_eq!(swa.module.1.get_momentum(), Some(0.1));
    assert!(!swa.module.1.is_training());
    Ok(())
}

#[test]
fn custom_averages_and_mismatched_models() -> Result<()> {
    let a = Linear::new(2, 2);
    // a custom average: always the model's value times 2
    let double = AvgFn::Custom(std::sync::Arc::new(|_: &Tensor, m: &Tensor, _| {
        m.mul_scalar(2.0)
    }));
    let mut avg = AveragedModel::new(&a, double, false);
    avg.update_parameters(&a)?; // first: a copy
    avg.update_parameters(&a)?;
    let (w, want) = (avg.module.weight.data()?, a.weight.data()?.mul_scalar(2.0)?);
    assert_eq!(w.to_vec::<f32>()?, want.to_vec::<f32>()?);
    // another architecture: an error naming the tensor, nothing changed
    let other = Linear::new(3, 2);
    let mut m = AveragedModel::new(&a, get_swa_multi_avg_fn(), false);
    let e = m.update_parameters(&Linear::new(2, 2)).and(Ok(()));
    assert!(e.is_ok());
    let before = m.module.weight.data()?.to_vec::<f32>()?;
    let mut m2 = AveragedModel::new(&other, get_swa_multi_avg_fn(), false);
    let msg = m2
        .update_parameters(&Linear::new(2, 2))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("weight") && msg.contains("[2, 3]"), "{msg}");
    assert_eq!(m2.n_averaged()?, 0);
    assert_eq!(m.module.weight.data()?.to_vec::<f32>()?, before);
    // no batch norm: update_bn does nothing
    update_bn(vec![Tensor::ones(&[1, 2])], &mut m)?;
    Ok(())
}
