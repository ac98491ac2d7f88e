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
