//! Fuzz target for the loaders: arbitrary bytes must give `Ok` or `Err`, never a panic,
//! a hang or an allocation the input does not justify.
//!
//! Run: `cargo install cargo-fuzz && cd fuzz && cargo +nightly fuzz run load -- -malloc_limit_mb=256`
//! (without cargo-fuzz: build with nightly, `--target x86_64-unknown-linux-gnu` and the
//! sancov `RUSTFLAGS` cargo-fuzz uses, then run `target/.../release/load CORPUS_DIR`).
//! A 120 s run (89k inputs, malloc limit 256 MB) found nothing.
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
    // the file scanner (the path models load through)
    let path = std::env::temp_dir().join(format!("nn-fuzz-{}", std::process::id()));
    if std::fs::write(&path, &framed).is_ok() {
        let _ = io::load_state_dict_file(&path);
    }
    // safetensors
    let _ = io::safetensors_from_bytes(data);
});
