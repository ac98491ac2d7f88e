//! Activation ops beyond the backend's primitives: `erf` (a primitive), and the
//! composites `gelu` (exact and tanh form), `silu`, `leaky_relu`.
//!
//! Derivatives: erf'(x) = 2/sqrt(pi) e^(-x^2) (recorded by `erf`); the composites are
//! written with primitives and need no backward of their own:
//! gelu(x) = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, gelu' = Phi(x) + x phi(x);
//! gelu_tanh(x) = x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2;
//! silu(x) = x sigmoid(x), silu' = s (1 + x (1 - s));
//! leaky_relu(x) = x for x > 0, slope x otherwise, derivative 1 or slope.
//! NOTE: leaky_relu is a `where` on `x > 0`, not `maximum(x, slope x)`: the maximum
//! breaks for slopes above 1 and sends the gradient at exactly 0 to `x` (PyTorch's is
//! `slope` there).

use crate::backend::UnaryOp;
use crate::{Result, Tensor};

impl Tensor {
    /// The error function elementwise (f32).
    pub fn erf(&self) -> Result<Tensor> {
        self.unary_op(UnaryOp::Erf, "erf")
    }

    /// GELU, exact form `x Phi(x)` with the standard normal CDF (PyTorch's
    /// `F.gelu(x)`, `approximate='none'`).
    pub fn gelu(&self) -> Result<Tensor> {
        let phi = self
            .mul_scalar(std::f32::consts::FRAC_1_SQRT_2)?
            .erf()?
            .affine(0.5, 0.5)?;
        self.mul(&phi)
    }

    /// GELU, tanh approximation (PyTorch's `F.gelu(x, approximate='tanh')`).
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        // sqrt(2 / pi)
        const K: f32 = 0.797_884_6;
        let inner = self.add(&self.powf(3.0)?.mul_scalar(0.044_715)?)?;
        let t = inner.mul_scalar(K)?.tanh()?.affine(0.5, 0.5)?;
        self.mul(&t)
    }

    /// SiLU (swish): `x sigmoid(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        self.mul(&self.sigmoid()?)
    }

    /// Leaky ReLU: `x` where `x > 0`, `slope x` elsewhere (PyTorch's default slope is
    /// 0.01).
    pub fn leaky_relu(&self, slope: f32) -> Result<Tensor> {
        Tensor::where_cond(&self.gt_scalar(0.0)?, self, &self.mul_scalar(slope)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_grad;
    use crate::{Result, Tensor};

    #[test]
    fn grads_finite_difference() -> Result<()> {
        let s: &[usize] = &[3, 4];
        check_grad(&[s], |x| x[0].erf())?;
        check_grad(&[s], |x| x[0].gelu())?;
        check_grad(&[s], |x| x[0].gelu_tanh())?;
        check_grad(&[s], |x| x[0].silu())?;
        check_grad(&[s], |x| x[0].leaky_relu(0.1))?;
        check_grad(&[s], |x| x[0].leaky_relu(2.5))?;
        Ok(())
    }

    #[test]
    fn erf_known_values() -> Result<()> {
        // erf(0) = 0, erf(1) = 0.8427007929, erf(-2) = -0.9953222650, erf(0.5) = 0.5204998778
        let x = Tensor::from_vec(vec![0.0f32, 1.0, -2.0, 0.5, 6.0], &[5])?;
        let want = [0.0f32, 0.842_700_8, -0.995_322_3, 0.520_499_9, 1.0];
        for (g, w) in x.erf()?.to_vec::<f32>()?.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        Ok(())
    }

    #[test]
    fn hand_derived() -> Result<()> {
        // gelu'(0) = Phi(0) + 0 = 1/2; silu'(0) = s(0) = 1/2; leaky'(0) = slope (PyTorch)
        let x = Tensor::zeros(&[1]).with_requires_grad(true);
        let grad = |y: Tensor| -> Result<f32> {
            x.zero_grad();
            y.sum()?.backward()?;
            x.grad().map(|g| g.item()).unwrap_or(Ok(f32::NAN))
        };
        assert!((grad(x.gelu()?)? - 0.5).abs() < 1e-6);
        assert!((grad(x.gelu_tanh()?)? - 0.5).abs() < 1e-6);
        assert!((grad(x.silu()?)? - 0.5).abs() < 1e-6);
        assert!((grad(x.leaky_relu(0.2)?)? - 0.2).abs() < 1e-6);
        // erf'(1) = 2/sqrt(pi) e^-1 = 0.4151074974
        let one = Tensor::ones(&[1]).with_requires_grad(true);
        one.erf()?.sum()?.backward()?;
        let g = one.grad().map(|g| g.item()).unwrap_or(Ok(f32::NAN))?;
        assert!((g - 0.415_107_5).abs() < 1e-6, "{g}");
        Ok(())
    }
}
