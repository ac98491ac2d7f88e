//! Convolutions: `conv2d` and `conv1d` (PyTorch's `F.conv2d` / `F.conv1d`), by im2col.
//!
//! For x `[n, c, h, w]`, weight `[o, c / g, kh, kw]`, bias `[o]`:
//!
//! ```text
//! y[n, o, i, j] = b[o] + sum_{c in group(o), p, q} w[o, c, p, q] * xpad[n, c, i*sh + p*dh, j*sw + q*dw]
//! ```
//!
//! with `h_out = floor((h + pad_top + pad_bottom - dh*(kh-1) - 1) / sh) + 1` (same for w).
//! It is computed as im2col then one matrix product per group: the windows of the
//! batch are copied ([`super::im2col`], a backend primitive) into `cols [g, (c/g)*kh*kw,
//! n*h_out*w_out]`, and `y = w.reshape([g, o/g, (c/g)*kh*kw]) @ cols`, `[o, n, h_out,
//! w_out]` permuted to `[n, o, h_out, w_out]`. The backward is im2col's and the product's:
//! d cols = w^T dy, dx = col2im(d cols) (the scatter-add of the columns back to the
//! windows' positions), dw = dy cols^T, db = sum of dy over n, h, w.
//!
//! Where the backend has a fused convolution ([`BackendStorage::conv2d`], the CPU's
//! `cpu/conv.rs`) the convolution is instead one node: the backend writes `y` directly,
//! and its backward ([`BackendStorage::conv2d_backward`]) returns dx, dw and db in one
//! call. The composite stays as the path of the other backends (nn-cuda) and as the
//! reference the tests compare the fused node with.
//!
//! [`BackendStorage::conv2d`]: crate::backend::BackendStorage::conv2d
//! [`BackendStorage::conv2d_backward`]: crate::backend::BackendStorage::conv2d_backward
//!
//! NOTE: the batch goes into the columns, not into a batch dim of the product: with
//! `cols [n, g, taps, l]` and `w` broadcast over n, autograd computes dw as n products
//! `[o, taps]` then sums them, an `n * o * taps` temporary per layer (for ResNet-18 at
//! batch 8, 8x the model's size, summed by a reduction every step).

use super::im2col::im2col;
use crate::autograd::{backward_fn, record};
use crate::backend::{Conv2dSpec, Im2ColSpec, Storage};
use crate::shape::Dims;
use crate::{DType, Error, Result, Tensor};

/// Hyper-parameters of a 2-d convolution, as `F.conv2d` takes them (padding may differ
/// before and after a dim, which `padding="same"` with an even kernel needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step of the window, `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zeros added `[[top, bottom], [left, right]]`.
    pub padding: [[usize; 2]; 2],
    /// Spacing of the kernel taps, `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels split into `groups` independent blocks.
    pub groups: usize,
}

impl Default for Conv2dOptions {
    /// Stride 1, no padding, dilation 1, one group (PyTorch's defaults).
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [[0, 0], [0, 0]],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dOptions {
    /// Sets the stride.
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }
    /// Sets symmetric padding `[ph, pw]` (PyTorch's `padding=(ph, pw)`).
    pub fn padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = [[padding[0], padding[0]], [padding[1], padding[1]]];
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// PyTorch's `padding="same"` for `kernel` under this dilation: `d*(k-1)` zeros per
    /// dim, the odd one after (stride must be 1, which the convolution checks).
    pub fn same_padding(mut self, kernel: [usize; 2]) -> Self {
        for (i, &k) in kernel.iter().enumerate() {
            let total = self.dilation[i] * k.saturating_sub(1);
            self.padding[i] = [total / 2, total - total / 2];
        }
        self
    }
}

/// The geometry of sliding windows over `[h, w]` (shared by convolutions and pools).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub(crate) input: [usize; 2],
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [[usize; 2]; 2],
    pub(crate) dilation: [usize; 2],
    pub(crate) output: [usize; 2],
}

