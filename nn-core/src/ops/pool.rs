//! 2-d pooling: `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d` (PyTorch's `F.*`).
//!
//! For x `[n, c, h, w]` each output is a reduction over one window per channel:
//!
//! ```text
//! max:      y[n, c, i, j] = max_{p, q} xpad[n, c, i*sh + p*dh, j*sw + q*dw]   (pad = -inf)
//! avg:      y[n, c, i, j] = sum_{p, q} xpad[n, c, i*sh + p, j*sw + q] / count(i, j)
//! adaptive: window rows floor(i*h/oh) .. ceil((i+1)*h/oh), columns alike, mean over it
//! ```
//!
//! The windows are copied by im2col ([`super::im2col`], as convolutions do) into
//! `[n, c, taps, positions]` and
//! reduced over `taps`. Gradients: max sends dy to the first maximum of each window (the
//! position PyTorch's kernels pick; `max_dim` routes to that index), avg spreads
//! `dy / count` over the window; both are the adjoints of the copy (col2im) and the
//! reduction.
//! The divisor `count` is PyTorch's: with `count_include_pad` the window clipped to the
//! padded input, otherwise the real elements it covers.

use super::conv::{check_input, gather, Windows};
use super::im2col::im2col;
use crate::{Error, Result, Tensor};

/// Window options of a 2-d pooling (PyTorch's `MaxPool2d` / `AvgPool2d` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// Window size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Step `[sh, sw]` (PyTorch's default: the kernel size).
    pub stride: [usize; 2],
    /// Implicit padding on both sides `[ph, pw]`, at most half the kernel.
    pub padding: [usize; 2],
    /// Spacing of the taps `[dh, dw]` (max pooling only).
    pub dilation: [usize; 2],
    /// Rounds the output size up instead of down.
    pub ceil_mode: bool,
}

impl Pool2dOptions {
    /// A `kernel` window with stride `kernel`, no padding, dilation 1.
    pub fn new(kernel: [usize; 2]) -> Pool2dOptions {
        Pool2dOptions {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
        }
    }
    /// Sets the stride.
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }
    /// Sets the padding.
    pub fn padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
    /// Sets ceil mode.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }

    fn windows(&self, op: &'static str, x: &Tensor) -> Result<Windows> {
        for d in 0..2 {
            if self.padding[d] > self.kernel[d] / 2 {
                return Err(Error::invalid_config(
                    op,
                    "padding",
                    format!("{:?}", self.padding),
                    format!("must be at most half the kernel size {:?}", self.kernel),
                ));
            }
        }
        let s = x.shape();
        Windows::new(
            op,
            s,
            [s[2], s[3]],
            self.kernel,
            self.stride,
            [[self.padding[0]; 2], [self.padding[1]; 2]],
            self.dilation,
            self.ceil_mode,
        )
    }
}

/// `f` on `x` made 4-d (an unbatched `[c, h, w]` gets a batch dim and loses it again).
fn batched(
    op: &'static str,
    x: &Tensor,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    if x.rank() == 3 {
        return f(&x.unsqueeze(0)?)?.squeeze(0);
    }
    check_input(op, x, 4, "[batch, channels, height, width]")?;
    f(x)
}

/// Gathers the windows of `x [n, c, h, w]` into `[n, c, taps, positions]`.
fn windows_of(x: &Tensor, win: &Windows, pad_value: f32) -> Result<Tensor> {
    let [n, c] = [x.shape()[0], x.shape()[1]];
    let taps = win.kernel[0] * win.kernel[1];
    crate::shape::checked_numel("pool", &[n, c, taps, win.positions()])?;
    im2col(x, win, false, pad_value)?.reshape(&[n, c, taps, win.positions()])
}

impl Tensor {
    /// Max pooling of `self` `[n, c, h, w]` (or `[c, h, w]`): PyTorch's `F.max_pool2d`.
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::{Pool2dOptions, Tensor};
    /// let x = Tensor::arange_f32(0.0, 16.0, 1.0)?.reshape(&[1, 1, 4, 4])?;
    /// let y = x.max_pool2d(&Pool2dOptions::new([2, 2]))?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![5.0, 7.0, 13.0, 15.0]);
    /// # Ok::<(), nn::Error>(())
    /// ```
    pub fn max_pool2d(&self, opts: &Pool2dOptions) -> Result<Tensor> {
        batched("max_pool2d", self, |x| {
            let win = opts.windows("max_pool2d", x)?;
            // The padding reads -inf, as PyTorch's: a window of real -inf values pools
            // to -inf. max_dim's gradient selects with where(mask, x, 0), so no 0 * -inf
            // NaN; the padding's share of the gradient goes to the padding column that
            // the gather appended, which its backward drops.
            // NOTE: a window whose real elements are all -inf ties with its padding; the
            // first maximum wins, so where the padding comes first that window's
            // gradient is dropped (PyTorch gives it to the first real element).
            let cols = windows_of(x, &win, f32::NEG_INFINITY)?;
            let [n, c] = [x.shape()[0], x.shape()[1]];
            cols.max_dim(2, false)?
                .reshape(&[n, c, win.output[0], win.output[1]])
        })
    }

