//! The UCI optical handwritten digits (1797 8x8 images, 10 classes), shipped inside the
//! repository (`data/digits/digits.csv.gz`, scikit-learn's copy; licence note beside it),
//! so loading needs no network; and a seeded permutation for the split and the batch
//! order that neither depends on the `rand` version nor on global state.
//!
//! Each CSV line holds 64 pixel counts in `0..=16` (row-major 8x8) and the label.
//! Pixels are scaled to `[0, 1]` (divided by 16) on load.

use nn::Tensor;
use std::io::Read;

/// Why the data could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The bytes are not a digits CSV.
    #[error("{origin}: {msg}")]
    Format {
        /// The file (or `<embedded digits.csv.gz>`).
        origin: String,
        /// What is wrong, with the line number.
        msg: String,
    },
    /// A request the data set cannot satisfy.
    #[error("{op}: {msg}")]
    Request {
        /// The method called.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// Building tensors failed.
    #[error(transparent)]
    Nn(#[from] nn::Error),
}

/// Results of this module.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

// The seeded permutation of the split and of every epoch's batch order is
// `nn::data`'s: splitmix64 + Fisher-Yates, stable across versions.
pub use nn::data::seed::{derive_seed, permutation};

/// The compressed CSV, embedded at build time.
const EMBEDDED: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/digits/digits.csv.gz"
));

/// Decompressed-size cap: the real file is 265 kB; a hostile file cannot make us
/// allocate more than this.
const MAX_CSV_BYTES: u64 = 64 << 20;

/// An in-memory set of digit images with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Digits {
    /// `len * FEATURES` pixels in `[0, 1]`, row-major.
    pixels: Vec<f32>,
    /// One class in `0..CLASSES` per image.
    labels: Vec<i64>,
}

impl Digits {
    /// Pixels per image (8x8).
    pub const FEATURES: usize = 64;
    /// Number of classes (digits 0-9).
    pub const CLASSES: usize = 10;
    /// Images in the full set.
    pub const LEN: usize = 1797;

    /// The full set from the copy embedded in the crate.
    pub fn load() -> Result<Digits> {
        Self::from_bytes(EMBEDDED, "<embedded digits.csv.gz>")
    }

