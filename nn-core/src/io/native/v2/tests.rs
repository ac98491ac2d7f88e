//! Unit tests of native format version 2 against hostile input: references outside the
//! data section, overlapping or misaligned tensors, huge claimed sizes, damaged chunks,
//! bad header fields; every one an error naming the file and the tensor, through every
//! loader (in memory, generic file load, state-dict scanner, model load).

use crate::io::*;
use crate::layers::Linear;
use crate::module::ModuleExt;
use crate::{Error, Tensor};

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(s: &str, out: &mut Vec<u8>) {
    varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// A state-dict skeleton: (name, dtype, shape, offset, length) per tensor.
fn skeleton(entries: &[(&str, &str, &[u64], u64, u64)]) -> Vec<u8> {
    let mut b = Vec::new();
    varint(entries.len() as u64, &mut b);
    for (name, dtype, shape, off, len) in entries {
        string(name, &mut b);
        string(dtype, &mut b);
        varint(shape.len() as u64, &mut b);
        for &d in *shape {
            varint(d, &mut b);
        }
        varint(*off, &mut b);
        varint(*len, &mut b);
    }
    b
}

fn scratch(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nn-io-v2-{tag}-{}", std::process::id()))
}

/// The error messages of every loader for `bytes`, written to a file at `path`.
fn messages(bytes: &[u8], path: &std::path::Path) -> Result<Vec<String>> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))?;
    let m = |r: std::result::Result<String, Error>| match r {
        Ok(v) => format!("unexpectedly Ok: {v}"),
        Err(e) => e.to_string(),
    };
    let net = Linear::new(2, 2);
    Ok(vec![
        m(from_bytes::<StateDict>(bytes).map(|_| "from_bytes".into())),
        m(state_dict_from_bytes(bytes).map(|_| "state_dict_from_bytes".into())),
        m(load::<StateDict>(path).map(|_| "load".into())),
        m(load_state_dict_file(path).map(|_| "load_state_dict_file".into())),
        m(net.load(path).map(|_| "net.load".into())),
    ])
}