    /// Average pooling of `self` `[n, c, h, w]` (or `[c, h, w]`): PyTorch's
    /// `F.avg_pool2d` (dilation must be 1, as PyTorch has none for it).
    pub fn avg_pool2d(&self, opts: &Pool2dOptions, count_include_pad: bool) -> Result<Tensor> {
        batched("avg_pool2d", self, |x| {
            if opts.dilation != [1, 1] {
                return Err(Error::invalid_config(
                    "avg_pool2d",
                    "dilation",
                    format!("{:?}", opts.dilation),
                    "average pooling has no dilation",
                ));
            }
            let win = opts.windows("avg_pool2d", x)?;
            let [n, c] = [x.shape()[0], x.shape()[1]];
            let sums = windows_of(x, &win, 0.0)?.sum_dim(2, false)?;
            if sums.numel() == 0 {
                // an empty batch or channel dim: no divisors needed (one per window
                // position, of which there may be ~2^60 beside a zero dim)
                return sums.reshape(&[n, c, win.output[0], win.output[1]]);
            }
            let inv: Vec<f32> = (0..win.output[0])
                .flat_map(|i| (0..win.output[1]).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let span = |d: usize, o: usize| {
                        let (p, k, s, len) = (
                            opts.padding[d],
                            opts.kernel[d],
                            opts.stride[d],
                            win.input[d],
                        );
                        let start = o * s; // in padded coordinates
                        let end = (start + k).min(len + 2 * p);
                        let real = end.min(len + p).saturating_sub(start.max(p));
                        (end - start, real)
                    };
                    let ((ph, rh), (pw, rw)) = (span(0, i), span(1, j));
                    let count = if count_include_pad { ph * pw } else { rh * rw };
                    1.0 / count.max(1) as f32
                })
                .collect();
            let inv = Tensor::from_vec(inv, &[win.positions()])?.to_device(&x.device())?;
            sums.mul(&inv)?
                .reshape(&[n, c, win.output[0], win.output[1]])
        })
    }

    /// Adaptive average pooling of `self` `[n, c, h, w]` (or `[c, h, w]`) to `output`
    /// `[oh, ow]`: PyTorch's `F.adaptive_avg_pool2d`.
    pub fn adaptive_avg_pool2d(&self, output: [usize; 2]) -> Result<Tensor> {
        const OP: &str = "adaptive_avg_pool2d";
        batched(OP, self, |x| {
            let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
            if output.contains(&0) || h == 0 || w == 0 {
                return Err(Error::bad_shape(
                    OP,
                    x.shape(),
                    format!("output size {output:?} and input size must be positive"),
                ));
            }
            let [oh, ow] = output;
            if x.numel() == 0 {
                // an empty batch: `h` and `w` may be anything, the window arithmetic unused
                return Tensor::try_zeros(&[n, c, oh, ow])?.to_device(&x.device());
            }
            if output == [1, 1] {
                return x
                    .sum_axes_keepdim(&[2, 3])?
                    .mul_scalar(1.0 / (h * w) as f32);
            }
            // in u128: `(i + 1) * len` for an output larger than the input may not fit
            let bounds = |i: usize, o: usize, len: usize| {
                let (i, o, len) = (i as u128, o as u128, len as u128);
                ((i * len / o) as usize, ((i + 1) * len).div_ceil(o) as usize)
            };
            let widest = |o: usize, len: usize| {
                (0..o)
                    .map(|i| {
                        let (a, b) = bounds(i, o, len);
                        b - a
                    })
                    .max()
                    .unwrap_or(1)
            };
            let (mh, mw) = (widest(oh, h), widest(ow, w));
            crate::shape::checked_numel(OP, &[n, c, mh * mw, oh * ow])?;
            let pad = (c * h * w) as i64;
            let mut idx = Vec::with_capacity(c * mh * mw * oh * ow);
            for ch in 0..c {
                for p in 0..mh {
                    for q in 0..mw {
                        for i in 0..oh {
                            let (r0, r1) = bounds(i, oh, h);
                            for j in 0..ow {
                                let (c0, c1) = bounds(j, ow, w);
                                let (r, s) = (r0 + p, c0 + q);
                                idx.push(if r < r1 && s < c1 {
                                    (ch * h * w + r * w + s) as i64
                                } else {
                                    pad
                                });
                            }
                        }
                    }
                }
            }
            let inv: Vec<f32> = (0..oh)
                .flat_map(|i| (0..ow).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let ((r0, r1), (c0, c1)) = (bounds(i, oh, h), bounds(j, ow, w));
                    1.0 / ((r1 - r0) * (c1 - c0)) as f32
                })
                .collect();
            let inv = Tensor::from_vec(inv, &[oh * ow])?.to_device(&x.device())?;
            gather(x, idx, 0.0)?
                .reshape(&[n, c, mh * mw, oh * ow])?
                .sum_dim(2, false)?
                .mul(&inv)?
                .reshape(&[n, c, oh, ow])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use super::Pool2dOptions;
    use crate::{Result, Tensor};

    #[test]
    fn max_padding_is_minus_infinity() -> Result<()> {
        // windows [pad, -inf], [-inf, 5], [pad(-inf) only beyond]: PyTorch gives -inf, 5
        // (f32::MIN padding gave -3.4e38 for the first)
        let inf = f32::INFINITY;
        let x = Tensor::from_vec(vec![-inf, -inf, 5.0], &[1, 1, 1, 3])?.with_requires_grad(true);
        let o = Pool2dOptions::new([1, 2]).stride([1, 2]).padding([0, 1]);
        let y = x.max_pool2d(&o)?;
        assert_eq!(y.to_vec::<f32>()?, vec![-inf, 5.0]);
        // the gradient reaches only real elements, no NaN from 0 * -inf
        let up = Tensor::from_vec(vec![0.0f32, 2.0], &[1, 1, 1, 2])?;
        y.mul(&up)?.sum()?.backward()?;
        let g = x.grad().map(|g| g.to_vec::<f32>()).transpose()?;
        assert_eq!(g, Some(vec![0.0, 0.0, 2.0]));
        Ok(())
    }

    #[test]
    fn hand_derived() -> Result<()> {
        // 4x4 ramp, 2x2 windows: max picks the bottom-right of each window, so the
        // gradient of sum(y) is 1 there and 0 elsewhere; avg spreads 1/4 everywhere.
        let x = Tensor::arange_f32(0.0, 16.0, 1.0)?
            .reshape(&[1, 1, 4, 4])?
            .with_requires_grad(true);
        let o = Pool2dOptions::new([2, 2]);
        x.max_pool2d(&o)?.sum()?.backward()?;
        let g = x
            .grad()
            .map(|g| g.to_vec::<f32>())
            .transpose()?
            .unwrap_or_default();
        let picked = [5, 7, 13, 15];
        for (i, v) in g.iter().enumerate() {
            assert_eq!(*v, if picked.contains(&i) { 1.0 } else { 0.0 });
        }
        x.zero_grad();
        let y = x.avg_pool2d(&o, true)?;
        assert_eq!(y.to_vec::<f32>()?, vec![2.5, 4.5, 10.5, 12.5]);
        y.sum()?.backward()?;
        let g = x
            .grad()
            .map(|g| g.to_vec::<f32>())
            .transpose()?
            .unwrap_or_default();
        assert!(g.iter().all(|&v| v == 0.25));
        Ok(())
    }

    #[test]
    fn divisors_with_padding() -> Result<()> {
        // 2x2 ones, kernel 2, stride 1, padding 1: 3x3 windows covering 1, 2 or 4 ones
        let x = Tensor::ones(&[1, 1, 2, 2]);
        let o = Pool2dOptions::new([2, 2]).stride([1, 1]).padding([1, 1]);
        assert_eq!(
            x.avg_pool2d(&o, true)?.to_vec::<f32>()?,
            vec![0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]
        );
        assert_eq!(x.avg_pool2d(&o, false)?.to_vec::<f32>()?, vec![1.0; 9]);
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        let o = Pool2dOptions::new([3, 2]).stride([2, 1]).padding([1, 1]);
        check_grad(&[&[2, 2, 5, 6]], |t| t[0].max_pool2d(&o))?;
        check_grad(&[&[2, 2, 5, 6]], |t| {
            t[0].max_pool2d(&o.dilation([2, 2]).ceil_mode(true))
        })?;
        check_grad(&[&[2, 2, 5, 6]], |t| t[0].avg_pool2d(&o, true))?;
        check_grad(&[&[2, 2, 5, 6]], |t| {
            t[0].avg_pool2d(&o.ceil_mode(true), false)
        })?;
        check_grad(&[&[2, 3, 5, 7]], |t| t[0].adaptive_avg_pool2d([3, 2]))?;
        check_grad(&[&[2, 3, 5, 7]], |t| t[0].adaptive_avg_pool2d([1, 1]))?;
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        let x = Tensor::zeros(&[1, 1, 4, 4]);
        assert!(x.max_pool2d(&Pool2dOptions::new([5, 5])).is_err());
        assert!(x
            .max_pool2d(&Pool2dOptions::new([2, 2]).padding([2, 2]))
            .is_err());
        assert!(x
            .max_pool2d(&Pool2dOptions::new([2, 2]).stride([0, 1]))
            .is_err());
        assert!(x
            .avg_pool2d(&Pool2dOptions::new([2, 2]).dilation([2, 2]), true)
            .is_err());
        assert!(Tensor::zeros(&[4, 4])
            .max_pool2d(&Pool2dOptions::new([2, 2]))
            .is_err());
        assert!(x.adaptive_avg_pool2d([0, 1]).is_err());
    }
}