impl Windows {
    /// Output size `floor((in + pads - d*(k-1) - 1) / s) + 1` per dim (rounded up with
    /// `ceil_mode`, PyTorch's pooling rule: the last window must start inside the input
    /// or its leading padding); `Err` for a zero stride, kernel or dilation and for a
    /// kernel larger than the padded input.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        op: &'static str,
        shape: &[usize],
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [[usize; 2]; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> Result<Windows> {
        let mut output = [0; 2];
        for i in 0..2 {
            for (field, v) in [
                ("kernel size", kernel[i]),
                ("stride", stride[i]),
                ("dilation", dilation[i]),
            ] {
                if v == 0 {
                    return Err(Error::invalid_config(op, field, 0, "must be positive"));
                }
            }
            let span = dilation[i]
                .checked_mul(kernel[i] - 1)
                .and_then(|s| s.checked_add(1));
            let padded = input[i]
                .checked_add(padding[i][0])
                .and_then(|s| s.checked_add(padding[i][1]));
            let (Some(span), Some(padded)) = (span, padded) else {
                return Err(Error::bad_shape(op, shape, "window size overflows"));
            };
            if span > padded {
                return Err(Error::bad_shape(
                    op,
                    shape,
                    format!(
                        "kernel {:?} (dilation {:?}) is larger than the padded input {:?}",
                        kernel,
                        dilation,
                        [
                            input[0] + padding[0][0] + padding[0][1],
                            input[1] + padding[1][0] + padding[1][1]
                        ]
                    ),
                ));
            }
            let room = padded - span;
            let mut o = if ceil_mode {
                room.div_ceil(stride[i]) + 1
            } else {
                room / stride[i] + 1
            };
            if ceil_mode && (o - 1) * stride[i] >= input[i] + padding[i][0] {
                o -= 1;
            }
            output[i] = o;
        }
        // `positions()` multiplies these: a window grid no tensor could hold is refused
        // here, even for an empty batch
        crate::shape::checked_numel(op, &output)?;
        Ok(Windows {
            input,
            kernel,
            stride,
            padding,
            dilation,
            output,
        })
    }

    /// The im2col of these windows over `[batch, channels]` images.
    pub(crate) fn im2col_spec(
        &self,
        [batch, channels]: [usize; 2],
        batch_inner: bool,
        pad_value: f32,
    ) -> Im2ColSpec {
        Im2ColSpec {
            batch,
            channels,
            input: self.input,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            output: self.output,
            batch_inner,
            pad_value,
        }
    }

    /// Number of window positions `h_out * w_out`.
    pub(crate) fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }
}

/// Gathers `x [n, c, h, w]` at `idx` (into the flattened `[c, h, w]` of each sample, one
/// past the end reading `pad_value`): `[n, idx.len()]`. Differentiable (index_select).
pub(crate) fn gather(x: &Tensor, idx: Vec<i64>, pad_value: f32) -> Result<Tensor> {
    let n = x.shape()[0];
    let per = x.numel() / n.max(1);
    let flat = x.reshape(&[n, per])?;
    let uses_pad = idx.iter().any(|&i| i as usize == per);
    let src = if uses_pad {
        let pad = Tensor::try_full(&[n, 1], pad_value)?.to_device(&x.device())?;
        Tensor::cat(&[flat, pad], 1)?
    } else {
        flat
    };
    let len = idx.len();
    let idx = Tensor::from_vec(idx, &[len])?.to_device(&x.device())?;
    src.index_select(1, &idx)
}

/// Fails unless `x` is a non-empty-batch f32 tensor of `rank` dims.
pub(crate) fn check_input(op: &'static str, x: &Tensor, rank: usize, what: &str) -> Result<()> {
    if x.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            dtype: x.dtype(),
            expected: Some(DType::F32),
        });
    }
    if x.rank() != rank {
        return Err(Error::bad_shape(
            op,
            x.shape(),
            format!("expected a {rank}-d input {what}"),
        ));
    }
    Ok(())
}

