//! Tests of the native format: round trips, version-1 files, and hostile input
//! (truncation at every offset, every single-bit flip, crafted lengths).

use crate::io::tests_support::{assert_same, mlp, small_dict};
use crate::io::*;
use crate::layers::{Linear, ReLU, Sequential};
use crate::module::ModuleExt;
use crate::{DType, Error, Tensor};
use std::collections::BTreeMap;

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
    let raw = crate::io::bytes::le_bytes(&t)?;
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
    crate::io::native::test_writer::save_v1(&sd, &path)?;
    assert_eq!(std::fs::read(&path).map_err(|e| Error::io(&path, e))?, v1);
    assert_same(&sd, &load::<StateDict>(&path)?)?;
    assert_same(&sd, &load_state_dict_file(&path)?)?;
    let net = mlp();
    crate::io::native::test_writer::save_v1(&net.state_dict()?, &path)?;
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
