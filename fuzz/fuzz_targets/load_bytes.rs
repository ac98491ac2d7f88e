//! In-memory fuzz target for the loaders: the same decoders and scanners as `load`, but
//! no temporary file (about 10x the executions per second). Arbitrary bytes must give
//! `Ok` or `Err`, never a panic, a hang or an allocation the input does not justify.
//!
//! Run: see `fuzz/README.md` (`load_bytes` in place of `load`).
#![no_main]

use nn_core::io;
use nn_core::{StateDict, Tensor};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // as a whole file: the header and checksum usually reject it
    let _ = io::from_bytes::<StateDict>(data);
    let _ = io::from_bytes::<Vec<Tensor>>(data);
    let _ = io::state_dict_from_bytes(data);
    // as a payload behind a valid header, so the payload decoders themselves are exercised
    let framed = io::frame(data);
    let _ = io::from_bytes::<StateDict>(&framed);
    let _ = io::from_bytes::<Tensor>(&framed);
    let _ = io::from_bytes::<(Tensor, Tensor)>(&framed);
    // the scanner models load through, from memory (what `load` reaches via a file)
    let _ = io::state_dict_from_bytes(&framed);
    // version 2: the input split into a tensor list and a data section behind valid
    // sums, so the reference checks (bounds, alignment, overlap) are reached
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (skeleton, section) = data.split_at(cut);
    let framed = io::frame_v2(skeleton, section, 4096);
    let _ = io::from_bytes::<StateDict>(&framed);
    let _ = io::from_bytes::<Tensor>(&framed);
    let _ = io::from_bytes::<(Tensor, Tensor)>(&framed);
    let _ = io::state_dict_from_bytes(&framed);
    // safetensors, whole-buffer decoder and scanner
    let _ = io::safetensors_from_bytes(data);
});
