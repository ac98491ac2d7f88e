//! Transforms on image tensors (torchvision's `transforms`), seeded per sample: a random
//! transform draws from a generator seeded by `(seed, epoch, sample index)` (see
//! [`Transformed`]), so a run reproduces whatever the number of workers.
//!
//! Images are f32 `[C, H, W]` (or `[H, W]`), as `ToTensor` makes them from u8 `[H, W, C]`.

use super::seed::{sample_seed, SplitMix64};
use super::Dataset;
use crate::{DType, Error, HostData, Result, Tensor};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

/// A function of an image and a generator (torchvision's transform objects).
pub trait Transform: Send + Sync {
    /// The transformed image; random choices come from `rng`.
    fn apply(&self, x: Tensor, rng: &mut SplitMix64) -> Result<Tensor>;
}

/// An f32 image's elements and its `(C, H, W)`.
/// (Borrowed from host storage: a crop reads it in place.)
fn image<'a>(x: &'a Tensor, op: &'static str) -> Result<(Cow<'a, [f32]>, usize, usize, usize)> {
    if x.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            dtype: x.dtype(),
            expected: Some(DType::F32),
        });
    }
    let (c, h, w) = match *x.shape() {
        [h, w] => (1, h, w),
        [c, h, w] => (c, h, w),
        _ => {
            return Err(Error::bad_shape(
                op,
                x.shape(),
                "expected an image [C, H, W] or [H, W]",
            ))
        }
    };
    let data = match x.storage().as_host() {
        Some(HostData::F32(v)) => Cow::Borrowed(&v[..]),
        _ => Cow::Owned(x.to_vec::<f32>()?),
    };
    Ok((data, c, h, w))
}

/// An image tensor of the input's rank.
fn out(data: Vec<f32>, rank2: bool, c: usize, h: usize, w: usize) -> Result<Tensor> {
    if rank2 {
        Tensor::from_vec(data, &[h, w])
    } else {
        Tensor::from_vec(data, &[c, h, w])
    }
}

/// Transforms applied one after the other (torchvision's `Compose`).
pub struct Compose(pub Vec<Box<dyn Transform>>);

impl Transform for Compose {
    fn apply(&self, mut x: Tensor, rng: &mut SplitMix64) -> Result<Tensor> {
        for t in &self.0 {
            x = t.apply(x, rng)?;
        }
        Ok(x)
    }
}

/// Any function of a tensor (torchvision's `Lambda`).
pub struct Lambda<F>(pub F);

impl<F: Fn(Tensor) -> Result<Tensor> + Send + Sync> Transform for Lambda<F> {
    fn apply(&self, x: Tensor, _rng: &mut SplitMix64) -> Result<Tensor> {
        (self.0)(x)
    }
}

/// u8 `[H, W, C]` (or `[H, W]`) to f32 `[C, H, W]` in `[0, 1]` (torchvision's `ToTensor`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ToTensor;

impl Transform for ToTensor {
    fn apply(&self, x: Tensor, _rng: &mut SplitMix64) -> Result<Tensor> {
        const OP: &str = "ToTensor";
        if x.dtype() != DType::U8 {
            return Err(Error::DType {
                op: OP,
                dtype: x.dtype(),
                expected: Some(DType::U8),
            });
        }
        let (h, w, c) = match *x.shape() {
            [h, w] => (h, w, 1),
            [h, w, c] => (h, w, c),
            _ => {
                return Err(Error::bad_shape(
                    OP,
                    x.shape(),
                    "expected a u8 image [H, W, C] or [H, W]",
                ))
            }
        };
        let px = match x.to_host()? {
            HostData::U8(v) => v,
            other => {
                return Err(Error::DType {
                    op: OP,
                    dtype: other.dtype(),
                    expected: Some(DType::U8),
                })
            }
        };
        let mut o = vec![0f32; c * h * w];
        for (p, chunk) in px.chunks_exact(c).enumerate() {
            for (ch, &v) in chunk.iter().enumerate() {
                o[ch * h * w + p] = f32::from(v) / 255.0;
            }
        }
        Tensor::from_vec(o, &[c, h, w])
    }
}

