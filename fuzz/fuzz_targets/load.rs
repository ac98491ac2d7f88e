//! Fuzz target for the loaders: arbitrary bytes must give `Ok` or `Err`, never a panic,
//! a hang or an allocation the input does not justify.
//!
//! Goes through a real file (one temporary file, rewritten per input); `load_bytes` is
//! the faster in-memory twin. Run: see `fuzz/README.md`.
#![no_main]

use nn_core::io;
use nn_core::{StateDict, Tensor};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // as a whole file: the header and checksum usually reject it
    let _ = io::from_bytes::<StateDict>(data);
    let _ = io::from_bytes::<Vec<Tensor>>(data);
    // as a payload behind a valid header, so the postcard decoder itself is exercised
    let framed = io::frame(data);
    let _ = io::from_bytes::<StateDict>(&framed);
    let _ = io::from_bytes::<Tensor>(&framed);
    let _ = io::from_bytes::<(Tensor, Tensor)>(&framed);
    // the file scanner (the path models load through); the file is removed again
    let path = scratch_dir().join(format!("nn-fuzz-{}", std::process::id()));
    if std::fs::write(&path, &framed).is_ok() {
        let _ = io::load_state_dict_file(&path);
        let _ = std::fs::remove_file(&path);
    }
    // the raw bytes as a file, copied and mapped (tensors borrowing the mapping are read
    // back, so a bad range or alignment would fault or panic here)
    if std::fs::write(&path, data).is_ok() {
        let _ = io::load_state_dict_file(&path);
        if let Ok(sd) = io::map_state_dict_file(&path) {
            for (_, t) in sd.iter() {
                let _ = t.to_host();
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    // safetensors
    let _ = io::safetensors_from_bytes(data);
});

/// Where the per-input file goes: `/dev/shm` (memory) when there is one, so each input
/// costs no disk write; else the usual temporary directory.
fn scratch_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
