//! Masks: comparisons returning `Bool`, and `logical_not` / `and` / `or` / `xor`.
//!
//! None is differentiable (a mask has no gradient), so none records a node. A backend
//! that stores bools (the CPU) returns `Bool` masks; one that does not yet returns the
//! i64 0/1 mask of its comparisons, which every mask consumer (`where_cond`,
//! `masked_fill`, attention masks, these ops) accepts with the same meaning.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{DType, Tensor};
//! let x = Tensor::from_vec(vec![-1.0f32, 0.5, 2.0], &[3])?;
//! let inside = x.gt_scalar(0.0)?.logical_and(&x.lt_scalar(1.0)?)?;
//! assert_eq!(inside.dtype(), DType::Bool);
//! assert_eq!(inside.to_vec::<bool>()?, vec![false, true, false]);
//! assert_eq!((!&inside)?.to_vec::<bool>()?, vec![true, false, true]);
//! # Ok::<(), nn::Error>(())
//! ```

use super::same_device;
use crate::backend::BinaryOp;
use crate::shape::broadcast_shapes;
use crate::{DType, Result, Tensor};

impl Tensor {
    /// The comparison `op` of `self` and `rhs` (broadcast) as a mask, PyTorch's
    /// `torch.eq` ... `torch.ge`: `Bool` (an i64 0/1 mask on a backend without bool
    /// storage). Integer and bool operands compare as i64, mixed or float ones as f32.
    pub(crate) fn compare_op(
        &self,
        rhs: &Tensor,
        op: BinaryOp,
        name: &'static str,
    ) -> Result<Tensor> {
        same_device(name, self, rhs)?;
        let (da, db) = (self.dtype(), rhs.dtype());
        let common = if da == db && da.is_compute() {
            da
        } else if !da.is_float() && !db.is_float() {
            DType::I64
        } else {
            DType::F32
        };
        let (a, b) = (self.to_dtype(common)?, rhs.to_dtype(common)?);
        let out = broadcast_shapes(name, a.shape(), b.shape())?;
        let storage = a
            .storage()
            .compare(op, a.shape(), b.storage().as_ref(), b.shape(), &out)?;
        Ok(Tensor::leaf(storage, out))
    }

    /// Whether each element is nonzero, as a mask (`self` itself when it is one).
    fn truth(&self) -> Result<Tensor> {
        match self.dtype() {
            DType::Bool => Ok(self.clone()),
            _ => self.ne_scalar(0.0),
        }
    }

    /// Each element's truth as an i64 0/1 tensor.
    fn truth01(&self) -> Result<Tensor> {
        self.truth()?.to_dtype(DType::I64)
    }

    /// `!self` elementwise: true where `self` is zero (PyTorch's `logical_not`; `self`
    /// may be a mask or numbers).
    pub fn logical_not(&self) -> Result<Tensor> {
        self.truth01()?.eq_scalar(0.0)
    }

    /// `self && rhs` elementwise, with broadcasting (PyTorch's `logical_and`).
    pub fn logical_and(&self, rhs: &Tensor) -> Result<Tensor> {
        same_device("logical_and", self, rhs)?;
        self.truth01()?.mul(&rhs.truth01()?)?.ne_scalar(0.0)
    }

    /// `self || rhs` elementwise, with broadcasting (PyTorch's `logical_or`).
    pub fn logical_or(&self, rhs: &Tensor) -> Result<Tensor> {
        same_device("logical_or", self, rhs)?;
        self.truth01()?.add(&rhs.truth01()?)?.ne_scalar(0.0)
    }

