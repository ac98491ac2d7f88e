//! The fused backend primitives of [`CudaStorage`]: the window gathers im2col and
//! col2im, ReLU's backward (alone and with column sums), the softmax cross-entropy
//! (forward and backward) and the biased matrix product.

use super::{check_len, CudaStorage};
use crate::error::Result;
use crate::kernels::elementwise as ew;
use crate::kernels::{conv, loss, matmul, reduce};
use crate::layout::Im2ColLayout;
use crate::layout::RedLayout;
use nn_core::backend::{BackendStorage, Im2ColSpec, MatmulSpec, Storage};
use nn_core::backend::{ReduceOp, UnaryOp};

impl CudaStorage {
    pub(super) fn im2col_(&self, spec: &Im2ColSpec) -> Result<Storage> {
        let (g, image, cols) = Im2ColLayout::new("im2col", spec)?;
        check_len("im2col", &[image], self.len)?;
        let y = conv::im2col_f32(&self.rt, &g, spec.pad_value, self.f32s("im2col")?, cols)?;
        self.wrap(super::Buf::F32(y), cols)
    }

    pub(super) fn col2im_(&self, spec: &Im2ColSpec) -> Result<Storage> {
        let (g, image, cols) = Im2ColLayout::new("col2im", spec)?;
        check_len("col2im", &[cols], self.len)?;
        let y = conv::col2im_f32(&self.rt, &g, self.f32s("col2im")?, image)?;
        self.wrap(super::Buf::F32(y), image)
    }

    pub(super) fn relu_backward_(&self, grad: &dyn BackendStorage) -> Result<Storage> {
        let g = self.other("relu_backward", grad)?;
        check_len("relu_backward", &[g.len], self.len)?;
        let x = self.f32s("relu_backward")?;
        let y = ew::relu_backward_f32(&self.rt, x, g.f32s("relu_backward")?, self.len)?;
        self.wrap(super::Buf::F32(y), self.len)
    }

    pub(super) fn cross_entropy_(
        &self,
        targets: &dyn BackendStorage,
        rows: usize,
        classes: usize,
    ) -> Result<(Storage, Storage)> {
        const OP: &str = "cross_entropy";
        let t = self.other(OP, targets)?;
        check_len(OP, &[rows, classes], self.len)?;
        check_len(OP, &[rows], t.len)?;
        let (probs, row_loss) =
            loss::softmax_xent_f32(&self.rt, self.f32s(OP)?, t.i64s(OP)?, rows, classes)?;
        // the mean over rows: the reduction kernel's sum, then one scale
        let l = RedLayout::new(OP, &[rows], &[0])?;
        let s = reduce::RedSizes {
            n_out: 1,
            n_red: rows,
        };
        let total = reduce::reduce(&self.rt, ReduceOp::Sum, &l, s, &row_loss)?;
        let scale = UnaryOp::Affine {
            mul: 1.0 / rows.max(1) as f32,
            add: 0.0,
        };
        let mean = ew::unary_f32(&self.rt, scale, &total, 1)?;
        Ok((
            self.wrap(super::Buf::F32(mean), 1)?,
            self.wrap(
                super::Buf::F32(probs),
                nn_core::shape::checked_numel(OP, &[rows, classes])?,
            )?,
        ))
    }

    pub(super) fn cross_entropy_backward_(
        &self,
        targets: &dyn BackendStorage,
        grad: &dyn BackendStorage,
        rows: usize,
        classes: usize,
    ) -> Result<Storage> {
        const OP: &str = "cross_entropy";
        let (t, g) = (self.other(OP, targets)?, self.other(OP, grad)?);
        check_len(OP, &[rows, classes], self.len)?;
        check_len(OP, &[rows], t.len)?;
        check_len(OP, &[], g.len)?;
        let y = loss::xent_backward_f32(
            &self.rt,
            self.f32s(OP)?,
            t.i64s(OP)?,
            g.f32s(OP)?,
            rows,
            classes,
        )?;
        let n = nn_core::shape::checked_numel(OP, &[rows, classes])?;
        self.wrap(super::Buf::F32(y), n)
    }

    pub(super) fn matmul_bias_(
        &self,
        rhs: &dyn BackendStorage,
        spec: &MatmulSpec,
        bias: &dyn BackendStorage,
    ) -> Result<Storage> {
        const OP: &str = "matmul_bias";
        let (b, r) = (self.other(OP, bias)?, self.other(OP, rhs)?);
        check_len(OP, &[spec.n], b.len)?;
        let y = matmul::matmul_f32(
            &self.rt,
            self.f32s(OP)?,
            r.f32s(OP)?,
            spec,
            Some(b.f32s(OP)?),
        )?;
        let n = nn_core::shape::checked_numel(OP, &[spec.batch, spec.m, spec.n])?;
        self.wrap(super::Buf::F32(y), n)
    }

    pub(super) fn relu_backward_colsum_(
        &self,
        grad: &dyn BackendStorage,
        rows: usize,
        cols: usize,
    ) -> Result<(Storage, Storage)> {
        const OP: &str = "relu_backward";
        let g = self.other(OP, grad)?;
        check_len(OP, &[g.len], self.len)?;
        check_len(OP, &[rows, cols], self.len)?;
        let (y, sums) =
            ew::relu_backward_colsum_f32(&self.rt, self.f32s(OP)?, g.f32s(OP)?, rows, cols)?;
        Ok((
            self.wrap(super::Buf::F32(y), self.len)?,
            self.wrap(super::Buf::F32(sums), cols)?,
        ))
    }
}
