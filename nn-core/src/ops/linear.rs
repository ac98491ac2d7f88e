//! Fused affine map `y = x W^T + b` (PyTorch's `F.linear`) and ReLU's one-pass backward.
//!
//! With x `[*, in]` flattened to X `[N, in]`, W `[out, in]`, b `[out]`, G = dL/dY `[N, out]`:
//! dX = G W, dW = G^T X, db = sum over rows of G. One recorded node replaces the
//! reshape, matmul, reshape and broadcast-add of the unfused formulation, and the CPU
//! backend adds the bias inside the GEMM (it accumulates into bias rows).

use super::same_device;
use crate::autograd::{backward_fn, record};
use crate::backend::MatmulSpec;
use crate::shape::Dims;
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// `self @ weight^T + bias` over the last dim of `self` (weight `[out, in]`, bias
    /// `[out]`), as PyTorch's `torch.nn.functional.linear`.
    ///
    /// ```
    /// use nn_core::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2])?;
    /// let w = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, 2.0], &[2, 2])?;
    /// let b = Tensor::from_vec(vec![0.5f32, -1.0], &[2])?;
    /// assert_eq!(x.linear(&w, Some(&b))?.to_vec::<f32>()?, vec![3.5, 3.0]);
    /// # Ok::<(), nn_core::Error>(())
    /// ```
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        same_device("linear", self, weight)?;
        let [out_f, in_f] = *weight.shape() else {
            return Err(Error::bad_shape(
                "linear",
                weight.shape(),
                "weight must be [out_features, in_features]",
            ));
        };
        if self.shape().last() != Some(&in_f) {
            return Err(Error::mismatch("linear", self.shape(), weight.shape()));
        }
        for t in [Some(self), Some(weight), bias].into_iter().flatten() {
            if t.dtype() != DType::F32 {
                return Err(Error::DType {
                    op: "linear",
                    dtype: t.dtype(),
                    expected: Some(DType::F32),
                });
            }
        }
        if let Some(b) = bias {
            same_device("linear", self, b)?;
            if b.shape() != [out_f] {
                return Err(Error::mismatch("linear", weight.shape(), b.shape()));
            }
        }
        // The rows are the product of the leading dims, not numel / in_features: with
        // in_features = 0 there are still rows (each output is its bias).
        let rows = crate::shape::numel(&self.shape()[..self.rank() - 1]);
        let spec = MatmulSpec {
            batch: 1,
            m: rows,
            n: out_f,
            k: in_f,
            lhs_batch: vec![0],
            rhs_batch: vec![0],
            lhs_t: false,
            rhs_t: true,
        };
        let (xs, ws) = (self.storage(), weight.storage());
        let storage = match bias {
            Some(b) => xs.matmul_bias(ws.as_ref(), &spec, b.storage().as_ref())?,
            None => xs.matmul(ws.as_ref(), &spec)?,
        };
        let mut out: Dims = Dims::from_slice(&self.shape()[..self.rank() - 1]);
        out.push(out_f);
        let x_shape = self.shape_dims();
        let mut inputs: [&Tensor; 3] = [self, weight, weight];
        let n_in = match bias {
            Some(b) => {
                inputs[2] = b;
                3
            }
            None => 2,
        };
        Ok(record(storage, out, &inputs[..n_in], "linear", move || {
            backward_fn(move |inp, g| {
                let (x, w) = (&inp[0], &inp[1]);
                let g2 = g.reshape(&[rows, out_f])?;
                let gx = if x.requires_grad() {
                    Some(g2.matmul_t(w, false, false)?.reshape(&x_shape)?)
                } else {
                    None
                };
                let gw = if w.requires_grad() {
                    let x2 = x.reshape(&[rows, in_f])?;
                    Some(g2.matmul_t(&x2, true, false)?)
                } else {
                    None
                };
                let mut grads = vec![gx, gw];
                if let Some(b) = inp.get(2) {
                    grads.push(if b.requires_grad() {
                        Some(g2.sum_axes_keepdim(&[0])?.reshape(&[out_f])?)
                    } else {
                        None
                    });
                }
                Ok(grads)
            })
        }))
    }
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
