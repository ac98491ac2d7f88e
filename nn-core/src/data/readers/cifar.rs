//! CIFAR-10 / CIFAR-100 binary batches (`data_batch_1.bin`, `train.bin`): records of
//! one label byte (CIFAR-100: coarse then fine) and 3072 pixel bytes, channel-major.

use super::bad;
use crate::data::dataset::check_index;
use crate::data::Dataset;
use crate::io::files::FileBytes;
use crate::{Result, Tensor};
use std::path::Path;

const PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10 or CIFAR-100 from its binary batches (torchvision's `CIFAR10`/`CIFAR100`
/// read the pickled version of the same records): sample `i` is `(image f32 [3, 32, 32]
/// in [0, 1], label)`; for CIFAR-100 the fine label (the coarse ones via
/// [`Cifar::coarse_labels`]).
#[derive(Debug, Clone)]
pub struct Cifar {
    pixels: Vec<u8>,
    labels: Vec<i64>,
    coarse: Vec<i64>,
}

impl Cifar {
    /// CIFAR-10 from its batch files, concatenated in the order given.
    pub fn cifar10<P: AsRef<Path>>(files: &[P]) -> Result<Cifar> {
        Self::read(files, 1, 10)
    }

    /// CIFAR-100 from its batch files (`train.bin`, `test.bin`).
    pub fn cifar100<P: AsRef<Path>>(files: &[P]) -> Result<Cifar> {
        Self::read(files, 2, 100)
    }

    fn read<P: AsRef<Path>>(files: &[P], label_bytes: usize, classes: u8) -> Result<Cifar> {
        let rec = label_bytes + PIXELS;
        let mut out = Cifar {
            pixels: Vec::new(),
            labels: Vec::new(),
            coarse: Vec::new(),
        };
        for p in files {
            let path = p.as_ref();
            let file = FileBytes::open(path)?;
            let b = file.bytes();
            if b.is_empty() || b.len() % rec != 0 {
                return Err(bad(
                    path,
                    format!(
                        "{} bytes is not a whole number of {rec}-byte CIFAR records",
                        b.len()
                    ),
                ));
            }
            for (k, r) in b.chunks_exact(rec).enumerate() {
                let label = r[label_bytes - 1];
                if label >= classes || (label_bytes == 2 && r[0] >= 20) {
                    return Err(bad(
                        path,
                        format!("record {k}: label {label} is not below {classes}"),
                    ));
                }
                out.labels.push(i64::from(label));
                if label_bytes == 2 {
                    out.coarse.push(i64::from(r[0]));
                }
                out.pixels.extend_from_slice(&r[label_bytes..]);
            }
        }
        Ok(out)
    }

    /// CIFAR-100's coarse (superclass) labels; empty for CIFAR-10.
    pub fn coarse_labels(&self) -> &[i64] {
        &self.coarse
    }

    /// The labels (CIFAR-100: fine).
    pub fn labels(&self) -> &[i64] {
        &self.labels
    }
}

impl Dataset for Cifar {
    type Item = (Tensor, i64);
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, index: usize) -> Result<(Tensor, i64)> {
        check_index("Cifar::get", index, self.labels.len())?;
        let px = self.pixels[index * PIXELS..(index + 1) * PIXELS]
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        Ok((Tensor::from_vec(px, &[3, 32, 32])?, self.labels[index]))
    }
}
