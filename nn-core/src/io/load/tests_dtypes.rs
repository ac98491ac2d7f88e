//! Storage dtypes (f16, bf16, f64, i32, u8, bool): conversion, files, and loading into
//! an f32 model with `LoadOptions::convert_dtypes`, `strip_prefix`.

use crate::io::*;
use crate::layers::{Linear, ReLU, Sequential};
use crate::module::ModuleExt;
use crate::{DType, Error, HostData, Tensor};

fn mlp() -> Sequential<(Linear, ReLU, Linear)> {
    Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 3)))
}

#[test]
#[allow(clippy::excessive_precision)] // the exact values torch prints
fn conversions_follow_pytorch_rounding_and_truncation() -> Result<()> {
    let x = Tensor::from_vec(vec![1.0f32, -2.5, 0.1, 65520.0, 3.9], &[5])?;
    let h = x.to_dtype(DType::F16)?;
    assert_eq!(h.dtype(), DType::F16);
    let back = h.to_dtype(DType::F32)?.to_vec::<f32>()?;
    // the values torch 2.15 gives for x.half().float() and x.bfloat16().float():
    // round to nearest even, 65520 overflows to inf in f16
    assert_eq!(
        back,
        vec![1.0, -2.5, 0.0999755859375, f32::INFINITY, 3.900390625]
    );
    let b = x
        .to_dtype(DType::BF16)?
        .to_dtype(DType::F32)?
        .to_vec::<f32>()?;
    assert_eq!(b, vec![1.0, -2.5, 0.10009765625, 65536.0, 3.90625]);
    // x.int(), torch.tensor([300, -1, 0]).to(torch.uint8): truncation, wrapping
    let i = x
        .to_dtype(DType::I32)?
        .to_dtype(DType::I64)?
        .to_vec::<i64>()?;
    assert_eq!(i, vec![1, -2, 0, 65520, 3]);
    let u = Tensor::from_vec(vec![300i64, -1, 0], &[3])?.to_dtype(DType::U8)?;
    assert_eq!(u.to_host()?, HostData::U8(vec![44, 255, 0]));
    let m = x.to_dtype(DType::Bool)?;
    assert_eq!(m.to_host()?, HostData::Bool(vec![1, 1, 1, 1, 1]));
    let d = x.to_dtype(DType::F64)?;
    assert_eq!(
        d.to_host()?,
        HostData::F64(vec![1.0, -2.5, 0.1f32 as f64, 65520.0, 3.9f32 as f64])
    );
    Ok(())
}

#[test]
fn compute_on_a_storage_dtype_says_convert_first() -> Result<()> {
    let h = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?.to_dtype(DType::F16)?;
    for r in [
        h.sum_dim(0, false).map(|_| ()),
        h.add(&h).map(|_| ()),
        h.narrow(0, 0, 1).map(|_| ()),
    ] {
        match r {
            Err(Error::StorageOnly {
                dtype: DType::F16, ..
            }) => {}
            Err(e) => panic!("expected StorageOnly, got {e}"),
            Ok(()) => panic!("a compute op on f16 succeeded"),
        }
    }
    let e = h
        .sum_dim(0, false)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("float16 tensors are storage only; convert first"),
        "{e}"
    );
    // printing and item() convert for the reader
    assert_eq!(h.to_dtype(DType::F32)?.to_vec::<f32>()?, vec![1.0, 2.0]);
    assert!(format!("{h}").contains("1.0000"), "{h}");
    Ok(())
}

