//! Unit tests of the io module: round trips, load semantics, and hostile input
//! (truncation at every offset, every single-bit flip, crafted lengths).

use super::*;
use crate::layers::{Linear, ReLU, Sequential};
use crate::module::ModuleExt;
use crate::{DType, Error, Tensor};
use std::collections::BTreeMap;

pub(super) fn small_dict() -> Result<StateDict> {
    let mut sd = StateDict::new();
    sd.insert(
        "w",
        Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0], &[2, 2])?,
    );
    sd.insert("idx", Tensor::from_vec(vec![7i64, -1, 1 << 40], &[3])?);
    sd.insert("s", Tensor::scalar(9.0));
    Ok(sd)
}

/// Asserts `back` holds every entry of `sd`, in any order, with the same shape and data.
pub(super) fn assert_holds(back: &StateDict, sd: &StateDict) -> Result<()> {
    for (k, t) in sd.iter() {
        let u = back.get(k).ok_or_else(|| Error::MissingKey {
            container: "decoded".into(),
            key: k.into(),
        })?;
        assert_eq!(t.shape(), u.shape(), "{k}");
        assert_eq!(t.to_host()?, u.to_host()?, "{k}");
    }
    Ok(())
}

pub(super) fn assert_same(a: &StateDict, b: &StateDict) -> Result<()> {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for ((_, x), (_, y)) in a.iter().zip(b.iter()) {
        assert_eq!(x.shape(), y.shape());
        assert_eq!(x.dtype(), y.dtype());
        // bitwise (NaN payloads included)
        assert_eq!(super::bytes::le_bytes(x)?, super::bytes::le_bytes(y)?);
    }
    Ok(())
}

#[test]
fn roundtrip_in_memory_keeps_order_dtypes_and_bits() -> Result<()> {
    let sd = small_dict()?;
    let bytes = to_bytes(&sd)?;
    assert_eq!(&bytes[..8], &MAGIC);
    assert_same(&sd, &from_bytes::<StateDict>(&bytes)?)?;
    // a map written as BTreeMap reads as a StateDict and back
    let m: BTreeMap<String, Tensor> = from_bytes(&bytes)?;
    assert_eq!(m.len(), 3);
    let v = vec![Tensor::arange(0, 4), Tensor::zeros(&[4])];
    let back: Vec<Tensor> = from_bytes(&to_bytes(&v)?)?;
    assert_eq!(back[0].to_vec::<i64>()?, vec![0, 1, 2, 3]);
    assert_eq!(back[1].dtype(), DType::F32);
    Ok(())
}

#[test]
fn tensor_data_is_one_byte_string() -> Result<()> {
    // 1000 f32 elements: the payload is the header fields plus 4000 raw bytes, not 1000
    // separately encoded numbers (version 1)
    let t = Tensor::rand(&[1000]);
    let bytes = to_bytes_v1(&t)?;
    let payload = bytes.len() - HEADER_LEN;
    assert!(payload < 4000 + 20, "{payload}");
    let raw = super::bytes::le_bytes(&t)?;
    assert!(bytes.windows(raw.len()).any(|w| w == raw.as_ref()));
    // version 2: the raw bytes end the file, at a 64-byte-aligned offset
    let bytes = to_bytes(&t)?;
    let at = bytes.len() - 4000;
    assert_eq!(&bytes[at..], raw.as_ref());
    assert_eq!(at % 64, 0);
    assert!(at <= 2 * HEADER_LEN_V2, "{at}");
    Ok(())
}

#[test]
fn version_1_files_still_load() -> Result<()> {
    let sd = small_dict()?;
    let v1 = to_bytes_v1(&sd)?;
    assert_eq!(u32::from_le_bytes([v1[8], v1[9], v1[10], v1[11]]), 1);
    assert_same(&sd, &from_bytes::<StateDict>(&v1)?)?;
    assert_same(&sd, &state_dict_from_bytes(&v1)?)?;
    let path = scratch("v1");
    super::native::test_writer::save_v1(&sd, &path)?;
    assert_eq!(std::fs::read(&path).map_err(|e| Error::io(&path, e))?, v1);
    assert_same(&sd, &load::<StateDict>(&path)?)?;
    assert_same(&sd, &load_state_dict_file(&path)?)?;
    let net = mlp();
    super::native::test_writer::save_v1(&net.state_dict()?, &path)?;
    let fresh = mlp();
    fresh.load(&path)?;
    assert_eq!(
        fresh.0.weight.data()?.to_vec::<f32>()?,
        net.0.weight.data()?.to_vec::<f32>()?
    );
    // and what this build writes is version 2
    save(&sd, &path)?;
    let b = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), VERSION);
    assert_eq!(VERSION, 2);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn v1_truncation_and_bit_flips_are_errors() -> Result<()> {
    let bytes = to_bytes_v1(&small_dict()?)?;
    for n in 0..bytes.len() {
        let r = from_bytes::<StateDict>(&bytes[..n]);
        assert!(matches!(r, Err(Error::Format { .. })), "cut at {n}");
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(from_bytes::<StateDict>(&b).is_err(), "bit {i}");
        assert!(state_dict_from_bytes(&b).is_err(), "bit {i}");
    }
    Ok(())
}

