//! Readers for the data files people have: MNIST/Fashion-MNIST IDX ([`idx`]), CIFAR
//! binary batches ([`cifar`]), numpy `.npy` ([`npy`], also memory-mapped) and `.npz`
//! ([`npz`]), CSV with a header (`csv::CsvDataset`, feature `csv`), and torchvision-style image
//! folders (`image_folder::ImageFolder`, feature `image`).
//!
//! Every reader checks the sizes a file claims against the file before allocating, and
//! caps decompression, so a truncated or hostile file is an error naming it
//! ([`crate::Error::Format`]), with bounded memory.

pub mod cifar;
#[cfg(feature = "csv")]
pub mod csv;
pub mod idx;
#[cfg(feature = "image")]
pub mod image_folder;
pub mod npy;
pub mod npz;

pub use cifar::Cifar;
#[cfg(feature = "csv")]
pub use csv::CsvDataset;
pub use idx::{read_idx, Mnist};
#[cfg(feature = "image")]
pub use image_folder::ImageFolder;
pub use npy::{read_npy, write_npy, NpyFile};
pub use npz::read_npz;

use crate::io::files::FileBytes;
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Deflate expands at most ~1032:1: more than this per compressed byte is a bomb.
const MAX_INFLATE_RATIO: u64 = 1100;

/// A format error naming `path`.
pub(crate) fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Inflates `compressed` (deflate with or without gzip framing) into at most
/// `MAX_INFLATE_RATIO` times its size (and at most `limit` bytes when given).
pub(crate) fn inflate(
    compressed: &[u8],
    gzip: bool,
    limit: Option<u64>,
    path: &Path,
) -> Result<Vec<u8>> {
    let cap = (compressed.len() as u64)
        .saturating_mul(MAX_INFLATE_RATIO)
        .saturating_add(1 << 16)
        .min(limit.unwrap_or(u64::MAX));
    let mut out = Vec::new();
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(compressed))
    } else {
        Box::new(flate2::read::DeflateDecoder::new(compressed))
    };
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(path, format!("corrupt compressed data: {e}")))?;
    if out.len() as u64 > cap {
        return Err(bad(
            path,
            format!(
                "decompresses to more than {cap} bytes (corrupt, or not the file it claims to be)"
            ),
        ));
    }
    Ok(out)
}

/// A file's bytes, gunzipped when it starts with the gzip magic (MNIST's `.gz` files).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let file = FileBytes::open(path)?;
    let b = file.bytes();
    if b.starts_with(&[0x1f, 0x8b]) {
        inflate(b, true, None, path)
    } else {
        Ok(b.to_vec())
    }
}