    /// Parses CSV bytes, gzip-compressed or plain; `origin` names the source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Digits> {
        let format = |msg: String| DataError::Format {
            origin: origin.to_string(),
            msg,
        };
        let mut text = String::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(bytes)
                .take(MAX_CSV_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| format(format!("gzip: {e}")))?;
            if text.len() as u64 > MAX_CSV_BYTES {
                return Err(format(format!(
                    "decompresses to more than {MAX_CSV_BYTES} bytes"
                )));
            }
        } else {
            text = std::str::from_utf8(bytes)
                .map_err(|e| format(format!("not UTF-8 text: {e}")))?
                .to_string();
        }
        Self::parse_csv(&text).map_err(format)
    }

    fn parse_csv(text: &str) -> std::result::Result<Digits, String> {
        let mut pixels = Vec::with_capacity(Self::LEN * Self::FEATURES);
        let mut labels = Vec::with_capacity(Self::LEN);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut n = 0;
            for field in line.split(',') {
                let v: u8 = field.trim().parse().map_err(|_| {
                    format!(
                        "line {}: field {} is `{field}`, not an integer",
                        i + 1,
                        n + 1
                    )
                })?;
                if n < Self::FEATURES {
                    if v > 16 {
                        return Err(format!("line {}: pixel {v} outside 0..=16", i + 1));
                    }
                    pixels.push(f32::from(v) / 16.0);
                } else if n == Self::FEATURES {
                    if usize::from(v) >= Self::CLASSES {
                        return Err(format!("line {}: label {v} outside 0..=9", i + 1));
                    }
                    labels.push(i64::from(v));
                }
                n += 1;
            }
            if n != Self::FEATURES + 1 {
                return Err(format!(
                    "line {}: {n} fields, expected {} pixels and a label",
                    i + 1,
                    Self::FEATURES
                ));
            }
        }
        if labels.is_empty() {
            return Err("no images".into());
        }
        Ok(Digits { pixels, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Image `i` (64 pixels in `[0, 1]`), None when out of range.
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        self.pixels
            .get(i * Self::FEATURES..(i + 1) * Self::FEATURES)
    }

    /// The images at `indices`, in that order (repeats allowed).
    pub fn select(&self, indices: &[usize]) -> Result<Digits> {
        let mut pixels = Vec::with_capacity(indices.len() * Self::FEATURES);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let (Some(img), Some(&l)) = (self.image(i), self.labels.get(i)) else {
                return Err(DataError::Request {
                    op: "Digits::select",
                    msg: format!("index {i} out of range for {} images", self.len()),
                });
            };
            pixels.extend_from_slice(img);
            labels.push(l);
        }
        Ok(Digits { pixels, labels })
    }

    /// A seeded random split into `(train, test)` with `test_len` test images: the
    /// first `len - test_len` images of a seeded permutation train, the rest test
    /// (the reference split is `split(360, seed)`: 1437 / 360).
    pub fn split(&self, test_len: usize, seed: u64) -> Result<(Digits, Digits)> {
        if test_len > self.len() {
            return Err(DataError::Request {
                op: "Digits::split",
                msg: format!(
                    "{test_len} test images asked, only {} available",
                    self.len()
                ),
            });
        }
        let p = permutation(self.len(), seed);
        let (train, test) = p.split_at(self.len() - test_len);
        Ok((self.select(train)?, self.select(test)?))
    }

    /// All images as `[len, 64]` f32 and labels as `[len]` i64.
    pub fn tensors(&self) -> Result<(Tensor, Tensor)> {
        Ok((
            Tensor::from_slice(&self.pixels, &[self.len(), Self::FEATURES])?,
            Tensor::from_slice(&self.labels, &[self.len()])?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_loads_whole() -> Result<()> {
        let d = Digits::load()?;
        assert_eq!(d.len(), Digits::LEN);
        assert_eq!(d.pixels.len(), Digits::LEN * Digits::FEATURES);
        // the first image of the file is a 0; pixel 2 of it is 5/16
        assert_eq!(d.labels[0], 0);
        assert_eq!(d.image(0).map(|img| img[2]), Some(5.0 / 16.0));
        assert!(d.pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let mut per_class = [0usize; 10];
        for &l in &d.labels {
            per_class[l as usize] += 1;
        }
        assert!(
            per_class.iter().all(|&c| (170..=190).contains(&c)),
            "{per_class:?}"
        );
        Ok(())
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() -> Result<()> {
        let d = Digits::load()?;
        let (a, b) = d.split(360, 0)?;
        assert_eq!((a.len(), b.len()), (1437, 360));
        assert_eq!(d.split(360, 0)?, (a.clone(), b.clone()));
        assert_ne!(d.split(360, 1)?.1, b);
        // every image lands on exactly one side
        let key = |x: &Digits, i: usize| -> Vec<u8> {
            x.image(i)
                .unwrap_or_default()
                .iter()
                .map(|p| (p * 16.0) as u8)
                .chain([x.labels[i] as u8])
                .collect()
        };
        let mut all: Vec<Vec<u8>> = (0..d.len()).map(|i| key(&d, i)).collect();
        let mut parts: Vec<Vec<u8>> = (0..a.len())
            .map(|i| key(&a, i))
            .chain((0..b.len()).map(|i| key(&b, i)))
            .collect();
        all.sort();
        parts.sort();
        assert_eq!(all, parts);
        assert!(d.split(1798, 0).is_err());
        Ok(())
    }

    #[test]
    fn the_loader_keeps_the_jobs_batch_order() -> std::result::Result<(), crate::job::JobError> {
        // epoch e visits permutation(len, derive_seed(seed, e)) in chunks of the batch
        // size, as the job did before it batched through nn::data::DataLoader
        let d = Digits::load()?.select(&(0..130).collect::<Vec<_>>())?;
        let cfg = crate::job::Config {
            seed: 3,
            ..crate::job::Config::default()
        };
        let sampler = nn::data::RandomSampler::new(d.len(), cfg.seed);
        let mut loader = crate::job::train_loader(&d, &cfg, sampler, 64)?;
        assert_eq!(loader.len(), 3);
        loader.set_epoch(2);
        let order = permutation(d.len(), derive_seed(3, 2));
        let mut sizes = Vec::new();
        for (b, idx) in (&loader).into_iter().zip(order.chunks(64)) {
            let (x, y) = b?;
            let (want_x, want_y) = d.select(idx)?.tensors()?;
            assert_eq!(x.to_vec::<f32>()?, want_x.to_vec::<f32>()?);
            assert_eq!(y.to_vec::<i64>()?, want_y.to_vec::<i64>()?);
            sizes.push(y.shape()[0]);
        }
        assert_eq!(sizes, [64, 64, 2]);
        Ok(())
    }

    #[test]
    fn bad_files_are_errors_naming_the_line() {
        let msg = |s: &str| {
            Digits::from_bytes(s.as_bytes(), "t.csv")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let ok_line = format!("{}0", "1,".repeat(64));
        assert!(Digits::from_bytes(ok_line.as_bytes(), "t.csv").is_ok());
        assert!(msg("1,2,3").contains("line 1: 3 fields"));
        assert!(msg(&format!("{ok_line}\n{}x", "1,".repeat(64))).contains("line 2"));
        assert!(msg(&format!("{}17,0", "1,".repeat(63))).contains("pixel 17"));
        assert!(msg(&format!("{}10", "1,".repeat(64))).contains("label 10"));
        assert!(msg("").contains("no images"));
        // a truncated gzip stream
        assert!(Digits::from_bytes(&EMBEDDED[..EMBEDDED.len() / 2], "half.gz").is_err());
    }
}
