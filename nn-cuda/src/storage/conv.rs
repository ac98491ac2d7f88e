//! The fused backend primitives of [`CudaStorage`]: the window gathers im2col and
//! col2im, and ReLU's backward, one kernel each.

use super::{check_len, CudaStorage};
use crate::error::Result;
use crate::kernels::conv;
use crate::kernels::elementwise as ew;
use crate::layout::Im2ColLayout;
use nn_core::backend::{BackendStorage, Im2ColSpec, Storage};

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
}