/// `(x - mean[c]) / std[c]` per channel (torchvision's `Normalize`).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// Per-channel mean and standard deviation (same length, no zero std).
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(Error::invalid_config(
                "Normalize",
                "std",
                format!("{std:?}"),
                format!("needs one value per channel of mean {mean:?}"),
            ));
        }
        if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err(Error::invalid_config(
                "Normalize",
                "std",
                format!("{std:?}"),
                "a zero or non-finite std would divide by zero",
            ));
        }
        Ok(Normalize { mean, std })
    }
}

impl Transform for Normalize {
    fn apply(&self, x: Tensor, _rng: &mut SplitMix64) -> Result<Tensor> {
        let (d, c, h, w) = image(&x, "Normalize")?;
        let mut d = d.into_owned();
        if c != self.mean.len() {
            return Err(Error::bad_shape(
                "Normalize",
                x.shape(),
                format!("{} channels, the transform has {}", c, self.mean.len()),
            ));
        }
        for (ch, plane) in d.chunks_exact_mut(h * w).enumerate() {
            let (m, s) = (self.mean[ch], self.std[ch]);
            plane.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
        out(d, x.rank() == 2, c, h, w)
    }
}

/// Mirrors the image left-right with probability `p` (torchvision's
/// `RandomHorizontalFlip`, default `p = 0.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomHorizontalFlip {
    /// The probability of a flip.
    pub p: f64,
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        RandomHorizontalFlip { p: 0.5 }
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, x: Tensor, rng: &mut SplitMix64) -> Result<Tensor> {
        if rng.uniform() >= self.p {
            return Ok(x);
        }
        let (d, c, h, w) = image(&x, "RandomHorizontalFlip")?;
        let mut d = d.into_owned();
        d.chunks_exact_mut(w.max(1)).for_each(<[f32]>::reverse);
        out(d, x.rank() == 2, c, h, w)
    }
}

/// Pads by `padding` on every side with `fill`, then cuts a random `size` window
/// (torchvision's `RandomCrop(size, padding)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomCrop {
    /// Output `(height, width)`.
    pub size: (usize, usize),
    /// Pixels added on each side first.
    pub padding: usize,
    /// The value of the added pixels (default 0).
    pub fill: f32,
}

impl RandomCrop {
    /// A square crop of `size` after padding each side by `padding`.
    pub fn new(size: usize, padding: usize) -> Self {
        RandomCrop {
            size: (size, size),
            padding,
            fill: 0.0,
        }
    }
}

/// Rows `i..i+th`, columns `j..j+tw` of a `c x h x w` image padded by `pad` with `fill`.
fn crop(
    d: &[f32],
    (c, h, w): (usize, usize, usize),
    pad: usize,
    fill: f32,
    (i, j, th, tw): (usize, usize, usize, usize),
) -> Result<Vec<f32>> {
    const OP: &str = "RandomCrop";
    let n = crate::shape::checked_numel(OP, &[c, th, tw])?;
    let mut o = crate::host::try_filled(n, fill, OP)?;
    for ch in 0..c {
        for y in 0..th {
            let Some(sy) = (i + y).checked_sub(pad).filter(|&s| s < h) else {
                continue;
            };
            for x in 0..tw {
                if let Some(sx) = (j + x).checked_sub(pad).filter(|&s| s < w) {
                    o[(ch * th + y) * tw + x] = d[(ch * h + sy) * w + sx];
                }
            }
        }
    }
    Ok(o)
}

impl Transform for RandomCrop {
    fn apply(&self, x: Tensor, rng: &mut SplitMix64) -> Result<Tensor> {
        let (d, c, h, w) = image(&x, "RandomCrop")?;
        // (checked: a padding near usize::MAX is an error, not a wrapped size)
        let padded = |n: usize| self.padding.checked_mul(2).and_then(|p| p.checked_add(n));
        let (Some(ph), Some(pw)) = (padded(h), padded(w)) else {
            return Err(Error::bad_shape(
                "RandomCrop",
                x.shape(),
                format!("padding {} overflows the image size", self.padding),
            ));
        };
        let (th, tw) = self.size;
        if th > ph || tw > pw || th == 0 || tw == 0 {
            return Err(Error::bad_shape(
                "RandomCrop",
                x.shape(),
                format!("a {th}x{tw} crop does not fit the {ph}x{pw} padded image"),
            ));
        }
        let i = rng.below(ph - th + 1);
        let j = rng.below(pw - tw + 1);
        out(
            crop(&d, (c, h, w), self.padding, self.fill, (i, j, th, tw))?,
            x.rank() == 2,
            c,
            th,
            tw,
        )
    }
}

