//! Tests of the safetensors reader and writer: round trips, hostile bytes, our file
//! scanner against the crate's parser.

use crate::io::tests_support::{assert_holds, assert_same, small_dict};
use crate::io::*;
use crate::{Error, Result};

/// A scratch file path unique to this process and `tag`.
fn scratch(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nn-io-st-{tag}-{}", std::process::id()))
}

fn write_raw(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
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

/// Issue 29: eight tensors of `2^61 - 1` bytes each (what the crate's own size check
/// allows) put a ninth, empty one at offset `2^64 - 8`; adding the data section's start
/// to that offset overflowed before the size check ran.
#[test]
fn safetensors_offsets_near_usize_max_are_an_error() {
    let big = (1usize << 61) - 1;
    let mut parts: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#""t{i}":{{"dtype":"U8","shape":[{big}],"data_offsets":[{},{}]}}"#,
                i * big,
                (i + 1) * big
            )
        })
        .collect();
    let end = 8 * big;
    parts.push(format!(
        r#""z":{{"dtype":"U8","shape":[0],"data_offsets":[{end},{end}]}}"#
    ));
    let header = format!("{{{}}}", parts.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    assert!(state_dict_from_bytes(&bytes).is_err());
    let path = scratch("near-max");
    assert!(write_raw(&path, &bytes).is_ok());
    assert!(load_safetensors(&path).is_err());
    let _ = std::fs::remove_file(&path);
}