#[test]
fn truncation_at_every_offset_is_an_error() -> Result<()> {
    let bytes = to_bytes(&small_dict()?)?;
    for n in 0..bytes.len() {
        let r = from_bytes::<StateDict>(&bytes[..n]);
        assert!(matches!(r, Err(Error::Format { .. })), "cut at {n}");
    }
    Ok(())
}

#[test]
fn every_single_bit_flip_is_an_error() -> Result<()> {
    let bytes = to_bytes(&small_dict()?)?;
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(from_bytes::<StateDict>(&b).is_err(), "bit {i}");
    }
    Ok(())
}

#[test]
fn payload_mutations_past_the_checksum_never_panic() -> Result<()> {
    // re-frame each mutated payload with a valid checksum so the decoder itself is hit
    let bytes = to_bytes(&small_dict()?)?;
    let body = &bytes[HEADER_LEN..];
    for i in 0..body.len() * 8 {
        let mut b = body.to_vec();
        b[i / 8] ^= 1 << (i % 8);
        let _ = from_bytes::<StateDict>(&frame(&b));
    }
    for n in 0..body.len() {
        assert!(from_bytes::<StateDict>(&frame(&body[..n])).is_err());
    }
    Ok(())
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn crafted_tensor(dtype: &str, shape: &[u64], data_len: u64, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    varint(dtype.len() as u64, &mut b);
    b.extend_from_slice(dtype.as_bytes());
    varint(shape.len() as u64, &mut b);
    for &d in shape {
        varint(d, &mut b);
    }
    varint(data_len, &mut b);
    b.extend_from_slice(data);
    b
}

#[test]
fn crafted_sizes_are_rejected_before_allocating() {
    // 10^12 elements claimed, 8 bytes present
    let p = crafted_tensor(
        "float32",
        &[1_000_000, 1_000_000],
        4_000_000_000_000,
        &[0; 8],
    );
    let e = from_bytes::<Tensor>(&frame(&p))
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("bad payload")));
    // shape whose byte size overflows usize
    let p = crafted_tensor("float32", &[u64::MAX / 2, 16], 8, &[0; 8]);
    assert!(from_bytes::<Tensor>(&frame(&p)).is_err());
    // data length disagreeing with the shape
    let p = crafted_tensor("int64", &[2], 8, &[0; 8]);
    assert!(from_bytes::<Tensor>(&frame(&p)).is_err());
    // unknown dtype
    let p = crafted_tensor("float8_e4m3", &[2], 2, &[0; 2]);
    assert!(from_bytes::<Tensor>(&frame(&p)).is_err());
    // a list claiming 2^60 tensors
    let mut p = Vec::new();
    varint(1 << 60, &mut p);
    assert!(from_bytes::<Vec<Tensor>>(&frame(&p)).is_err());
    // a state dict claiming 2^60 entries, and one with a duplicate key
    assert!(from_bytes::<StateDict>(&frame(&p)).is_err());
    let mut p = Vec::new();
    varint(2, &mut p);
    for _ in 0..2 {
        varint(1, &mut p);
        p.push(b'a');
        p.extend(crafted_tensor("float32", &[1], 4, &[0; 4]));
    }
    let e = from_bytes::<StateDict>(&frame(&p))
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_ref().is_some_and(|e| e.contains("duplicate key")),
        "{e:?}"
    );
}

#[test]
fn header_problems_are_named() -> Result<()> {
    let good = to_bytes(&Tensor::zeros(&[2]))?;
    let msg = |b: &[u8]| {
        from_bytes::<Tensor>(b)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(msg(b"PK\x03\x04 not ours at all, long enough for a header").contains("magic"));
    let mut v = good.clone();
    v[8] = 3;
    assert!(msg(&v).contains("version 3"), "{}", msg(&v));
    let mut v = good.clone();
    v.push(0);
    assert!(msg(&v).contains("header declares"), "{}", msg(&v));
    let mut v = to_bytes_v1(&Tensor::zeros(&[2]))?;
    v.push(0);
    assert!(msg(&v).contains("payload"));
    let mut v = good.clone();
    let last = v.len() - 1;
    v[last] ^= 0x40;
    assert!(msg(&v).contains("checksum"));
    Ok(())
}

#[test]
fn safetensors_roundtrip_and_hostile_bytes() -> Result<()> {
    let sd = small_dict()?;
    let bytes = safetensors_to_bytes(&sd)?;
    let back = safetensors_from_bytes(&bytes)?;
    assert_holds(&back, &sd)?;
    for n in 0..bytes.len() {
        assert!(safetensors_from_bytes(&bytes[..n]).is_err(), "cut at {n}");
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        let _ = safetensors_from_bytes(&b);
    }
    Ok(())
}

fn mlp() -> Sequential<(Linear, ReLU, Linear)> {
    Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 3)))
}

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

/// A scratch file path unique to this process and `tag`.
fn scratch(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nn-io-unit-{tag}-{}", std::process::id()))
}

