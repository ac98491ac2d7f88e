//! The `torch.save` reader and writer against damaged and crafted input: truncation at
//! every offset and every single-bit flip of a real PyTorch file, pickles built to
//! exhaust memory or the stack, and round trips of what we write.

use crate::io::*;
use crate::{DType, Tensor};

const MLP: &[u8] = include_bytes!("../../../../tests/fixtures/pt/mlp_f32.pt");
const VIEWS: &[u8] = include_bytes!("../../../../tests/fixtures/pt/views.pt");

fn parse(p: &[u8]) -> std::result::Result<usize, String> {
    let p = torch::unpickle::parse(p)?;
    Ok(p.leaves()?.len())
}

#[test]
fn truncated_pytorch_files_are_errors_at_every_offset() {
    for file in [MLP, VIEWS] {
        for n in 0..file.len() {
            assert!(state_dict_from_bytes(&file[..n]).is_err(), "{n}");
        }
        assert!(state_dict_from_bytes(file).is_ok());
    }
}

#[test]
fn every_single_bit_flip_of_a_pytorch_file_is_ok_or_err_never_a_panic() {
    let mut f = MLP.to_vec();
    let (mut ok, mut err) = (0, 0);
    for i in 0..f.len() {
        for b in 0..8 {
            f[i] ^= 1 << b;
            match state_dict_from_bytes(&f) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
            f[i] ^= 1 << b;
        }
    }
    // flips inside tensor data and padding still load (zip has no check we verify);
    // flips in the structure are caught
    assert!(ok > 0 && err > 0, "{ok} {err}");
}

#[test]
fn memo_references_share_instead_of_copying() {
    // a list holding itself twice, 40 times over: 2^40 elements if GET copied
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        p.extend_from_slice(&[b']', b'(', b'h', 0, b'h', 0, b'e', b'q', 0]);
    }
    p.push(b'.');
    match parse(&p) {
        Err(e) => assert!(e.contains("referenced too many times"), "{e}"),
        Ok(n) => panic!("walked {n} leaves"),
    }
}

#[test]
fn limits_and_refusals_are_named() {
    let deep: Vec<u8> = [&[0x80, 2][..], &[b']'; 2000], &[b'a'; 1999], b"."].concat();
    assert!(parse(&deep).is_err_and(|e| e.contains("nested deeper than 1000")));
    let cycle = b"\x80\x02]q\x00h\x00a.";
    assert!(
        parse(cycle).is_err_and(|e| e.contains("nested deeper") || e.contains("too many times"))
    );
    assert!(parse(b"\x80\x02h\x05.").is_err_and(|e| e.contains("memo 5 is unset")));
    assert!(parse(b"\x80\x02X\xff\xff\xff\xff").is_err_and(|e| e.contains("truncated")));
    assert!(parse(b"\x80\x02cposix\nsystem\n.").is_err_and(|e| e.contains("`posix.system`")));
    assert!(parse(b"\x80\x02cbuiltins\ngetattr\n.").is_err_and(|e| e.contains("not allowed")));
    // INST, OBJ: opcodes that build arbitrary objects
    assert!(parse(b"\x80\x02(io\nsystem\n.").is_err_and(|e| e.contains("opcode 0x69")));
    assert!(parse(b"\x80\x02(o.").is_err_and(|e| e.contains("opcode 0x6f")));
    assert!(parse(b"\x80\x02K\x01K\x02R.").is_err_and(|e| e.contains("REDUCE")));
    assert!(parse(b"\x80\x02}K\x01s.").is_err());
    assert!(
        parse(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.")
            .is_err_and(|e| e.contains("does not fit 64 bits"))
    );
    assert_eq!(
        parse(b"\x80\x02\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff."),
        Ok(1)
    );
}

#[test]
fn written_archives_round_trip_every_dtype_and_shape() -> Result<()> {
    let base = Tensor::from_vec((0..24).map(|i| i as f32 - 7.5).collect(), &[2, 3, 4])?;
    let mut sd = StateDict::new();
    for d in DType::ALL {
        sd.insert(format!("t.{d}"), base.to_dtype(d)?);
    }
    sd.insert("scalar", Tensor::scalar(2.5));
    sd.insert("empty", Tensor::zeros(&[0, 3]));
    let bytes = torch_to_bytes(&sd)?;
    let back = state_dict_from_bytes(&bytes)?;
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        sd.keys().collect::<Vec<_>>()
    );
    for (k, t) in sd.iter() {
        let b = back.get(k).map(|b| b.to_host()).transpose()?;
        assert_eq!(b, Some(t.to_host()?), "{k}");
        assert_eq!(
            back.get(k).map(|b| b.shape().to_vec()),
            Some(t.shape().to_vec())
        );
    }
    assert_eq!(inspect_bytes(&bytes)?.format, FileFormat::Torch);
    Ok(())
}

