//! The window gathers of [`CudaStorage`]: im2col and col2im, one kernel each.

use super::{check_len, CudaStorage};
use crate::error::Result;
use crate::kernels::conv;
use crate::layout::Im2ColLayout;
use nn_core::backend::{Im2ColSpec, Storage};

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
}