fn write_raw(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[test]
fn file_scanner_agrees_with_decoder_and_rejects_every_damage() -> Result<()> {
    let sd = small_dict()?;
    let bytes = to_bytes(&sd)?;
    let path = scratch("scan");
    write_raw(&path, &bytes)?;
    assert_same(&sd, &load_state_dict_file(&path)?)?;
    for n in 0..bytes.len() {
        write_raw(&path, &bytes[..n])?;
        assert!(
            matches!(load_state_dict_file(&path), Err(Error::Format { .. })),
            "cut at {n}"
        );
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        write_raw(&path, &b)?;
        assert!(load_state_dict_file(&path).is_err(), "bit {i}");
    }
    // crafted: 10^12 elements claimed, valid checksum
    let mut p = Vec::new();
    varint(1, &mut p);
    varint(1, &mut p);
    p.push(b'w');
    p.extend(crafted_tensor(
        "float32",
        &[1_000_000, 1_000_000],
        4_000_000_000_000,
        &[0; 8],
    ));
    write_raw(&path, &frame(&p))?;
    let e = load_state_dict_file(&path).err().map(|e| e.to_string());
    assert!(e.as_ref().is_some_and(|e| e.contains("exceeds")), "{e:?}");
    // mutated payloads behind a valid checksum reach the scanner: errors or values, no panic
    let body = &bytes[HEADER_LEN..];
    for i in 0..body.len() * 8 {
        let mut b = body.to_vec();
        b[i / 8] ^= 1 << (i % 8);
        write_raw(&path, &frame(&b))?;
        let scanned = load_state_dict_file(&path).ok();
        let decoded = from_bytes::<StateDict>(&frame(&b)).ok();
        assert_eq!(scanned.is_some(), decoded.is_some(), "bit {i}");
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn file_load_writes_in_place_only_when_unobservable() -> Result<()> {
    let path = scratch("inplace");
    let src = mlp();
    src.save(&path)?;
    let net = mlp();
    let snapshot = net.0.weight.data()?; // shares the storage: must not change
    let before = snapshot.to_vec::<f32>()?;
    net.load(&path)?;
    assert_eq!(snapshot.to_vec::<f32>()?, before);
    drop(snapshot);
    let want = src.2.weight.data()?.to_vec::<f32>()?;
    assert_eq!(net.2.weight.data()?.to_vec::<f32>()?, want);
    // a second load goes in place (no snapshot alive) and gives the same values
    net.0.weight.update(|d| d.add_scalar(1.0))?;
    let addr = |p: &crate::Param| {
        p.data()
            .map(|d| std::sync::Arc::as_ptr(d.storage()) as *const u8 as usize)
    };
    let at = addr(&net.0.weight)?;
    net.load(&path)?;
    assert_eq!(addr(&net.0.weight)?, at, "loaded in place");
    assert_eq!(
        net.0.weight.data()?.to_vec::<f32>()?,
        src.0.weight.data()?.to_vec::<f32>()?
    );
    // a failed strict load from a file changes nothing
    let other = Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 5)));
    let keep = other.0.weight.data()?.to_vec::<f32>()?;
    assert!(other.load(&path).is_err());
    assert_eq!(other.0.weight.data()?.to_vec::<f32>()?, keep);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn safetensors_file_scanner_agrees_with_the_crate() -> Result<()> {
    let sd = small_dict()?;
    let bytes = safetensors_to_bytes(&sd)?;
    let path = scratch("st-scan");
    write_raw(&path, &bytes)?;
    assert_same(&safetensors_from_bytes(&bytes)?, &load_safetensors(&path)?)?;
    for n in 0..bytes.len() {
        write_raw(&path, &bytes[..n])?;
        assert!(load_state_dict_file(&path).is_err(), "cut at {n}");
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        write_raw(&path, &b)?;
        let ours = load_safetensors(&path).ok();
        let crate_ = safetensors_from_bytes(&b).ok();
        assert_eq!(ours.is_some(), crate_.is_some(), "bit {i}");
        if let (Some(a), Some(c)) = (ours, crate_) {
            assert_same(&a, &c)?;
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn self_describing_formats_roundtrip_too() -> Result<()> {
    let sd = small_dict()?;
    let json_err = |e: serde_json::Error| Error::Format {
        path: "<json>".into(),
        msg: e.to_string(),
    };
    let json = serde_json::to_string(&sd).map_err(json_err)?;
    assert!(json.starts_with(r#"{"w":{"dtype":"float32","shape":[2,2],"data":["#));
    let back: StateDict = serde_json::from_str(&json).map_err(json_err)?;
    assert_same(&sd, &back)?;
    // too many data bytes, wrong field order, unknown field: errors
    for bad in [
        r#"{"dtype":"float32","shape":[1],"data":[0,0,0,0,0]}"#,
        r#"{"data":[0,0,0,0],"dtype":"float32","shape":[1]}"#,
        r#"{"dtype":"float32","shape":[1],"data":[0,0,0,0],"grad":1}"#,
    ] {
        assert!(serde_json::from_str::<Tensor>(bad).is_err(), "{bad}");
    }
    Ok(())
}
