//! Fuzz target for the `torch.save` reader (zip container + restricted unpickler):
//! arbitrary bytes must give `Ok` or `Err`, never a panic, a hang or an allocation the
//! input does not justify.
//!
//! Each input is read twice: as a whole file (the zip reader, seeded with real
//! `torch.save` files in `corpus/torch_bytes`), and as the `data.pkl` of a valid
//! archive holding one 64-byte storage `data/0`, so mutations reach the unpickler and
//! the view checks directly. Run: see `fuzz/README.md` (`torch_bytes` in place of
//! `load_bytes`).
#![no_main]

use nn_core::io;

/// A zip archive of stored entries (what `torch.save` writes), no alignment.
fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let at = out.len() as u32;
        let crc = crc32(data);
        let head = |sig: &[u8], v: &mut Vec<u8>| {
            v.extend_from_slice(sig);
            v.extend_from_slice(&[20, 0]);
        };
        head(b"PK\x03\x04", &mut out);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x21, 0]);
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&[0, 0]);
        };
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        head(b"PK\x01\x02", &mut central);
        central.extend_from_slice(&[20, 0]);
        common(&mut central);
        central.extend_from_slice(&[0; 10]);
        central.extend_from_slice(&at.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    let n = (entries.len() as u16).to_le_bytes();
    out.extend_from_slice(&[n[0], n[1], n[0], n[1]]);
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_at.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = io::state_dict_from_bytes(data);
    let _ = io::inspect_bytes(data);
    let storage = [0u8; 64];
    let zip = stored_zip(&[("a/data.pkl", data), ("a/data/0", &storage), ("a/byteorder", b"little")]);
    let _ = io::state_dict_from_bytes(&zip);
});
