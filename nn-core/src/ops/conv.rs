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
            window: Im2ColSpec {
                batch: self.shape()[0],
                channels: self.shape()[1],
                input: win.input,
                kernel: win.kernel,
                stride: win.stride,
                padding: win.padding,
                dilation: win.dilation,
                output: win.output,
                batch_inner: false,
                pad_value: 0.0,
            },
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
mod tests {
    use super::super::testing::check_grad;
    use super::Conv2dOptions;
    use crate::{Result, Tensor};

    /// Direct 7-loop convolution, the definition in the module docs.
    fn naive(x: &Tensor, w: &Tensor, o: &Conv2dOptions) -> Result<Vec<f32>> {
        let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
        let (xv, wv) = (x.to_vec::<f32>()?, w.to_vec::<f32>()?);
        let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
        let (oc, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        let og = oc / o.groups;
        let sz = |i: usize, k: usize, d: usize| {
            (i + o.padding[d][0] + o.padding[d][1] - o.dilation[d] * (k - 1) - 1) / o.stride[d] + 1
        };
        let (oh, ow) = (sz(h, kh, 0), sz(wd, kw, 1));
        let mut y = vec![0.0; n * oc * oh * ow];
        for b in 0..n {
            for co in 0..oc {
                let grp = co / og;
                for i in 0..oh {
                    for j in 0..ow {
                        let mut s = 0.0;
                        for ci in 0..cg {
                            for p in 0..kh {
                                for q in 0..kw {
                                    let r = (i * o.stride[0] + p * o.dilation[0]) as isize
                                        - o.padding[0][0] as isize;
                                    let t = (j * o.stride[1] + q * o.dilation[1]) as isize
                                        - o.padding[1][0] as isize;
                                    if r < 0 || t < 0 || r >= h as isize || t >= wd as isize {
                                        continue;
                                    }
                                    let cin = grp * cg + ci;
                                    s += xv[((b * c + cin) * h + r as usize) * wd + t as usize]
                                        * wv[((co * cg + ci) * kh + p) * kw + q];
                                }
                            }
                        }
                        y[((b * oc + co) * oh + i) * ow + j] = s;
                    }
                }
            }
        }
        Ok(y)
    }

    fn cases() -> Vec<(Vec<usize>, Vec<usize>, Conv2dOptions)> {
        let d = Conv2dOptions::default();
        vec![
            (vec![2, 3, 5, 6], vec![4, 3, 3, 3], d),
            (
                vec![1, 2, 7, 7],
                vec![3, 2, 3, 2],
                d.stride([2, 1]).padding([1, 2]),
            ),
            (
                vec![2, 4, 6, 5],
                vec![6, 2, 2, 3],
                d.groups(2).dilation([2, 1]),
            ),
            (
                vec![1, 3, 5, 5],
                vec![3, 1, 3, 3],
                d.groups(3).padding([1, 1]),
            ),
            (vec![2, 3, 4, 4], vec![2, 3, 1, 1], d),
            (vec![1, 2, 5, 4], vec![2, 2, 2, 2], d.same_padding([2, 2])),
        ]
    }

    #[test]
    fn matches_the_definition() -> Result<()> {
        for (xs, ws, o) in cases() {
            let (x, w) = (Tensor::randn(&xs), Tensor::randn(&ws));
            let got = x.conv2d(&w, None, &o)?.to_vec::<f32>()?;
            let want = naive(&x, &w, &o)?;
            assert_eq!(got.len(), want.len(), "{xs:?} {ws:?} {o:?}");
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "{xs:?} {o:?}: {a} vs {b}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn hand_derived() -> Result<()> {
        // x = [[1, 2], [3, 4]], w = [[1]] with padding 1 and stride 2 reads the corners of
        // the padded 4x4: y = [[0, 0], [0, 4]]. dL/dw for L = sum(y) = sum of the picked
        // inputs (4), dL/dx = 1 at the picked element only, dL/db = #outputs = 4.
        let x =
            Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2])?.with_requires_grad(true);
        let w = Tensor::from_vec(vec![1.0f32], &[1, 1, 1, 1])?.with_requires_grad(true);
        let b = Tensor::from_vec(vec![0.0f32], &[1])?.with_requires_grad(true);
        let o = Conv2dOptions::default().padding([1, 1]).stride([2, 2]);
        let y = x.conv2d(&w, Some(&b), &o)?;
        assert_eq!(y.to_vec::<f32>()?, vec![0.0, 0.0, 0.0, 4.0]);
        y.sum()?.backward()?;
        let g = |t: &Tensor| t.grad().map(|g| g.to_vec::<f32>()).transpose();
        assert_eq!(g(&x)?, Some(vec![0.0, 0.0, 0.0, 1.0]));
        assert_eq!(g(&w)?, Some(vec![4.0]));
        assert_eq!(g(&b)?, Some(vec![4.0]));
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        for (xs, ws, o) in cases() {
            let bias = [ws[0]];
            check_grad(&[&xs, &ws, &bias], |t| t[0].conv2d(&t[1], Some(&t[2]), &o))?;
        }
        // the per-sample schedule (64 output positions or more), 3x3 and 1x1
        check_grad(&[&[2, 2, 9, 8], &[3, 2, 2, 2], &[3]], |t| {
            let o = Conv2dOptions::default().padding([1, 1]);
            t[0].conv2d(&t[1], Some(&t[2]), &o)
        })?;
        check_grad(&[&[2, 3, 8, 9], &[2, 3, 1, 1], &[2]], |t| {
            t[0].conv2d(&t[1], Some(&t[2]), &Conv2dOptions::default())
        })?;
        check_grad(&[&[2, 2, 7], &[4, 1, 3], &[4]], |t| {
            t[0].conv1d(&t[1], Some(&t[2]), 2, [1, 1], 2, 2)
        })?;
        Ok(())
    }