/// A random area and aspect ratio, resized to `size` (torchvision's
/// `RandomResizedCrop`, defaults `scale = (0.08, 1)`, `ratio = (3/4, 4/3)`, and its
/// 10-try sampling loop with the central-crop fallback). Bilinear resize without
/// antialiasing (`align_corners=False`, torchvision's `antialias=False`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Output `(height, width)`.
    pub size: (usize, usize),
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// A square output of `size` with torchvision's defaults.
    pub fn new(size: usize) -> Self {
        RandomResizedCrop {
            size: (size, size),
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// The crop `(top, left, height, width)` for an `h x w` image (torchvision's
    /// `get_params`).
    pub fn params(&self, h: usize, w: usize, rng: &mut SplitMix64) -> (usize, usize, usize, usize) {
        let area = (h * w) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.uniform_in(self.scale.0, self.scale.1);
            let aspect = rng.uniform_in(lr0, lr1).exp();
            let cw = (target * aspect).sqrt().round_ties_even() as usize;
            let ch = (target / aspect).sqrt().round_ties_even() as usize;
            if 0 < cw && cw <= w && 0 < ch && ch <= h {
                return (rng.below(h - ch + 1), rng.below(w - cw + 1), ch, cw);
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (ch, cw) = if in_ratio < self.ratio.0.min(self.ratio.1) {
            (
                ((w as f64) / self.ratio.0.min(self.ratio.1)).round_ties_even() as usize,
                w,
            )
        } else if in_ratio > self.ratio.0.max(self.ratio.1) {
            (
                h,
                ((h as f64) * self.ratio.0.max(self.ratio.1)).round_ties_even() as usize,
            )
        } else {
            (h, w)
        };
        (
            (h - ch.min(h)) / 2,
            (w - cw.min(w)) / 2,
            ch.min(h),
            cw.min(w),
        )
    }
}

/// Bilinear resize of a `c x h x w` crop window to `oh x ow` (PyTorch's
/// `upsample_bilinear2d`, `align_corners=False`).
pub(crate) fn resize_bilinear(
    d: &[f32],
    (c, h, w): (usize, usize, usize),
    (i, j, ch, cw): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
) -> Result<Vec<f32>> {
    // the output first, fallibly (a huge `size` is an error, not an abort); the row and
    // column tables are no longer than it
    const OP: &str = "resized_crop";
    let n = crate::shape::checked_numel(OP, &[c, oh, ow])?;
    let mut o = crate::host::try_filled(n, 0f32, OP)?;
    if n == 0 {
        return Ok(o);
    }
    let src = |o: usize, n_in: usize, n_out: usize| -> (usize, usize, f32) {
        let s = ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n_in - 1);
        let i1 = if i0 + 1 < n_in { i0 + 1 } else { i0 };
        (i0, i1, (s - i0 as f64) as f32)
    };
    let ys: Vec<_> = (0..oh).map(|y| src(y, ch, oh)).collect();
    let xs: Vec<_> = (0..ow).map(|x| src(x, cw, ow)).collect();
    for p in 0..c {
        let at = |y: usize, x: usize| d[(p * h + i + y) * w + j + x];
        for (y, &(y0, y1, ly)) in ys.iter().enumerate() {
            for (x, &(x0, x1, lx)) in xs.iter().enumerate() {
                let top = at(y0, x0) * (1.0 - lx) + at(y0, x1) * lx;
                let bot = at(y1, x0) * (1.0 - lx) + at(y1, x1) * lx;
                o[(p * oh + y) * ow + x] = top * (1.0 - ly) + bot * ly;
            }
        }
    }
    Ok(o)
}

/// The window `top..top+height`, `left..left+width` of an image resized to `size`
/// `(height, width)` with bilinear interpolation (torchvision's
/// `F.resized_crop(..., antialias=False)`).
pub fn resized_crop(
    x: &Tensor,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
    size: (usize, usize),
) -> Result<Tensor> {
    let (d, c, h, w) = image(x, "resized_crop")?;
    let fits = |at: usize, n: usize, len: usize| matches!(at.checked_add(n), Some(e) if e <= len);
    if !fits(top, height, h)
        || !fits(left, width, w)
        || height == 0
        || width == 0
        || size.0 == 0
        || size.1 == 0
    {
        return Err(Error::bad_shape(
            "resized_crop",
            x.shape(),
            format!("window {height}x{width} at ({top}, {left}) resized to {size:?} does not fit"),
        ));
    }
    out(
        resize_bilinear(&d, (c, h, w), (top, left, height, width), size)?,
        x.rank() == 2,
        c,
        size.0,
        size.1,
    )
}

impl Transform for RandomResizedCrop {
    fn apply(&self, x: Tensor, rng: &mut SplitMix64) -> Result<Tensor> {
        let (h, w) = match *x.shape() {
            [h, w] | [_, h, w] => (h, w),
            _ => {
                return Err(Error::bad_shape(
                    "RandomResizedCrop",
                    x.shape(),
                    "expected an image [C, H, W] or [H, W]",
                ))
            }
        };
        let (oh, ow) = self.size;
        if h == 0 || w == 0 || oh == 0 || ow == 0 {
            return Err(Error::bad_shape(
                "RandomResizedCrop",
                x.shape(),
                format!("cannot resize to {oh}x{ow}"),
            ));
        }
        let (i, j, ch, cw) = self.params(h, w, rng);
        resized_crop(&x, i, j, ch, cw, (oh, ow))
    }
}

/// Samples a [`Transform`] can apply to: an image, or an `(image, label)` pair whose
/// image is transformed.
pub trait Transformable: Sized + Send + 'static {
    /// The sample with `f` applied to its image.
    fn map_image(self, f: impl FnOnce(Tensor) -> Result<Tensor>) -> Result<Self>;
}

