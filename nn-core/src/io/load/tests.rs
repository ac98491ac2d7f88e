//! Tests of loading a state dict into a model: strictness, prefixes, tied parameters,
//! lazy layers.

use crate::io::tests_support::mlp;
use crate::io::*;
use crate::layers::{Linear, ReLU, Sequential};
use crate::module::ModuleExt;
use crate::{DType, Error, Tensor};

#[test]
fn strict_load_reports_everything_and_changes_nothing() -> Result<()> {
    let net = mlp();
    let before = net.0.weight.data()?.to_vec::<f32>()?;
    let mut sd = mlp().state_dict()?.into_entries();
    sd.retain(|(k, _)| k != "2.bias");
    sd.push(("3.weight".into(), Tensor::zeros(&[1])));
    sd[2].1 = Tensor::zeros(&[3, 9]);
    sd[0].1 = Tensor::zeros_dtype(&[8, 4], DType::I64);
    let sd: StateDict = sd.into_iter().collect();
    let r = net.load_state_dict(&sd, &LoadOptions::strict());
    let Err(Error::StateDict(rep)) = r else {
        panic!("strict load should fail, got {r:?}");
    };
    assert_eq!(rep.missing, ["2.bias"]);
    assert_eq!(rep.unexpected, ["3.weight"]);
    assert_eq!(rep.mismatched.len(), 2);
    assert_eq!(rep.loaded, ["0.bias"]);
    let text = rep.to_string();
    for needle in [
        "missing keys (1): `2.bias`",
        "unexpected keys (1): `3.weight`",
        "shape mismatch for `2.weight`: the model has [3, 8], the file has [3, 9]",
        "dtype mismatch for `0.weight`: the model has float32, the file has int64",
    ] {
        assert!(text.contains(needle), "{text}");
    }
    assert_eq!(net.0.weight.data()?.to_vec::<f32>()?, before);
    // non-strict: what fits is loaded, same report
    let rep2 = net.load_state_dict(&sd, &LoadOptions::non_strict())?;
    assert_eq!(rep2, rep);
    let got = match &net.0.bias {
        Some(b) => b.data()?.to_vec::<f32>()?,
        None => vec![],
    };
    let want = match sd.get("0.bias") {
        Some(t) => t.to_vec::<f32>()?,
        None => vec![1.0],
    };
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn prefix_loads_a_sub_module() -> Result<()> {
    let big = mlp();
    let sd = big.state_dict()?;
    let first = Linear::new(4, 8);
    let rep = first.load_state_dict(&sd, &LoadOptions::strict().prefix("0"))?;
    assert_eq!(rep.loaded, ["0.weight", "0.bias"]);
    assert_eq!(
        first.weight.data()?.to_vec::<f32>()?,
        big.0.weight.data()?.to_vec::<f32>()?
    );
    Ok(())
}

#[test]
fn tied_parameter_is_loaded_once_and_conflicts_are_reported() -> Result<()> {
    let shared = Linear::new(3, 3);
    let net = Sequential::new((shared.clone(), ReLU, shared.clone()));
    let src = Sequential::new((shared.clone(), ReLU, shared));
    src.0.weight.update(|d| d.add_scalar(1.0))?;
    let sd = src.state_dict()?;
    assert_eq!(sd.len(), 4);
    let fresh_shared = Linear::new(3, 3);
    let fresh = Sequential::new((fresh_shared.clone(), ReLU, fresh_shared));
    fresh.load_state_dict(&sd, &LoadOptions::strict())?;
    assert!(fresh.0.weight.ptr_eq(&fresh.2.weight));
    assert_eq!(
        fresh.2.weight.data()?.to_vec::<f32>()?,
        net.0.weight.data()?.to_vec::<f32>()?
    );
    let mut bad = sd.into_entries();
    bad[2].1 = Tensor::zeros(&[3, 3]);
    let bad: StateDict = bad.into_iter().collect();
    let err = fresh
        .load_state_dict(&bad, &LoadOptions::strict())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("`2.weight` is tied to `0.weight`"), "{err}");
    Ok(())
}

#[test]
fn lazy_model_materializes_from_the_state_dict() -> Result<()> {
    let src = mlp();
    let lazy = Sequential::new((Linear::lazy(8), ReLU, Linear::lazy(3)));
    lazy.load_state_dict(&src.state_dict()?, &LoadOptions::strict())?;
    assert_eq!(lazy.0.in_features(), Some(4));
    let x = Tensor::rand(&[2, 4]);
    use crate::module::Forward;
    assert_eq!(
        lazy.forward(&x)?.to_vec::<f32>()?,
        src.forward(&x)?.to_vec::<f32>()?
    );
    // a lazy dim accepts any size, a known one does not
    let wrong: StateDict = [("0.weight".to_string(), Tensor::zeros(&[7, 4]))]
        .into_iter()
        .collect();
    let rep =
        Sequential::new((Linear::lazy(8),)).load_state_dict(&wrong, &LoadOptions::non_strict())?;
    assert!(
        rep.to_string()
            .contains("the model has [8, ?], the file has [7, 4]"),
        "{rep}"
    );
    Ok(())
}