#[test]
fn tied_tensors_are_written_once() -> Result<()> {
    let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    let mut sd = StateDict::new();
    sd.insert("a.weight", w.clone());
    sd.insert("a.bias", Tensor::zeros(&[2]));
    sd.insert("b.weight", w);
    let bytes = torch_to_bytes(&sd)?;
    let entries = torch::zip::read_entries(bytes.as_slice(), bytes.len() as u64, "mem")?;
    let storages: Vec<&str> = entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| n.contains("/data/"))
        .collect();
    assert_eq!(storages, ["archive/data/0", "archive/data/1"]);
    let back = state_dict_from_bytes(&bytes)?;
    let get = |k: &str| back.get(k).map(|t| t.to_vec::<f32>()).transpose();
    assert_eq!(get("b.weight")?, Some(vec![1.0, 2.0, 3.0, 4.0]));
    assert_eq!(get("a.bias")?, Some(vec![0.0, 0.0]));
    Ok(())
}

#[test]
fn repeated_views_of_one_storage_are_bounded_by_the_file() -> Result<()> {
    // 400 keys, each the whole of one 64 KiB storage: 26 MB of copies from a 70 KB file
    let mut p = b"\x80\x02}(".to_vec();
    for i in 0..400 {
        let key = format!("k{i:03}");
        p.extend_from_slice(b"X\x04\x00\x00\x00");
        p.extend_from_slice(key.as_bytes());
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuM\x00\x40tQK\x00M\x00\x40\x85K\x01\x85\x89)tR");
    }
    p.extend_from_slice(b"u.");
    let zip_of = |n: usize| -> Result<Vec<u8>> {
        let mut z = torch::zip::ZipWriter::new(Vec::new());
        z.entry("a/data.pkl", &[&p]).map_err(crate::Error::from)?;
        z.entry("a/data/0", &[&vec![0u8; n]])
            .map_err(crate::Error::from)?;
        z.finish().map_err(crate::Error::from)
    };
    let e = state_dict_from_bytes(&zip_of(1 << 16)?)
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_ref()
            .is_some_and(|e| e.contains("one storage viewed again and again")),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn an_empty_tensor_may_have_any_offset() -> Result<()> {
    // {"w": _rebuild_tensor_v2(storage "0" of 32 floats, offset 2^62, size (0,), stride (1,))}
    let mut p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK tQ".to_vec();
    p.extend_from_slice(b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40K\x00\x85K\x01\x85\x89)tRs.");
    let mut z = torch::zip::ZipWriter::new(Vec::new());
    z.entry("a/data.pkl", &[&p]).map_err(crate::Error::from)?;
    z.entry("a/data/0", &[&[0u8; 128]])
        .map_err(crate::Error::from)?;
    let bytes = z.finish().map_err(crate::Error::from)?;
    let sd = state_dict_from_bytes(&bytes)?;
    assert_eq!(sd.get("w").map(|t| t.shape().to_vec()), Some(vec![0]));
    Ok(())
}

#[test]
fn views_gather_as_pytorch_indexes() -> Result<()> {
    let sd = state_dict_from_bytes(VIEWS)?;
    let t = sd.get("t").map(|t| t.to_vec::<f32>()).transpose()?;
    // base.t() of arange(24).reshape(4, 6)
    let want: Vec<f32> = (0..6)
        .flat_map(|c| (0..4).map(move |r| (r * 6 + c) as f32))
        .collect();
    assert_eq!(t, Some(want));
    let row = sd.get("row").map(|t| t.to_vec::<f32>()).transpose()?;
    assert_eq!(row, Some((12..18).map(|x| x as f32).collect()));
    Ok(())
}

#[test]
fn a_safetensors_header_length_with_low_byte_0x80_is_not_taken_for_a_pickle() {
    // safetensors has no magic: its first byte is the header length's low byte, and a
    // 128-byte header starts like pickle's protocol opcode
    let json = br#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut header = json.to_vec();
    header.resize(0x80, b' ');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.extend_from_slice(&1.5f32.to_le_bytes());
    assert_eq!(file[0], 0x80);
    let sd = state_dict_from_bytes(&file).unwrap();
    assert_eq!(sd.get("t").unwrap().to_vec::<f32>().unwrap(), vec![1.5f32]);
    // a real bare pickle is still refused with how to convert it
    let e = state_dict_from_bytes(&[0x80, 2, b'}', b'.'])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bare pickle"), "{e}");
}

/// Issue 29: the row-major strides of an empty tensor with huge dims overflow; writing it
/// as a `.pt` archive is an error instead of wrapping strides.
#[test]
fn an_empty_tensor_whose_strides_overflow_is_refused() -> Result<()> {
    let t = Tensor::from_vec(Vec::<f32>::new(), &[0, 1 << 40, 1 << 40])?;
    let sd = StateDict::from_unique_entries(vec![("e".to_string(), t)]);
    let err = torch_to_bytes(&sd).err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|m| m.contains("strides")),
        "{err:?}"
    );
    Ok(())
}