fn assert_all(bytes: &[u8], tag: &str, want: &[&str]) -> Result<()> {
    let path = scratch(tag);
    for (i, m) in messages(bytes, &path)?.iter().enumerate() {
        for w in want {
            assert!(m.contains(w), "{tag}, loader {i}: {m:?} lacks {w:?}");
        }
        if i >= 2 {
            let p = path.display().to_string();
            assert!(
                m.contains(&p),
                "{tag}, loader {i}: {m:?} does not name the file"
            );
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn a_valid_crafted_file_loads() -> Result<()> {
    // Linear(2, 2): weight [2, 2] at 0, bias [2] at 64
    let sk = skeleton(&[
        ("weight", "float32", &[2, 2], 0, 16),
        ("bias", "float32", &[2], 64, 8),
    ]);
    let mut data = vec![0u8; 72];
    data[..4].copy_from_slice(&1.5f32.to_le_bytes());
    let f = frame_v2(&sk, &data, 4096);
    let sd = state_dict_from_bytes(&f)?;
    assert_eq!(
        sd.get("weight").map(|t| t.shape().to_vec()),
        Some(vec![2, 2])
    );
    let path = scratch("ok");
    std::fs::write(&path, &f).map_err(|e| Error::io(&path, e))?;
    let net = Linear::new(2, 2);
    net.load(&path)?;
    assert_eq!(net.weight.data()?.to_vec::<f32>()?[0], 1.5);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn references_outside_the_data_section_are_named() -> Result<()> {
    let sk = skeleton(&[
        ("weight", "float32", &[2, 2], 0, 16),
        ("bias", "float32", &[2], 64, 8),
    ]);
    // bias would end at 72, the section has 70 bytes
    assert_all(
        &frame_v2(&sk, &[0; 70], 4096),
        "outside",
        &["`bias`", "outside the 70-byte data section"],
    )?;
    // an offset near u64::MAX
    let sk = skeleton(&[("weight", "float32", &[2, 2], u64::MAX - 7, 16)]);
    assert_all(
        &frame_v2(&sk, &[0; 64], 4096),
        "wrap",
        &["`weight`", "outside"],
    )
}

#[test]
fn overlapping_and_misaligned_tensors_are_refused() -> Result<()> {
    let sk = skeleton(&[
        ("weight", "float32", &[2, 2], 0, 16),
        ("bias", "float32", &[2], 0, 8),
    ]);
    assert_all(
        &frame_v2(&sk, &[0; 64], 4096),
        "overlap",
        &["`bias`", "overlaps the previous tensor"],
    )?;
    let sk = skeleton(&[
        ("weight", "float32", &[2, 2], 0, 16),
        ("bias", "float32", &[2], 16, 8),
    ]);
    assert_all(
        &frame_v2(&sk, &[0; 64], 4096),
        "misaligned",
        &["`bias`", "not 64-byte aligned"],
    )
}

#[test]
fn huge_claimed_sizes_are_refused_before_allocating() -> Result<()> {
    // 10^12 f32 elements, length consistent with the shape, 64 bytes of data
    let sk = skeleton(&[(
        "weight",
        "float32",
        &[1_000_000, 1_000_000],
        0,
        4_000_000_000_000,
    )]);
    assert_all(
        &frame_v2(&sk, &[0; 64], 4096),
        "huge",
        &["`weight`", "outside"],
    )?;
    // a length disagreeing with dtype and shape, and a shape whose size overflows
    let sk = skeleton(&[("weight", "float32", &[2, 2], 0, 8)]);
    assert_all(&frame_v2(&sk, &[0; 64], 4096), "len", &["weight"])?;
    let sk = skeleton(&[("weight", "float32", &[u64::MAX / 2, 16], 0, 8)]);
    assert_all(&frame_v2(&sk, &[0; 64], 4096), "overflow", &["weight"])?;
    // a tensor count of 2^60
    let mut sk = Vec::new();
    varint(1 << 60, &mut sk);
    assert_all(&frame_v2(&sk, &[], 4096), "count", &["bad payload"])
}

#[test]
fn a_damaged_chunk_names_its_tensors() -> Result<()> {
    // three 4 KiB chunks: `a` in the first, `b` across the second and third
    let sk = skeleton(&[
        ("a", "float32", &[16], 0, 64),
        ("b", "float32", &[2048], 4096, 8192),
    ]);
    let f = frame_v2(&sk, &vec![0u8; 4096 + 8192], 4096);
    let data_start = f.len() - (4096 + 8192);
    let mut g = f.clone();
    g[data_start + 5000] ^= 1;
    assert_all(
        &g,
        "chunk-b",
        &["checksum mismatch", "data bytes 4096..8192", "`b`"],
    )?;
    let mut g = f.clone();
    g[data_start + 100] ^= 1; // padding after `a`
    assert_all(&g, "chunk-pad", &["checksum mismatch", "`a`"])?;
    // a damaged skeleton or chunk table is the header's checksum
    let mut g = f.clone();
    g[HEADER_LEN_V2 + 1] ^= 1;
    assert_all(&g, "skeleton", &["checksum mismatch in the header"])
}

#[test]
fn bad_header_fields_are_named() -> Result<()> {
    let good = to_bytes(&Tensor::zeros(&[3]))?;
    let path = scratch("hdr");
    let set = |at: usize, v: u64, w: usize| {
        let mut b = good.clone();
        b[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
        b
    };
    let msg = |b: &[u8]| {
        std::fs::write(&path, b).ok();
        [
            from_bytes::<Tensor>(b).err().map(|e| e.to_string()),
            load::<Tensor>(&path).err().map(|e| e.to_string()),
        ]
    };
    for (b, want) in [
        (set(40, 1000, 4), "chunk size 1000"),
        (set(40, 1 << 31, 4), "chunk size"),
        (set(24, 8, 8), "header declares"),
        (
            {
                let mut b = set(24, 72, 8);
                b[32..40].copy_from_slice(&(good.len() as u64 - 72).to_le_bytes());
                b
            },
            "data offset 72 is not 64-aligned",
        ),
        (set(32, u64::MAX, 8), "header declares"),
        (set(16, u64::MAX - 10, 8), "overflow"),
        (set(12, 1, 4), "flags"),
        (set(56, 1, 8), "flags"),
    ] {
        for m in msg(&b) {
            let m = m.unwrap_or_default();
            assert!(m.contains(want), "{want}: {m}");
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn a_file_larger_than_one_chunk_round_trips_and_names_damage() -> Result<()> {
    // 5 MiB of f32 over two 4 MiB chunks, and a small tensor after it
    let mut sd = StateDict::new();
    sd.insert("big", Tensor::rand(&[5 << 18]));
    sd.insert("small", Tensor::arange(0, 3));
    let path = scratch("big");
    save(&sd, &path)?;
    let back = load_state_dict_file(&path)?;
    assert_eq!(
        back.get("big").map(|t| t.to_vec::<f32>()).transpose()?,
        sd.get("big").map(|t| t.to_vec::<f32>()).transpose()?
    );
    let back: StateDict = load(&path)?;
    assert_eq!(
        back.get("small").map(|t| t.to_vec::<i64>()).transpose()?,
        Some(vec![0, 1, 2])
    );
    let mut b = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let last = b.len() - 1;
    b[last] ^= 0x10;
    std::fs::write(&path, &b).map_err(|e| Error::io(&path, e))?;
    let m = load_state_dict_file(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        m.contains("chunk 1") && m.contains("`big`") && m.contains("`small`"),
        "{m}"
    );
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn stream_copy_copies_every_alignment_and_length() {
    let src: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    for off in 0..17 {
        for len in [0, 1, 15, 16, 63, 64, 65, 127, 200, 983] {
            let mut dst = vec![0u8; 1000];
            let end = (off + len).min(1000);
            crate::io::files::stream_copy(&mut dst[off..end], &src[3..3 + end - off]);
            assert_eq!(
                &dst[off..end],
                &src[3..3 + end - off],
                "off {off} len {len}"
            );
            assert!(dst[..off].iter().all(|&b| b == 0) && dst[end..].iter().all(|&b| b == 0));
        }
    }
}

/// Issue 29: a damaged chunk names the tensors in it from references not yet checked; a
/// reference ending past `u64::MAX` overflowed while naming them.
#[test]
fn a_damaged_chunk_with_a_reference_near_u64_max_is_a_checksum_error() -> Result<()> {
    // a reference that starts in the damaged chunk and claims `u64::MAX` bytes
    let sk = skeleton(&[("far", "uint8", &[u64::MAX], 64, u64::MAX)]);
    let mut f = frame_v2(&sk, &[0u8; 4096], 4096);
    let last = f.len() - 1;
    f[last] ^= 1;
    assert_all(&f, "near-max", &["checksum mismatch"])
}
