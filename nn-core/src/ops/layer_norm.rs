//! Layer normalization over the trailing dims as one op with its own backward (PyTorch's
//! `F.layer_norm`): one pass per row forward and one backward where the backend has a
//! fused kernel (the CPU), the composite of mean, sub, square, sqrt and div elsewhere.
//!
//! Per row of N = prod(normalized_shape) elements: mu = mean x, var = mean (x - mu)^2,
//! rstd = 1 / sqrt(var + eps), xhat = (x - mu) rstd, y = xhat w + b. With gh = g w, and
//! d xhat_i / d x_k = rstd (delta_ik - 1/N - xhat_i xhat_k / N):
//! dx = rstd (gh - mean(gh) - xhat mean(gh xhat)), dw = sum_rows g xhat, db = sum_rows g.

use super::same_device;
use crate::autograd::{backward_fn, record};
use crate::backend::Storage;
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Layer normalization over the trailing dims `normalized_shape`, with an optional
    /// elementwise `weight` (gamma) and `bias` (beta) of that shape (PyTorch's
    /// `F.layer_norm`; the [`crate::layers::LayerNorm`] layer runs it).
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0, 0.0, 4.0], &[2, 2])?;
    /// let y = x.layer_norm(&[2], None, None, 0.0)?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![-1.0, 1.0, -1.0, 1.0]);
    /// # Ok::<(), nn::Error>(())
    /// ```
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let (r, k) = (self.rank(), normalized_shape.len());
        if r < k || self.shape()[r - k..] != *normalized_shape {
            return Err(Error::bad_shape(
                "layer_norm",
                self.shape(),
                format!("the trailing dims must be the normalized shape {normalized_shape:?}"),
            ));
        }
        for p in [weight, bias].into_iter().flatten() {
            if p.shape() != normalized_shape {
                return Err(Error::ShapeMismatch {
                    op: "layer_norm (weight and bias have the normalized shape)",
                    lhs: p.shape().to_vec(),
                    rhs: normalized_shape.to_vec(),
                });
            }
            same_device("layer_norm", self, p)?;
        }
        if let Some(y) = self.layer_norm_fused(normalized_shape, weight, bias, eps as f32)? {
            return Ok(y);
        }
        let axes: Vec<usize> = (r - k..r).collect();
        let count = normalized_shape.iter().product::<usize>().max(1) as f32;
        let mu = self.sum_axes_keepdim(&axes)?.div_scalar(count)?;
        let c = self.sub(&mu)?;
        let var = c.square()?.sum_axes_keepdim(&axes)?.div_scalar(count)?;
        let mut y = c.div(&var.add_scalar(eps as f32)?.sqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(w)?;
        }
        if let Some(b) = bias {
            y = y.add(b)?;
        }
        Ok(y)
    }

    /// The fused form, `None` where the backend has none or a dtype is not f32.
    fn layer_norm_fused(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Option<Tensor>> {
        let cols: usize = normalized_shape.iter().product();
        let all_f32 = [Some(self), weight, bias]
            .into_iter()
            .flatten()
            .all(|t| t.dtype() == DType::F32);
        if cols == 0 || self.numel() == 0 || !all_f32 {
            return Ok(None);
        }
        let rows = self.numel() / cols;
        let (ws, bs) = (weight.map(|w| w.storage()), bias.map(|b| b.storage()));
        let Some((y, stats)) = self.storage().layer_norm(
            ws.map(|s| s.as_ref()),
            bs.map(|s| s.as_ref()),
            rows,
            cols,
            eps,
        )?
        else {
            return Ok(None);
        };
        let inputs: Vec<&Tensor> = [Some(self), weight, bias].into_iter().flatten().collect();
        let (has_w, has_b) = (weight.is_some(), bias.is_some());
        Ok(Some(record(
            y,
            self.shape_dims(),
            &inputs,
            "layer_norm",
            move || {
                backward_fn(move |inp, g| {
                    let x = &inp[0];
                    let w = has_w.then(|| &inp[1]);
                    let fused = x.storage().layer_norm_backward(
                        g.storage().as_ref(),
                        stats.as_ref(),
                        w.map(|w| w.storage().as_ref()),
                        has_b,
                        rows,
                        cols,
                    )?;
                    let (dx, dw, db) = match fused {
                        Some((dx, dw, db)) => {
                            let p = |s: Storage| Tensor::from_storage(s, w_shape(x, cols));
                            (
                                Tensor::from_storage(dx, x.shape())?,
                                dw.map(p).transpose()?,
                                db.map(p).transpose()?,
                            )
                        }
                        None => layer_norm_grads(x, g, &stats, w, has_b, rows, cols)?,
                    };
                    let mut grads = vec![Some(dx)];
                    if has_w {
                        grads.push(dw);
                    }
                    if has_b {
                        grads.push(db);
                    }
                    Ok(grads)
                })
            },
        )))
    }
}

