//! The in-place entry points of [`CudaStorage`]: the optimizers' fused updates (one
//! kernel per parameter, no host round trip) and element writes from host data.

use super::{dtype_err, Buf, CudaStorage};
use crate::error::{Error, Result};
use crate::kernels::optim;
use crate::runtime::{DevBuf, Driver};
use nn_core::backend::{AdamStep, BackendStorage, SgdStep};
use nn_core::{DType, HostData};
use std::sync::Arc;

impl CudaStorage {
    /// Another operand updated in place: CUDA storage on this same device, f32, of
    /// this storage's length.
    fn other_f32_mut<'a>(
        &self,
        op: &'static str,
        s: &'a mut dyn BackendStorage,
    ) -> Result<&'a mut DevBuf<f32>> {
        let rhs = s.device().to_string();
        let lhs = self.dev.name();
        let len = self.len;
        match s.as_any_mut().downcast_mut::<CudaStorage>() {
            Some(c) if Arc::ptr_eq(&c.rt, &self.rt) => {
                if c.len != len {
                    return Err(Error::Core(nn_core::Error::mismatch(op, &[len], &[c.len])));
                }
                match &mut c.buf {
                    Buf::F32(x) => Ok(x),
                    Buf::I64(_) => Err(dtype_err(op, DType::I64, DType::F32)),
                }
            }
            _ => Err(Error::Core(nn_core::Error::DeviceMismatch { op, lhs, rhs })),
        }
    }

    /// The gradient operand of a fused update: f32, this length, this device.
    fn grad_of<'a>(&self, op: &'static str, g: &'a dyn BackendStorage) -> Result<&'a DevBuf<f32>> {
        let g = self.other(op, g)?;
        if g.len != self.len {
            return Err(Error::Core(nn_core::Error::mismatch(
                op,
                &[self.len],
                &[g.len],
            )));
        }
        g.f32s(op)
    }

    pub(super) fn sgd_step_(
        &mut self,
        grad: &dyn BackendStorage,
        buf: Option<&mut dyn BackendStorage>,
        step: &SgdStep,
    ) -> Result<()> {
        let g = self.grad_of("sgd_step", grad)?;
        let buf = match buf {
            Some(b) => Some(self.other_f32_mut("sgd_step", b)?),
            None => None,
        };
        let (rt, n) = (self.rt.clone(), self.len);
        let p = match &mut self.buf {
            Buf::F32(x) => x,
            Buf::I64(_) => return Err(dtype_err("sgd_step", DType::I64, DType::F32)),
        };
        optim::sgd_step_f32(&rt, step, p, g, buf, n)
    }

    pub(super) fn adam_step_(
        &mut self,
        grad: &dyn BackendStorage,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        step: &AdamStep,
    ) -> Result<()> {
        let g = self.grad_of("adam_step", grad)?;
        let m = self.other_f32_mut("adam_step", m)?;
        let v = self.other_f32_mut("adam_step", v)?;
        let (rt, n) = (self.rt.clone(), self.len);
        let p = match &mut self.buf {
            Buf::F32(x) => x,
            Buf::I64(_) => return Err(dtype_err("adam_step", DType::I64, DType::F32)),
        };
        optim::adam_step_f32(&rt, step, p, g, m, v, n)
    }

    pub(super) fn write_at_(&mut self, offset: usize, src: &HostData) -> Result<()> {
        let end = offset.checked_add(src.len()).filter(|&e| e <= self.len);
        let Some(end) = end else {
            return Err(Error::Core(nn_core::Error::IndexOutOfRange {
                op: "write_at",
                index: i64::try_from(offset.saturating_add(src.len())).unwrap_or(i64::MAX),
                size: self.len,
            }));
        };
        if offset == end {
            return Ok(());
        }
        let rt = self.rt.clone();
        match (&mut self.buf, src) {
            (Buf::F32(d), HostData::F32(s)) => rt.write(d, offset, s)?,
            (Buf::I64(d), HostData::I64(s)) => rt.write(d, offset, s)?,
            (_, s) => return Err(dtype_err("write_at", s.dtype(), self.dtype_())),
        }
        Ok(())
    }
}
