//! Fused affine map `y = x W^T + b` (PyTorch's `F.linear`), alone or followed by a ReLU
//! (`linear_relu`), and ReLU's one-pass backward.
//!
//! With x `[*, in]` flattened to X `[N, in]`, W `[out, in]`, b `[out]`, G = dL/dY `[N, out]`:
//! dX = G W, dW = G^T X, db = sum over rows of G. One recorded node replaces the
//! reshape, matmul, reshape and broadcast-add of the unfused formulation, and the CPU
//! backend adds the bias inside the GEMM (it accumulates into bias rows). With the ReLU,
//! y = relu(x W^T + b) and G is first masked: G' = G * (y > 0) (relu' = 1 for a positive
//! pre-activation, 0 otherwise, PyTorch's 0 at the kink; y > 0 exactly where the
//! pre-activation is), then the formulas above run on G'; db is summed in the masking pass.

use super::same_device;
use crate::autograd::{backward_fn, record};
use crate::backend::{MatmulSpec, ReduceOp, Storage, UnaryOp};
use crate::shape::Dims;
use crate::{DType, Error, HostData, Result, Tensor};
use std::sync::Arc;

impl Tensor {
    /// `self @ weight^T + bias` over the last dim of `self` (weight `[out, in]`, bias
    /// `[out]`), as PyTorch's `torch.nn.functional.linear`.
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2])?;
    /// let w = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, 2.0], &[2, 2])?;
    /// let b = Tensor::from_vec(vec![0.5f32, -1.0], &[2])?;
    /// assert_eq!(x.linear(&w, Some(&b))?.to_vec::<f32>()?, vec![3.5, 3.0]);
    /// # Ok::<(), nn::Error>(())
    /// ```
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.affine_map(weight, bias, false)
    }

    /// `relu(self @ weight^T + bias)` as one op: the ReLU runs on the GEMM's output in
    /// place and its backward masks the output gradient by `y > 0` (the output's sign,
    /// equal to the pre-activation's) in the pass that also sums the bias gradient.
    /// The same values and gradients as `self.linear(weight, bias)?.relu()`, with one
    /// recorded node and no pre-activation tensor kept.
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2])?;
    /// let w = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, -2.0], &[2, 2])?;
    /// assert_eq!(x.linear_relu(&w, None)?.to_vec::<f32>()?, vec![3.0, 0.0]);
    /// # Ok::<(), nn::Error>(())
    /// ```
    pub fn linear_relu(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.affine_map(weight, bias, true)
    }

    /// [`Tensor::linear`], followed by a ReLU when `relu`.
    fn affine_map(&self, weight: &Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let op = if relu { "linear_relu" } else { "linear" };
        same_device(op, self, weight)?;
        let [out_f, in_f] = *weight.shape() else {
            return Err(Error::bad_shape(
                op,
                weight.shape(),
                "weight must be [out_features, in_features]",
            ));
        };
        if self.shape().last() != Some(&in_f) {
            return Err(Error::mismatch(op, self.shape(), weight.shape()));
        }
        for t in [Some(self), Some(weight), bias].into_iter().flatten() {
            if t.dtype() != DType::F32 {
                return Err(Error::DType {
                    op,
                    dtype: t.dtype(),
                    expected: Some(DType::F32),
                });
            }
        }
        if let Some(b) = bias {
            same_device(op, self, b)?;
            if b.shape() != [out_f] {
                return Err(Error::mismatch(op, weight.shape(), b.shape()));
            }
        }
        // The rows are the product of the leading dims, not numel / in_features: with
        // in_features = 0 there are still rows (each output is its bias).
        let rows = crate::shape::numel(&self.shape()[..self.rank() - 1]);
        let fwd = MatmulSpec::single(rows, out_f, in_f, false, true);
        let (xs, ws) = (self.storage(), weight.storage());
        let mut storage = match bias {
            Some(b) => xs.matmul_bias(ws.as_ref(), &fwd, b.storage().as_ref())?,
            None => xs.matmul(ws.as_ref(), &fwd)?,
        };
        if relu {
            storage = relu_in_place(storage)?;
        }
        let mut out: Dims = Dims::from_slice(&self.shape()[..self.rank() - 1]);
        out.push(out_f);
        let mut inputs: [&Tensor; 3] = [self, weight, weight];
        let n_in = match bias {
            Some(b) => {
                inputs[2] = b;
                3
            }
            None => 2,
        };
        // the ReLU's backward reads the output's sign
        let y = relu.then(|| storage.clone());
        Ok(record(storage, out, &inputs[..n_in], op, move || {
            backward_fn(move |inp, g| {
                let (x, w) = (&inp[0], &inp[1]);
                let b = inp.get(2).filter(|b| b.requires_grad());
                let (g, gb) = match (&y, b) {
                    (Some(y), Some(_)) => {
                        let (gm, gb) = y.relu_backward_colsum(g.storage().as_ref(), rows, out_f)?;
                        (gm, Some(gb))
                    }
                    (Some(y), None) => (y.relu_backward(g.storage().as_ref())?, None),
                    (None, Some(_)) => {
                        let gs = g.storage();
                        let gb = gs.reduce(ReduceOp::Sum, &[rows, out_f], &[0])?;
                        (gs.clone(), Some(gb))
                    }
                    (None, None) => (g.storage().clone(), None),
                };
                let gx = if x.requires_grad() {
                    // dX = G W: [rows, out] x [out, in]
                    let s = g.matmul(
                        w.storage().as_ref(),
                        &MatmulSpec::single(rows, in_f, out_f, false, false),
                    )?;
                    Some(Tensor::from_storage(s, x.shape())?)
                } else {
                    None
                };
                let gw = if w.requires_grad() {
                    // dW = G^T X: [out, rows] x [rows, in]
                    let s = g.matmul(
                        x.storage().as_ref(),
                        &MatmulSpec::single(out_f, in_f, rows, true, false),
                    )?;
                    Some(Tensor::from_storage(s, &[out_f, in_f])?)
                } else {
                    None
                };
                let mut grads = vec![gx, gw];
                if inp.len() == 3 {
                    grads.push(gb.map(|s| Tensor::from_storage(s, &[out_f])).transpose()?);
                }
                Ok(grads)
            })
        }))
    }
}