/// The normalized shape: the trailing dims of `x` holding `cols` elements.
fn w_shape(x: &Tensor, cols: usize) -> &[usize] {
    let s = x.shape();
    let mut n = 1;
    for i in (0..s.len()).rev() {
        n *= s[i];
        if n == cols {
            return &s[i..];
        }
    }
    s
}

/// The backward from primitives (a backend whose forward was fused but whose backward is
/// not).
fn layer_norm_grads(
    x: &Tensor,
    g: &Tensor,
    stats: &Storage,
    w: Option<&Tensor>,
    with_bias: bool,
    rows: usize,
    cols: usize,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let st = Tensor::from_storage(stats.clone(), &[rows, 2])?;
    let (mean, rstd) = (st.narrow(1, 0, 1)?, st.narrow(1, 1, 1)?);
    let x2 = x.reshape(&[rows, cols])?;
    let g2 = g.reshape(&[rows, cols])?;
    let xhat = x2.sub(&mean)?.mul(&rstd)?;
    let gh = match w {
        Some(w) => g2.mul(&w.reshape(&[cols])?)?,
        None => g2.clone(),
    };
    let n = cols as f32;
    let mean_gh = gh.sum_axes_keepdim(&[1])?.div_scalar(n)?;
    let mean_ghx = gh.mul(&xhat)?.sum_axes_keepdim(&[1])?.div_scalar(n)?;
    let dx = gh
        .sub(&mean_gh)?
        .sub(&xhat.mul(&mean_ghx)?)?
        .mul(&rstd)?
        .reshape(x.shape())?;
    let ws = w_shape(x, cols);
    let dw = w
        .map(|_| g2.mul(&xhat)?.sum_axes_keepdim(&[0])?.reshape(ws))
        .transpose()?;
    let db = with_bias
        .then(|| g2.sum_axes_keepdim(&[0])?.reshape(ws))
        .transpose()?;
    Ok((dx, dw, db))
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use crate::{Error, Result, Tensor};

    fn close(a: &Tensor, b: &Tensor, tol: f32) -> Result<()> {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.to_vec::<f32>()?.iter().zip(b.to_vec::<f32>()?) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
        Ok(())
    }

    fn grads(ts: &[&Tensor]) -> Result<Vec<Tensor>> {
        ts.iter()
            .map(|t| t.grad().ok_or_else(|| Error::custom("no grad")))
            .collect()
    }

    #[test]
    fn fused_matches_the_composite_and_its_own_fallback() -> Result<()> {
        // odd widths, several trailing dims, a parallel-sized input
        for (shape, k) in [
            (&[3, 7][..], 1),
            (&[2, 3, 5][..], 2),
            (&[4, 1][..], 1),
            (&[300, 129][..], 1),
        ] {
            let ns = &shape[shape.len() - k..];
            let x = Tensor::randn(shape)
                .mul_scalar(2.0)?
                .add_scalar(0.5)?
                .with_requires_grad(true);
            let w = Tensor::randn(ns).with_requires_grad(true);
            let b = Tensor::randn(ns).with_requires_grad(true);
            let u = Tensor::randn(shape);
            let fused = x.layer_norm(ns, Some(&w), Some(&b), 1e-5)?;
            fused.mul(&u)?.sum()?.backward()?;
            let gf = grads(&[&x, &w, &b])?;
            for t in [&x, &w, &b] {
                t.zero_grad();
            }
            // the composite the layer ran before
            let axes: Vec<usize> = (shape.len() - k..shape.len()).collect();
            let count = ns.iter().product::<usize>() as f32;
            let mu = x.sum_axes_keepdim(&axes)?.div_scalar(count)?;
            let c = x.sub(&mu)?;
            let var = c.square()?.sum_axes_keepdim(&axes)?.div_scalar(count)?;
            let comp = c.div(&var.add_scalar(1e-5)?.sqrt()?)?.mul(&w)?.add(&b)?;
            close(&fused, &comp, 1e-5)?;
            comp.mul(&u)?.sum()?.backward()?;
            let gc = grads(&[&x, &w, &b])?;
            for (a, c) in gf.iter().zip(&gc) {
                close(a, c, 1e-4)?;
            }
            // the primitives' backward a backend without the fused backward would run
            let y = x
                .detach()
                .layer_norm(ns, Some(&w.detach()), Some(&b.detach()), 1e-5)?;
            let rows = x.numel() / count as usize;
            let (mean, rstd) = {
                let st = x.detach().reshape(&[rows, count as usize])?;
                let m = st.mean_dim(1, true)?;
                let v = st.sub(&m)?.square()?.mean_dim(1, true)?;
                (m, Tensor::ones(&[1]).div(&v.add_scalar(1e-5)?.sqrt()?)?)
            };
            let stats = Tensor::cat(&[mean, rstd], 1)?;
            let (dx, dw, db) = super::layer_norm_grads(
                &x.detach(),
                &u,
                stats.storage(),
                Some(&w.detach()),
                true,
                rows,
                count as usize,
            )?;
            close(&dx, &gc[0], 1e-4)?;
            close(&dw.ok_or_else(|| Error::custom("dw"))?, &gc[1], 1e-4)?;
            close(&db.ok_or_else(|| Error::custom("db"))?, &gc[2], 1e-4)?;
            assert_eq!(y.shape(), shape);
        }
        Ok(())
    }

    #[test]
    fn finite_differences_and_hand_derived() -> Result<()> {
        check_grad(&[&[3, 5], &[5], &[5]], |t| {
            t[0].layer_norm(&[5], Some(&t[1]), Some(&t[2]), 1e-5)
        })?;
        check_grad(&[&[2, 2, 3]], |t| {
            t[0].layer_norm(&[2, 3], None, None, 1e-5)
        })?;
        check_grad(&[&[2, 4], &[4]], |t| {
            t[0].layer_norm(&[4], Some(&t[1]), None, 1e-5)
        })?;
        // x = [1, 3], eps 0: mu 2, rstd 1, xhat = [-1, 1]; g = [1, 0]: gh = g,
        // mean(gh) = 1/2, mean(gh xhat) = -1/2, dx = gh - 1/2 + xhat/2 = [0, 0]
        // (a shift of x along itself changes nothing); db = g, dw = g xhat = [-1, 0]
        let x = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2])?.with_requires_grad(true);
        let w = Tensor::ones(&[2]).with_requires_grad(true);
        let b = Tensor::zeros(&[2]).with_requires_grad(true);
        let y = x.layer_norm(&[2], Some(&w), Some(&b), 0.0)?;
        assert_eq!(y.to_vec::<f32>()?, vec![-1.0, 1.0]);
        y.mul(&Tensor::from_vec(vec![1.0f32, 0.0], &[1, 2])?)?
            .sum()?
            .backward()?;
        let g = grads(&[&x, &w, &b])?;
        assert_eq!(g[0].to_vec::<f32>()?, vec![0.0, 0.0]);
        assert_eq!(g[1].to_vec::<f32>()?, vec![-1.0, 0.0]);
        assert_eq!(g[2].to_vec::<f32>()?, vec![1.0, 0.0]);
        Ok(())
    }

    #[test]
    fn shapes_are_checked() {
        let x = Tensor::zeros(&[2, 3]);
        assert!(x.layer_norm(&[4], None, None, 1e-5).is_err());
        assert!(x
            .layer_norm(&[3], Some(&Tensor::ones(&[2])), None, 1e-5)
            .is_err());
        assert!(x.layer_norm(&[2, 3, 1], None, None, 1e-5).is_err());
    }
}