impl Transformable for Tensor {
    fn map_image(self, f: impl FnOnce(Tensor) -> Result<Tensor>) -> Result<Self> {
        f(self)
    }
}

impl<L: Send + 'static> Transformable for (Tensor, L) {
    fn map_image(self, f: impl FnOnce(Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok((f(self.0)?, self.1))
    }
}

/// A data set whose samples go through a transform (torchvision's `transform=`
/// argument): sample `i` of epoch `e` is transformed with a generator seeded by
/// `(seed, e, i)`, so its augmentation is the same whichever worker loads it.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::{Dataset, RandomCrop, TensorDataset, Transformed};
/// use nn::Tensor;
/// let images = TensorDataset::new(Tensor::rand(&[4, 1, 8, 8]))?;
/// let ds = Transformed::new(images, RandomCrop::new(8, 1), 0);
/// assert_eq!(ds.get(0)?.shape(), &[1, 8, 8]);
/// assert_eq!(ds.get(0)?.to_vec::<f32>()?, ds.get(0)?.to_vec::<f32>()?); // same seed, same crop
/// # Ok::<(), nn::Error>(())
/// ```
pub struct Transformed<D, T> {
    dataset: D,
    transform: T,
    seed: u64,
    epoch: AtomicU64,
}

impl<D, T> Transformed<D, T> {
    /// `dataset` with `transform` applied to each sample, seeded by `seed`.
    pub fn new(dataset: D, transform: T, seed: u64) -> Self {
        Transformed {
            dataset,
            transform,
            seed,
            epoch: AtomicU64::new(0),
        }
    }
}

impl<D: Dataset, T: Transform> Dataset for Transformed<D, T>
where
    D::Item: Transformable,
{
    type Item = D::Item;
    fn len(&self) -> usize {
        self.dataset.len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        let mut rng = SplitMix64::new(sample_seed(
            self.seed,
            self.epoch.load(Ordering::Relaxed),
            index,
        ));
        self.dataset
            .get(index)?
            .map_image(|x| self.transform.apply(x, &mut rng))
    }
    fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
        self.dataset.set_epoch(epoch);
    }
}

#[cfg(test)]
#[path = "transforms_tests.rs"]
mod tests;