impl Tensor {
    /// 2-d convolution of `self` `[n, c, h, w]` (or unbatched `[c, h, w]`) with `weight`
    /// `[o, c / groups, kh, kw]` and an optional `bias` `[o]`: PyTorch's `F.conv2d`.
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::{Conv2dOptions, Tensor};
    /// let x = Tensor::ones(&[1, 1, 3, 3]);
    /// let w = Tensor::ones(&[1, 1, 2, 2]);
    /// let y = x.conv2d(&w, None, &Conv2dOptions::default())?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![4.0; 4]);
    /// # Ok::<(), nn::Error>(())
    /// ```
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv2dOptions,
    ) -> Result<Tensor> {
        self.conv2d_with(weight, bias, opts, true)
    }

    /// [`Tensor::conv2d`], by the backend's fused convolution when `fused` and the
    /// backend has one, else by the composite (im2col and a product; the reference the
    /// tests compare the fused one with).
    pub(crate) fn conv2d_with(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv2dOptions,
        fused: bool,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        if self.rank() == 3 {
            return self
                .unsqueeze(0)?
                .conv2d_with(weight, bias, opts, fused)?
                .squeeze(0);
        }
        check_input(OP, self, 4, "[batch, channels, height, width]")?;
        if weight.rank() != 4 {
            return Err(Error::bad_shape(
                OP,
                weight.shape(),
                "weight must be [out_channels, in_channels / groups, kh, kw]",
            ));
        }
        let [n, c, h, w] = [
            self.shape()[0],
            self.shape()[1],
            self.shape()[2],
            self.shape()[3],
        ];
        let [o, cg, kh, kw] = [
            weight.shape()[0],
            weight.shape()[1],
            weight.shape()[2],
            weight.shape()[3],
        ];
        let g = opts.groups;
        if g == 0 || c % g != 0 || o % g != 0 {
            return Err(Error::invalid_config(
                OP,
                "groups",
                g,
                format!("must divide both in_channels ({c}) and out_channels ({o})"),
            ));
        }
        if cg * g != c {
            return Err(Error::mismatch(OP, self.shape(), weight.shape()));
        }
        if let Some(b) = bias {
            if b.shape() != [o] {
                return Err(Error::mismatch(OP, weight.shape(), b.shape()));
            }
        }
        let win = Windows::new(
            OP,
            self.shape(),
            [h, w],
            [kh, kw],
            opts.stride,
            opts.padding,
            opts.dilation,
            false,
        )?;
        let l = win.positions();
        let taps = crate::shape::checked_numel(OP, &[cg, kh, kw])?;
        crate::shape::checked_numel(OP, &[n, c, kh, kw, l])?;
        // the column matrix's width (even an input with no channel asks for it)
        let n_l = crate::shape::checked_numel(OP, &[n, l])?;
        if fused {
            if let Some(y) = self.conv2d_fused(weight, bias, &win, g)? {
                return Ok(y);
            }
        }
        let direct =
            kh == 1 && kw == 1 && opts.stride == [1, 1] && opts.padding == [[0, 0], [0, 0]];
        // one column matrix for the whole batch, [c * kh * kw, n * l]: a product per
        // group covers every sample (see the NOTE above)
        let cols = if direct {
            self.reshape(&[n, c, l])?
                .permute(&[1, 0, 2])?
                .contiguous()?
        } else {
            im2col(self, &win, true, 0.0)?
        }
        .reshape(&[g, taps, n_l])?;
        let wm = weight.reshape(&[g, o / g, taps])?;
        let y = wm
            .matmul(&cols)?
            .reshape(&[o, n, win.output[0], win.output[1]])?
            .permute(&[1, 0, 2, 3])?
            .contiguous()?;
        match bias {
            Some(b) => y.add(&b.reshape(&[o, 1, 1])?),
            None => Ok(y),
        }
    }

    /// The convolution as one node computed by [`BackendStorage::conv2d`] and
    /// differentiated by [`BackendStorage::conv2d_backward`]; `None` where the backend
    /// has no fused form, for an empty operand and for operands that are not all f32
    /// on one device (the composite then runs, or reports the problem). The caller
    /// validated the shapes.
    ///
    /// [`BackendStorage::conv2d`]: crate::backend::BackendStorage::conv2d
    /// [`BackendStorage::conv2d_backward`]: crate::backend::BackendStorage::conv2d_backward
    fn conv2d_fused(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        win: &Windows,
        groups: usize,
    ) -> Result<Option<Tensor>> {
        let operands = [Some(self), Some(weight), bias];
        let usable = operands
            .iter()
            .flatten()
            .all(|t| t.dtype() == DType::F32 && t.device() == self.device() && t.numel() > 0);
        if !usable || win.positions() == 0 {
            return Ok(None);
        }
        let o = weight.shape()[0];
        let spec = Conv2dSpec {
            window: win.im2col_spec([self.shape()[0], self.shape()[1]], false, 0.0),
            out_channels: o,
            groups,
        };
        let bs = bias.map(|b| b.storage());
        let Some(y) =
            self.storage()
                .conv2d(weight.storage().as_ref(), bs.map(|s| s.as_ref()), &spec)?
        else {
            return Ok(None);
        };
        let shape = [spec.window.batch, o, win.output[0], win.output[1]];
        let inputs: Vec<&Tensor> = operands.into_iter().flatten().collect();
        let has_b = bias.is_some();
        Ok(Some(record(
            y,
            Dims::from_slice(&shape),
            &inputs,
            "conv2d",
            move || {
                backward_fn(move |inp, g| {
                    let (x, w) = (&inp[0], &inp[1]);
                    let needs = [
                        x.requires_grad(),
                        w.requires_grad(),
                        has_b && inp[2].requires_grad(),
                    ];
                    let grads = x.storage().conv2d_backward(
                        w.storage().as_ref(),
                        g.storage().as_ref(),
                        &spec,
                        needs,
                    )?;
                    let Some((dx, dw, db)) = grads else {
                        return Err(Error::custom(format!(
                            "conv2d: the backend of input {:?} computed the fused forward \
                             but has no conv2d_backward",
                            x.shape()
                        )));
                    };
                    let wrap = |s: Option<Storage>, t: &Tensor| {
                        s.map(|s| Tensor::from_storage(s, t.shape())).transpose()
                    };
                    let mut grads = vec![wrap(dx, x)?, wrap(dw, w)?];
                    if has_b {
                        grads.push(wrap(db, &inp[2])?);
                    }
                    Ok(grads)
                })
            },
        )))
    }

    /// 1-d convolution of `self` `[n, c, l]` (or `[c, l]`) with `weight` `[o, c / groups,
    /// k]`: PyTorch's `F.conv1d`, run as a 2-d convolution of height 1. The options'
    /// first entries (height) are ignored; `stride[1]`, `padding[1]`, `dilation[1]` act.
    pub fn conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: [usize; 2],
        dilation: usize,
        groups: usize,
    ) -> Result<Tensor> {
        if self.rank() == 2 {
            return self
                .unsqueeze(0)?
                .conv1d(weight, bias, stride, padding, dilation, groups)?
                .squeeze(0);
        }
        check_input("conv1d", self, 3, "[batch, channels, length]")?;
        if weight.rank() != 3 {
            return Err(Error::bad_shape(
                "conv1d",
                weight.shape(),
                "weight must be [out_channels, in_channels / groups, k]",
            ));
        }
        let opts = Conv2dOptions {
            stride: [1, stride],
            padding: [[0, 0], padding],
            dilation: [1, dilation],
            groups,
        };
        self.unsqueeze(2)?
            .conv2d(&weight.unsqueeze(2)?, bias, &opts)?
            .squeeze(2)
    }
}

#[cfg(test)]
mod tests;