    /// Shapes for the fused op against the composite: both schedules of the CPU (per
    /// sample from 64 output positions, batch in the columns below), a split over
    /// threads into uneven sample ranges (3 samples, enough work), 1x1 with and without
    /// stride, groups and depthwise on each schedule, asymmetric padding, dilation, odd
    /// sizes, batch 1.
    fn fused_cases() -> Vec<(Vec<usize>, Vec<usize>, Conv2dOptions)> {
        let d = Conv2dOptions::default();
        let mut asym = d.stride([1, 2]).dilation([2, 1]);
        asym.padding = [[2, 0], [1, 3]];
        let mut v = cases();
        v.extend([
            (vec![3, 8, 20, 20], vec![16, 8, 3, 3], d.padding([1, 1])),
            (vec![2, 6, 11, 9], vec![5, 6, 3, 3], asym),
            (
                vec![2, 6, 13, 9],
                vec![6, 1, 3, 3],
                d.groups(6).padding([1, 1]),
            ),
            (vec![3, 6, 9, 10], vec![4, 3, 2, 2], d.groups(2)),
            (vec![3, 16, 10, 9], vec![24, 16, 1, 1], d),
            (vec![3, 16, 10, 9], vec![24, 16, 1, 1], d.stride([2, 2])),
            (vec![2, 16, 5, 3], vec![8, 16, 1, 1], d),
            (
                vec![1, 3, 17, 15],
                vec![4, 3, 7, 7],
                d.stride([2, 2]).padding([3, 3]),
            ),
            (vec![1, 4, 12, 12], vec![4, 4, 3, 3], d.padding([1, 1])),
            (vec![5, 8, 4, 4], vec![16, 8, 3, 3], d.padding([1, 1])),
        ]);
        v
    }