#[test]
fn every_dtype_roundtrips_through_safetensors_and_native() -> Result<()> {
    let base = Tensor::from_vec(vec![0.0f32, 1.0, -3.0, 7.5, 2.0, 0.5], &[2, 3])?;
    let mut sd = StateDict::new();
    for d in DType::ALL {
        sd.insert(d.as_str(), base.to_dtype(d)?);
    }
    let st = safetensors_from_bytes(&safetensors_to_bytes(&sd)?)?;
    let nat = state_dict_from_bytes(&to_bytes(&sd)?)?;
    let st_scanned = state_dict_from_bytes(&safetensors_to_bytes(&sd)?)?;
    for back in [&st, &nat, &st_scanned] {
        for d in DType::ALL {
            let t = back.get(d.as_str()).ok_or_else(|| Error::MissingKey {
                container: "back".into(),
                key: d.as_str().into(),
            })?;
            assert_eq!(t.dtype(), d);
            assert_eq!(t.shape(), &[2, 3]);
            assert_eq!(t.to_host()?, base.to_dtype(d)?.to_host()?, "{d}");
        }
    }
    Ok(())
}

#[test]
fn bool_bytes_other_than_one_read_as_true() -> Result<()> {
    let h = HostData::from_le_bytes(DType::Bool, &[0, 2, 255, 1])?;
    assert_eq!(h, HostData::Bool(vec![0, 1, 1, 1]));
    Ok(())
}

#[test]
fn f16_file_into_f32_model_is_refused_unless_converting() -> Result<()> {
    let src = mlp();
    let mut half = StateDict::new();
    for (k, t) in src.state_dict()?.iter() {
        half.insert(k, t.to_dtype(DType::F16)?);
    }
    let dst = mlp();
    let before = dst.0.weight.data()?.to_vec::<f32>()?;
    let Err(Error::StateDict(rep)) = dst.load_state_dict(&half, &LoadOptions::strict()) else {
        panic!("an f16 state dict must not load into an f32 model by default");
    };
    assert_eq!(rep.mismatched.len(), 4);
    assert!(rep
        .to_string()
        .contains("the file has float16 (LoadOptions::convert_dtypes(true)"));
    assert_eq!(
        dst.0.weight.data()?.to_vec::<f32>()?,
        before,
        "strict: nothing changed"
    );

    let rep = dst.load_state_dict(&half, &LoadOptions::strict().convert_dtypes(true))?;
    assert!(rep.is_clean());
    assert_eq!(rep.converted.len(), 4);
    assert_eq!(
        rep.converted[0],
        ("0.weight".into(), DType::F16, DType::F32)
    );
    let want = src
        .0
        .weight
        .data()?
        .to_dtype(DType::F16)?
        .to_dtype(DType::F32)?;
    assert_eq!(dst.0.weight.data()?.dtype(), DType::F32);
    assert_eq!(dst.0.weight.data()?.to_vec::<f32>()?, want.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn strip_prefix_removes_dataparallel_names_and_keeps_others() -> Result<()> {
    let src = mlp();
    let mut sd = StateDict::new();
    for (k, t) in src.state_dict()?.iter() {
        // DataParallel prefixes every key; one key without it still matches
        let key = if k == "2.weight" {
            k.to_string()
        } else {
            format!("model.module.{k}")
        };
        let key = if k == "2.weight" {
            format!("model.{key}")
        } else {
            key
        };
        sd.insert(&key, t.clone());
    }
    sd.insert("optimizer.step", Tensor::from_vec(vec![3i64], &[])?);
    let dst = mlp();
    let rep = dst.load_state_dict(
        &sd,
        &LoadOptions::strict()
            .prefix("model")
            .strip_prefix("module."),
    )?;
    assert!(rep.is_clean(), "{rep}");
    assert_eq!(
        dst.2.weight.data()?.to_vec::<f32>()?,
        src.2.weight.data()?.to_vec::<f32>()?
    );
    assert_eq!(
        dst.0.weight.data()?.to_vec::<f32>()?,
        src.0.weight.data()?.to_vec::<f32>()?
    );
    // without stripping every prefixed key is unexpected
    let Err(Error::StateDict(rep)) =
        dst.load_state_dict(&sd, &LoadOptions::strict().prefix("model"))
    else {
        panic!("module. keys must not match without strip_prefix");
    };
    assert_eq!(rep.unexpected.len(), 3);
    Ok(())
}