/// `max(x, 0)` of a fresh GEMM output: in place when the storage is host memory held
/// only here (always, on the CPU), as a backend op otherwise.
fn relu_in_place(mut s: Storage) -> Result<Storage> {
    if let Some(HostData::F32(v)) = Arc::get_mut(&mut s).and_then(|b| b.as_host_mut()) {
        for v in v.iter_mut() {
            // the same expression as the backend's relu: NaN becomes 0 there too
            *v = if *v > 0.0 { *v } else { 0.0 };
        }
        return Ok(s);
    }
    s.unary(UnaryOp::Relu)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, fixture_case};
    use crate::{Result, Tensor};

    #[test]
    fn hand_derived() -> Result<()> {
        // y = x w^T + b with x [1,2] = (1,2), w [1,2] = (3,4), b = 5: y = 16;
        // dy/dx = w = (3,4), dy/dw = x = (1,2), dy/db = 1
        let x = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2])?.with_requires_grad(true);
        let w = Tensor::from_vec(vec![3.0f32, 4.0], &[1, 2])?.with_requires_grad(true);
        let b = Tensor::from_vec(vec![5.0f32], &[1])?.with_requires_grad(true);
        let y = x.linear(&w, Some(&b))?;
        assert_eq!(y.to_vec::<f32>()?, vec![16.0]);
        y.sum()?.backward()?;
        let g = |t: &Tensor| t.grad().map(|g| g.to_vec::<f32>()).transpose();
        assert_eq!(g(&x)?, Some(vec![3.0, 4.0]));
        assert_eq!(g(&w)?, Some(vec![1.0, 2.0]));
        assert_eq!(g(&b)?, Some(vec![1.0]));
        Ok(())
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        check_grad(&[&[4, 3], &[5, 3], &[5]], |x| {
            x[0].linear(&x[1], Some(&x[2]))
        })?;
        check_grad(&[&[2, 4, 3], &[5, 3], &[5]], |x| {
            x[0].linear(&x[1], Some(&x[2]))
        })?;
        check_grad(&[&[4, 3], &[5, 3]], |x| x[0].linear(&x[1], None))?;
        Ok(())
    }

    #[test]
    fn linear_relu_hand_derived() -> Result<()> {
        // x = (1, 2), w = [[3, 4], [-3, -4]], b = (5, 5): pre-activation (16, -6), y = (16, 0);
        // L = sum(y): the second unit is off, so dL/dx = w row 0 = (3, 4),
        // dL/dw = [[1, 2], [0, 0]], dL/db = (1, 0)
        let x = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2])?.with_requires_grad(true);
        let w = Tensor::from_vec(vec![3.0f32, 4.0, -3.0, -4.0], &[2, 2])?.with_requires_grad(true);
        let b = Tensor::from_vec(vec![5.0f32, 5.0], &[2])?.with_requires_grad(true);
        let y = x.linear_relu(&w, Some(&b))?;
        assert_eq!(y.to_vec::<f32>()?, vec![16.0, 0.0]);
        y.sum()?.backward()?;
        let g = |t: &Tensor| t.grad().map(|g| g.to_vec::<f32>()).transpose();
        assert_eq!(g(&x)?, Some(vec![3.0, 4.0]));
        assert_eq!(g(&w)?, Some(vec![1.0, 2.0, 0.0, 0.0]));
        assert_eq!(g(&b)?, Some(vec![1.0, 0.0]));
        Ok(())
    }

    #[test]
    fn linear_relu_grads_finite_difference() -> Result<()> {
        check_grad(&[&[4, 3], &[5, 3], &[5]], |x| {
            x[0].linear_relu(&x[1], Some(&x[2]))
        })?;
        check_grad(&[&[2, 4, 3], &[5, 3], &[5]], |x| {
            x[0].linear_relu(&x[1], Some(&x[2]))
        })?;
        check_grad(&[&[4, 3], &[5, 3]], |x| x[0].linear_relu(&x[1], None))?;
        Ok(())
    }

    #[test]
    fn linear_relu_equals_linear_then_relu() -> Result<()> {
        // values and every gradient, under a non-uniform output gradient; one frozen
        // input too (its gradient is skipped, the others unchanged)
        for freeze_w in [false, true] {
            let x = Tensor::randn(&[6, 9]).with_requires_grad(true);
            let w = Tensor::randn(&[7, 9]).with_requires_grad(!freeze_w);
            let b = Tensor::randn(&[7]).with_requires_grad(true);
            let r = Tensor::randn(&[6, 7]);
            let run = |fused: bool| -> Result<Vec<Option<Vec<f32>>>> {
                for t in [&x, &w, &b] {
                    t.zero_grad();
                }
                let y = match fused {
                    true => x.linear_relu(&w, Some(&b))?,
                    false => x.linear(&w, Some(&b))?.relu()?,
                };
                y.mul(&r)?.sum()?.backward()?;
                let mut out = vec![Some(y.to_vec::<f32>()?)];
                for t in [&x, &w, &b] {
                    out.push(t.grad().map(|g| g.to_vec::<f32>()).transpose()?);
                }
                Ok(out)
            };
            let (fused, plain) = (run(true)?, run(false)?);
            assert_eq!(fused[2].is_none(), freeze_w);
            for (f, p) in fused.iter().zip(&plain) {
                assert_eq!(f.is_some(), p.is_some());
                for (a, b) in f.iter().flatten().zip(p.iter().flatten()) {
                    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn equals_matmul_plus_bias() -> Result<()> {
        let x = Tensor::randn(&[7, 33]);
        let w = Tensor::randn(&[65, 33]);
        let b = Tensor::randn(&[65]);
        let fused = x.linear(&w, Some(&b))?.to_vec::<f32>()?;
        let plain = x.matmul(&w.t()?)?.add(&b)?.to_vec::<f32>()?;
        assert!(fused.iter().zip(&plain).all(|(a, b)| (a - b).abs() < 1e-4));
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = Tensor::zeros(&[2, 3]);
        assert!(x.linear(&Tensor::zeros(&[4, 5]), None).is_err());
        assert!(x
            .linear(&Tensor::zeros(&[4, 3]), Some(&Tensor::zeros(&[3])))
            .is_err());
        assert!(x.linear(&Tensor::zeros(&[3]), None).is_err());
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        // x @ W^T = linear without bias
        fixture_case("matmul_2d", |x| x[0].linear(&x[1].t()?, None))?;
        Ok(())
    }

    #[test]
    fn relu_backward_is_the_step_mask() -> Result<()> {
        // d relu(x)/dx = 1 for x > 0, 0 for x <= 0 (0 at the kink, as PyTorch)
        let x = Tensor::from_vec(vec![-1.0f32, 0.0, 2.0], &[3])?.with_requires_grad(true);
        x.relu()?.mul_scalar(3.0)?.sum()?.backward()?;
        let g = x.grad().map(|g| g.to_vec::<f32>()).transpose()?;
        assert_eq!(g, Some(vec![0.0, 0.0, 3.0]));
        Ok(())
    }
}