    /// `(y, dx, dw, db)` of `sum(conv(x) * r)` (r fixed) by the fused op or the composite.
    fn run(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        o: &Conv2dOptions,
        fused: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let leaf = |t: &Tensor| t.detach().with_requires_grad(true);
        let (x, w, b) = (leaf(x), leaf(w), b.map(leaf));
        let y = x.conv2d_with(&w, b.as_ref(), o, fused)?;
        let r: Vec<f32> = (0..y.numel())
            .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let r = Tensor::from_vec(r, y.shape())?;
        y.mul(&r)?.sum()?.backward()?;
        let mut out = vec![y.to_vec::<f32>()?];
        for t in [Some(&x), Some(&w), b.as_ref()].into_iter().flatten() {
            out.push(
                t.grad()
                    .map(|g| g.to_vec::<f32>())
                    .transpose()?
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }

    #[test]
    fn fused_matches_the_composite() -> Result<()> {
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| crate::Error::custom(e.to_string()))?;
            for (xs, ws, o) in fused_cases() {
                for with_bias in [true, false] {
                    let (x, w, b) = (
                        Tensor::randn(&xs),
                        Tensor::randn(&ws),
                        Tensor::randn(&[ws[0]]),
                    );
                    let b = with_bias.then_some(&b);
                    let got = pool.install(|| run(&x, &w, b, &o, true))?;
                    let want = pool.install(|| run(&x, &w, b, &o, false))?;
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g.len(), w.len(), "{xs:?} {ws:?} {o:?} output {k}");
                        for (a, e) in g.iter().zip(w) {
                            assert!(
                                (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "{xs:?} {ws:?} {o:?} bias {with_bias} threads {threads} \
                                 output {k}: {a} vs {e}"
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn fused_unbatched_and_frozen_operands() -> Result<()> {
        let o = Conv2dOptions::default().padding([1, 1]);
        let (x, w) = (Tensor::randn(&[3, 9, 9]), Tensor::randn(&[4, 3, 3, 3]));
        let got = x.conv2d(&w, None, &o)?;
        let want = x.conv2d_with(&w, None, &o, false)?;
        assert_eq!(got.shape(), &[4, 9, 9]);
        super::super::testing::assert_close("unbatched", &got, &want)?;
        // only the weight asks for a gradient (a first layer), then only the input
        for (xg, wg) in [(false, true), (true, false)] {
            let xr = x.detach().with_requires_grad(xg);
            let wr = w.detach().with_requires_grad(wg);
            xr.conv2d(&wr, None, &o)?.sum()?.backward()?;
            assert_eq!((xr.grad().is_some(), wr.grad().is_some()), (xg, wg));
        }
        Ok(())
    }

    #[test]
    fn unbatched_and_1d_shapes() -> Result<()> {
        let o = Conv2dOptions::default();
        let y = Tensor::zeros(&[3, 5, 5]).conv2d(&Tensor::zeros(&[2, 3, 3, 3]), None, &o)?;
        assert_eq!(y.shape(), &[2, 3, 3]);
        let y =
            Tensor::zeros(&[2, 3, 10]).conv1d(&Tensor::zeros(&[4, 3, 3]), None, 1, [1, 1], 1, 1)?;
        assert_eq!(y.shape(), &[2, 4, 10]);
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        let o = Conv2dOptions::default();
        let w = Tensor::zeros(&[2, 3, 3, 3]);
        let err = |x: &[usize], w: &Tensor, o: &Conv2dOptions| {
            Tensor::zeros(x)
                .conv2d(w, None, o)
                .err()
                .map(|e| e.to_string())
        };
        let e = err(&[1, 4, 5, 5], &w, &o).unwrap_or_default();
        assert!(
            e.contains("[1, 4, 5, 5]") && e.contains("[2, 3, 3, 3]"),
            "{e}"
        );
        let e = err(&[1, 3, 2, 2], &w, &o).unwrap_or_default();
        assert!(e.contains("larger than the padded input [2, 2]"), "{e}");
        assert!(err(&[1, 3, 5, 5], &w, &o.stride([0, 1])).is_some());
        assert!(err(&[1, 3, 5, 5], &w, &o.groups(2)).is_some());
        assert!(err(&[1, 3, 5, 5], &w, &o.groups(0)).is_some());
        assert!(err(&[3, 5], &w, &o).is_some());
    }
}
