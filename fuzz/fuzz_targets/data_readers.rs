//! Fuzz target for the readers of `nn_core::data::readers`: IDX (plain and gzip), `.npy`
//! (whole and memory-mapped rows), `.npz` (stored and deflate, through the zip reader),
//! and CIFAR batches. Arbitrary bytes must give `Ok` or `Err`, never a panic, a hang or
//! an allocation the input does not justify.
//!
//! Run: see `fuzz/README.md` (`data_readers` in place of `load`).
#![no_main]

use nn_core::data::readers::{self, idx, npy};
use nn_core::data::Dataset;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let what = Path::new("<fuzz>");
    // in memory
    let _ = idx::parse_idx(data, what);
    let _ = npy::npy_from_bytes(data, what);
    // as a file: gzip detection, the zip reader, the mapping
    let path = scratch_dir().join(format!("nn-fuzz-data-{}", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = readers::read_idx(&path);
        let _ = readers::read_npz(&path);
        let _ = readers::Cifar::cifar10(&[&path]);
        let _ = readers::Cifar::cifar100(&[&path]);
        if let Ok(rows) = readers::NpyFile::open(&path) {
            for i in 0..rows.len().min(8) {
                let _ = rows.get(i);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
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
