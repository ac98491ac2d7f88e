//! MNIST / Fashion-MNIST IDX files (plain or gzipped): [`read_idx`] gives the array,
//! [`Mnist`] pairs an image file with its label file as a data set.

use super::{bad, read_maybe_gz};
use crate::data::dataset::check_index;
use crate::data::Dataset;
use crate::{HostData, Result, Tensor};
use std::path::Path;

/// Reads an IDX file (`train-images-idx3-ubyte`, `.gz` or not): u8 data gives a `U8`
/// tensor, i8/i16/i32 an `I32` one, f32 `F32`, f64 `F64`; the shape is the header's.
///
/// ```no_run
/// # extern crate nn_core as nn;
/// let images = nn::data::readers::read_idx("train-images-idx3-ubyte.gz")?;
/// assert_eq!(images.shape(), &[60000, 28, 28]);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn read_idx(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    parse_idx(&read_maybe_gz(path)?, path)
}

/// Parses the bytes of an IDX file; `path` names it in errors.
pub fn parse_idx(b: &[u8], path: &Path) -> Result<Tensor> {
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(bad(
            path,
            "not an IDX file (the magic number must start with two zero bytes)",
        ));
    }
    let (code, ndims) = (b[2], usize::from(b[3]));
    let size = match code {
        0x08 | 0x09 => 1,
        0x0B => 2,
        0x0C | 0x0D => 4,
        0x0E => 8,
        c => return Err(bad(path, format!("unknown IDX element type 0x{c:02x}"))),
    };
    let head = 4 + 4 * ndims;
    let Some(dims) = b.get(4..head) else {
        return Err(bad(
            path,
            format!(
                "truncated header: {ndims} dims need {head} bytes, the file has {}",
                b.len()
            ),
        ));
    };
    let shape: Vec<usize> = dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let data = &b[head..];
    if n.and_then(|n| n.checked_mul(size)) != Some(data.len()) {
        return Err(bad(
            path,
            format!("the header claims shape {shape:?} of {size}-byte elements; the file holds {} data bytes", data.len()),
        ));
    }
    let host = match code {
        0x08 => HostData::U8(data.to_vec()),
        0x09 => HostData::I32(data.iter().map(|&v| i32::from(v as i8)).collect()),
        0x0B => HostData::I32(
            data.chunks_exact(2)
                .map(|c| i32::from(i16::from_be_bytes([c[0], c[1]])))
                .collect(),
        ),
        0x0C => HostData::I32(
            data.chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        0x0D => HostData::F32(
            data.chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => HostData::F64(
            data.chunks_exact(8)
                .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
    };
    Tensor::from_host(host, &shape)
}

/// MNIST or Fashion-MNIST (torchvision's `MNIST` / `FashionMNIST` without the
/// download): sample `i` is `(image f32 [1, H, W] in [0, 1], label)`, as
/// `transform=ToTensor()` gives it.
#[derive(Debug, Clone)]
pub struct Mnist {
    pixels: Vec<u8>,
    labels: Vec<i64>,
    h: usize,
    w: usize,
}

impl Mnist {
    /// Reads an image file (`[N, H, W]` u8) and its label file (`[N]` u8).
    pub fn new(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Mnist> {
        let (ip, lp) = (images.as_ref(), labels.as_ref());
        let img = read_idx(ip)?;
        let lab = read_idx(lp)?;
        let [n, h, w] = *img.shape() else {
            return Err(bad(
                ip,
                format!("images must be [N, H, W], found {:?}", img.shape()),
            ));
        };
        if lab.shape() != [n] {
            return Err(bad(
                lp,
                format!("{} labels for {n} images in {}", lab.numel(), ip.display()),
            ));
        }
        let (HostData::U8(pixels), HostData::U8(labels)) = (img.to_host()?, lab.to_host()?) else {
            return Err(bad(ip, "images and labels must be u8 (IDX type 0x08)"));
        };
        Ok(Mnist {
            pixels,
            labels: labels.into_iter().map(i64::from).collect(),
            h,
            w,
        })
    }
}

impl Dataset for Mnist {
    type Item = (Tensor, i64);
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, index: usize) -> Result<(Tensor, i64)> {
        check_index("Mnist::get", index, self.labels.len())?;
        let n = self.h * self.w;
        let px = self.pixels[index * n..(index + 1) * n]
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        Ok((
            Tensor::from_vec(px, &[1, self.h, self.w])?,
            self.labels[index],
        ))
    }
}
