//! Matrix products: 2-d, batched, and with broadcast batch dims.
//!
//! For C = A B: dA = dC B^T, dB = A^T dC (summed over broadcast batch dims).
//! The transposes are flags to the backend's GEMM, not copies.

use super::same_device;
use crate::autograd::{backward_fn, record};
use crate::backend::MatmulSpec;
use crate::shape::{broadcast_shapes, checked_numel, numel, strides, Dims};
use crate::{Error, Result, Tensor};

impl Tensor {
    /// Matrix product with PyTorch's `matmul` semantics for rank >= 2 operands
    /// (1-d operands are treated as a row / column vector and the dim is dropped).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        match (self.rank(), rhs.rank()) {
            (1, 1) => self
                .reshape(&[1, self.numel()])?
                .matmul(&rhs.reshape(&[rhs.numel(), 1])?)?
                .reshape(&[]),
            (1, _) => {
                let r = self.reshape(&[1, self.numel()])?.matmul(rhs)?;
                let mut s = r.shape().to_vec();
                s.remove(s.len() - 2);
                r.reshape(&s)
            }
            (_, 1) => {
                let r = self.matmul(&rhs.reshape(&[rhs.numel(), 1])?)?;
                let s = &r.shape()[..r.rank() - 1].to_vec();
                r.reshape(s)
            }
            (0, _) | (_, 0) => Err(Error::mismatch("matmul", self.shape(), rhs.shape())),
            _ => self.matmul_t(rhs, false, false),
        }
    }

    /// `op(self) @ op(rhs)` where `op` transposes the last two dims when its flag is set.
    pub(crate) fn matmul_t(&self, rhs: &Tensor, lhs_t: bool, rhs_t: bool) -> Result<Tensor> {
        same_device("matmul", self, rhs)?;
        let (a, b) = (self.shape(), rhs.shape());
        if a.len() < 2 || b.len() < 2 {
            return Err(Error::mismatch("matmul", a, b));
        }
        let (ra, ca) = (a[a.len() - 2], a[a.len() - 1]);
        let (rb, cb) = (b[b.len() - 2], b[b.len() - 1]);
        let (m, k) = if lhs_t { (ca, ra) } else { (ra, ca) };
        let (k2, n) = if rhs_t { (cb, rb) } else { (rb, cb) };
        if k != k2 {
            return Err(Error::mismatch("matmul", a, b));
        }
        let (ba, bb) = (&a[..a.len() - 2], &b[..b.len() - 2]);
        let batch_shape = broadcast_shapes("matmul", ba, bb)?;
        let mut out: Dims = batch_shape.clone();
        out.push(m);
        out.push(n);
        if checked_numel("matmul", &out).map_err(|_| Error::mismatch("matmul", a, b))? == 0 {
            // Nothing to compute (and the batch index maps below could be huge).
            return Tensor::zeros_dtype(&out, self.dtype()).to_device(&self.device());
        }
        let batch = numel(&batch_shape);
        // One entry per batch, allocated fallibly: the batch count comes from the caller
        // (`[2^40, 1, 0] @ [1, 0, 1]` has 2^40 batches of a 1x1 result).
        let index_map = |src: &[usize]| -> Result<Vec<usize>> {
            let mut map = crate::host::try_with_capacity(batch, "matmul")?;
            if src == batch_shape.as_slice() {
                map.extend(0..batch);
                return Ok(map);
            }
            let st = crate::shape::broadcast_strides(src, &batch_shape);
            let ost = strides(&batch_shape);
            map.extend((0..batch).map(|i| {
                let mut r = 0;
                let mut rem = i;
                for d in 0..batch_shape.len() {
                    let q = rem / ost[d];
                    rem %= ost[d];
                    r += q * st[d];
                }
                r
            }));
            Ok(map)
        };
        let spec = MatmulSpec {
            batch,
            m,
            n,
            k,
            lhs_batch: index_map(ba)?,
            rhs_batch: index_map(bb)?,
            lhs_t,
            rhs_t,
        };
        let storage = self.storage().matmul(rhs.storage().as_ref(), &spec)?;
        let (sa, sb) = (a.to_vec(), b.to_vec());
        Ok(record(storage, out, &[self, rhs], "matmul", move || {
            backward_fn(move |inp, g| {
                let (x, y) = (&inp[0], &inp[1]);
                // C = op(A) op(B). d op(A) = g op(B)^T, d op(B) = op(A)^T g; then undo op.
                let ga = if x.requires_grad() {
                    let d = if lhs_t {
                        y.matmul_t(g, rhs_t, true)?
                    } else {
                        g.matmul_t(y, false, !rhs_t)?
                    };
                    Some(d.sum_to(&sa)?)
                } else {
                    None
                };
                let gb = if y.requires_grad() {
                    let d = if rhs_t {
                        g.matmul_t(x, true, lhs_t)?
                    } else {
                        x.matmul_t(g, !lhs_t, false)?
                    };
                    Some(d.sum_to(&sb)?)
                } else {
                    None
                };
                Ok(vec![ga, gb])
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_grad, fixture_case};
    use crate::{Result, Tensor};

    #[test]
    fn many_small_products_split_over_threads_match_one_at_a_time() -> Result<()> {
        // 70 products of 40 x 72 x 50 (each under the threading size, together over
        // it), one operand broadcast: each output matrix against its own product
        let a = Tensor::randn(&[2, 35, 40, 50]);
        let b = Tensor::randn(&[35, 50, 72]);
        let got = a.matmul(&b)?.to_vec::<f32>()?;
        for i in 0..2usize {
            for j in 0..35usize {
                let one = a.get(i as i64)?.get(j as i64)?;
                let one = one.matmul(&b.get(j as i64)?)?.to_vec::<f32>()?;
                let at = (i * 35 + j) * 40 * 72;
                for (x, y) in got[at..at + 40 * 72].iter().zip(&one) {
                    assert!((x - y).abs() < 1e-4, "{x} vs {y}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn values_2d() -> Result<()> {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
        let b = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
        assert_eq!(a.matmul(&b)?.to_vec::<f32>()?, vec![4.0, 5.0, 10.0, 11.0]);
        Ok(())
    }

    #[test]
    fn hand_derived() -> Result<()> {
        // C = A B with A 1x2, B 2x1: dA = B^T, dB = A^T
        let a = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2])?.with_requires_grad(true);
        let b = Tensor::from_vec(vec![3.0f32, 4.0], &[2, 1])?.with_requires_grad(true);
        a.matmul(&b)?.sum()?.backward()?;
        assert_eq!(
            a.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![3.0, 4.0])
        );
        assert_eq!(
            b.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![1.0, 2.0])
        );
        Ok(())
    }

    #[test]
    fn mismatch_names_shapes() {
        let e = Tensor::zeros(&[2, 3])
            .matmul(&Tensor::zeros(&[4, 5]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("matmul: shape mismatch between [2, 3] and [4, 5]")
        );
    }

    #[test]
    fn grads_finite_difference() -> Result<()> {
        check_grad(&[&[4, 3], &[3, 5]], |x| x[0].matmul(&x[1]))?;
        check_grad(&[&[2, 4, 3], &[2, 3, 5]], |x| x[0].matmul(&x[1]))?;
        check_grad(&[&[2, 4, 3], &[3, 5]], |x| x[0].matmul(&x[1]))?;
        check_grad(&[&[3, 4], &[5, 3]], |x| x[0].matmul_t(&x[1], true, true))?;
        check_grad(&[&[3, 4], &[3, 5]], |x| x[0].matmul_t(&x[1], true, false))?;
        check_grad(&[&[4, 3], &[5, 3]], |x| x[0].matmul_t(&x[1], false, true))?;
        check_grad(&[&[3], &[3, 2]], |x| x[0].matmul(&x[1]))?;
        Ok(())
    }

    /// Naive triple loop reference for `op(a) @ op(b)`.
    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, at: bool, bt: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let x = if at { a[p * m + i] } else { a[i * k + p] };
                    let y = if bt { b[j * k + p] } else { b[p * n + j] };
                    s += x as f64 * y as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn large_and_threaded_products_match_a_naive_loop() -> Result<()> {
        // sizes cross the small-kernel and the threaded thresholds of the CPU backend
        for &(m, n, k) in &[
            (5, 19, 7),
            (1, 33, 3),
            (9, 16, 64),
            (130, 70, 90),
            (300, 200, 100),
            (70, 33, 2000),
            (64, 300, 250),
            (40, 1000, 200),
        ] {
            for (at, bt) in [(false, false), (true, false), (false, true), (true, true)] {
                let sa: &[usize] = if at { &[k, m] } else { &[m, k] };
                let sb: &[usize] = if bt { &[n, k] } else { &[k, n] };
                let (a, b) = (Tensor::randn(sa), Tensor::randn(sb));
                let got = a.matmul_t(&b, at, bt)?.to_vec::<f32>()?;
                let want = naive(&a.to_vec()?, &b.to_vec()?, m, n, k, at, bt);
                let ok = got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| (g - w).abs() <= 1e-3 * (1.0 + w.abs()));
                assert!(ok, "{m}x{n}x{k} at={at} bt={bt}");
                let bias = Tensor::randn(&[n]);
                if !at && bt {
                    let fused = a.linear(&b, Some(&bias))?.to_vec::<f32>()?;
                    let bv = bias.to_vec::<f32>()?;
                    let ok = fused.iter().enumerate().all(|(i, f)| {
                        let w = want[i] + bv[i % n];
                        (f - w).abs() <= 1e-3 * (1.0 + w.abs())
                    });
                    assert!(ok, "linear {m}x{n}x{k}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn against_pytorch() -> Result<()> {
        fixture_case("matmul_2d", |x| x[0].matmul(&x[1]))?;
        fixture_case("matmul_batched", |x| x[0].matmul(&x[1]))?;
        fixture_case("matmul_broadcast_batch", |x| x[0].matmul(&x[1]))?;
        Ok(())
    }
}