    /// `self != rhs` as truths, elementwise, with broadcasting (PyTorch's `logical_xor`).
    pub fn logical_xor(&self, rhs: &Tensor) -> Result<Tensor> {
        same_device("logical_xor", self, rhs)?;
        self.truth01()?.ne(&rhs.truth01()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, HostData, Result, Tensor};

    fn bools(v: &[u8], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_host(HostData::Bool(v.to_vec()), shape)
    }

    #[test]
    fn comparisons_of_every_kind_give_bool() -> Result<()> {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
        let b = Tensor::from_vec(vec![2.0f32], &[1])?;
        type Cmp = fn(&Tensor, &Tensor) -> Result<Tensor>;
        let cases: [(Cmp, [bool; 3]); 6] = [
            (|a, b| a.eq(b), [false, true, false]),
            (|a, b| a.ne(b), [true, false, true]),
            (|a, b| a.lt(b), [true, false, false]),
            (|a, b| a.le(b), [true, true, false]),
            (|a, b| a.gt(b), [false, false, true]),
            (|a, b| a.ge(b), [false, true, true]),
        ];
        for (f, want) in cases {
            let m = f(&a, &b)?;
            assert_eq!(m.dtype(), DType::Bool);
            assert_eq!(m.to_vec::<bool>()?, want);
            // i64, and bool against bool, compare the same way
            let i = f(&a.to_dtype(DType::I64)?, &b.to_dtype(DType::I64)?)?;
            assert_eq!(i.to_vec::<bool>()?, want);
        }
        assert_eq!(a.ne_scalar(2.0)?.to_vec::<bool>()?, [true, false, true]);
        assert_eq!(a.le_scalar(2.0)?.to_vec::<bool>()?, [true, true, false]);
        let m = bools(&[1, 0], &[2])?;
        assert_eq!(
            m.eq(&bools(&[1, 1], &[2])?)?.to_vec::<bool>()?,
            [true, false]
        );
        // NaN is unequal to everything, itself included
        let n = Tensor::from_vec(vec![f32::NAN], &[1])?;
        assert_eq!(n.eq(&n)?.to_vec::<bool>()?, [false]);
        assert_eq!(n.ne(&n)?.to_vec::<bool>()?, [true]);
        assert!(a.lt(&Tensor::zeros(&[2])).is_err());
        Ok(())
    }

    #[test]
    fn logical_ops_broadcast_like_pytorch() -> Result<()> {
        // torch.logical_and(tensor([[T], [F]]), tensor([T, F])) = [[T, F], [F, F]]
        let a = bools(&[1, 0], &[2, 1])?;
        let b = bools(&[1, 0], &[2])?;
        let v = |t: Tensor| t.to_vec::<bool>();
        assert_eq!(v(a.logical_and(&b)?)?, [true, false, false, false]);
        assert_eq!(v(a.logical_or(&b)?)?, [true, true, true, false]);
        assert_eq!(v(a.logical_xor(&b)?)?, [false, true, true, false]);
        assert_eq!(v(a.logical_not()?)?, [false, true]);
        // numbers: nonzero is true (torch.logical_not(tensor([0., -2.])) = [T, F])
        let x = Tensor::from_vec(vec![0.0f32, -2.0], &[2])?;
        assert_eq!(v(x.logical_not()?)?, [true, false]);
        assert_eq!(v(x.logical_or(&Tensor::arange(0, 2))?)?, [false, true]);
        // operators
        assert_eq!(v((&a & &b)?)?, [true, false, false, false]);
        assert_eq!(v((&a | &b)?)?, [true, true, true, false]);
        assert_eq!(v((&a ^ &b)?)?, [false, true, true, false]);
        assert_eq!(v((!&b)?)?, [false, true]);
        assert_eq!(v((!b.clone())?)?, [false, true]);
        assert!(a
            .logical_and(&bools(&[1, 0, 1, 0, 1, 0], &[3, 2])?)
            .is_err());
        Ok(())
    }

    #[test]
    fn bool_masks_save_and_load_as_bool() -> Result<()> {
        use crate::io::{safetensors_from_bytes, safetensors_to_bytes};
        use crate::io::{state_dict_from_bytes, torch_to_bytes};
        let m = Tensor::from_vec(vec![1.0f32, -1.0, 2.0, 0.0], &[2, 2])?.gt_scalar(0.0)?;
        let mut sd = crate::StateDict::new();
        sd.insert("mask", m.clone());
        // safetensors BOOL and .pt torch.bool
        let st = safetensors_from_bytes(&safetensors_to_bytes(&sd)?)?;
        let pt = state_dict_from_bytes(&torch_to_bytes(&sd)?)?;
        for back in [st, pt] {
            let t = back.get("mask").ok_or(crate::Error::MissingKey {
                container: "reloaded".into(),
                key: "mask".into(),
            })?;
            assert_eq!(t.dtype(), DType::Bool);
            assert_eq!(t.to_vec::<bool>()?, m.to_vec::<bool>()?);
        }
        Ok(())
    }

    #[test]
    fn where_and_masked_fill_take_every_mask_dtype() -> Result<()> {
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
        let want = vec![9.0, 2.0, 9.0, 4.0];
        let masks = [
            bools(&[1, 0], &[2])?,
            Tensor::from_host(HostData::U8(vec![7, 0]), &[2])?,
            Tensor::from_vec(vec![-1i64, 0], &[2])?,
            Tensor::from_vec(vec![0.5f32, 0.0], &[2])?,
        ];
        for m in &masks {
            assert_eq!(
                x.masked_fill(m, 9.0)?.to_vec::<f32>()?,
                want,
                "{:?}",
                m.dtype()
            );
            let w = Tensor::where_cond(m, &Tensor::full(&[], 9.0), &x)?;
            assert_eq!(w.to_vec::<f32>()?, want);
        }
        Ok(())
    }

    #[test]
    fn bool_masks_print_as_pytorch() -> Result<()> {
        assert_eq!(bools(&[1, 0], &[2])?.to_string(), "tensor([True, False])");
        assert_eq!(
            Tensor::from_vec(vec![true, false], &[1, 2])?.to_string(),
            "tensor([[True, False]])"
        );
        Ok(())
    }
}
