//! `CudaStorage`: one tensor's contiguous row-major buffer on a GPU, and nn-core's
//! backend ops on it, each a kernel launch (or a cuBLAS call) on the device's stream.

use crate::error::{Error, Result};
use crate::kernels::copy::{self, AxisSplit};
use crate::kernels::reduce::RedSizes;
use crate::kernels::{elementwise as ew, matmul, reduce};
use crate::layout::{self, Layout3, RedLayout};
use crate::runtime::{DevBuf, Driver, Runtime};
use nn_core::backend::{
    AdamStep, BackendStorage, BinaryOp, DeviceBackend, Im2ColSpec, MatmulSpec, ReduceOp, SgdStep,
    Storage, UnaryOp,
};
use nn_core::shape::numel;
use nn_core::{DType, Device, HostData};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A device buffer of one dtype (allocated with at least one element; the storage's
/// `len` is the logical length).
pub(crate) enum Buf {
    /// f32 elements.
    F32(DevBuf<f32>),
    /// i64 elements.
    I64(DevBuf<i64>),
}

/// The storage of one tensor on a CUDA device: its buffer, the device it lives on, and
/// that device's runtime, which every op on it launches through.
pub struct CudaStorage {
    buf: Buf,
    len: usize,
    dev: Arc<dyn DeviceBackend>,
    rt: Arc<Runtime>,
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CudaStorage({} x {} on {})",
            self.len,
            self.dtype_(),
            self.dev.name()
        )
    }
}

fn dtype_err(op: &'static str, dtype: DType, expected: DType) -> Error {
    Error::Core(nn_core::Error::DType {
        op,
        dtype,
        expected: Some(expected),
    })
}

/// Fails unless `shape` describes exactly `len` elements (kernels trust shapes for bounds).
fn check_len(op: &'static str, shape: &[usize], len: usize) -> Result<()> {
    if numel(shape) != len {
        return Err(Error::Core(nn_core::Error::bad_shape(
            op,
            shape,
            format!("storage holds {len} elements"),
        )));
    }
    Ok(())
}

/// `(outer, inner)` around `axis`: `(0, 0)` beside a zero dim, whose neighbours may be
/// anything (see [`nn_core::shape::outer_inner`]).
fn axis_split(shape: &[usize], axis: usize) -> (usize, usize) {
    nn_core::shape::outer_inner(shape, axis)
}

mod fused;
mod inplace;

impl CudaStorage {
    pub(crate) fn new(buf: Buf, len: usize, dev: Arc<dyn DeviceBackend>, rt: Arc<Runtime>) -> Self {
        CudaStorage { buf, len, dev, rt }
    }

    fn dtype_(&self) -> DType {
        match self.buf {
            Buf::F32(_) => DType::F32,
            Buf::I64(_) => DType::I64,
        }
    }

    fn core<T>(&self, r: Result<T>) -> nn_core::Result<T> {
        r.map_err(|e| e.into_core(&self.dev.name()))
    }

    fn wrap(&self, buf: Buf, len: usize) -> Result<Storage> {
        Ok(Arc::new(CudaStorage::new(
            buf,
            len,
            self.dev.clone(),
            self.rt.clone(),
        )))
    }

    /// Another operand as CUDA storage on this same device, or a device-mismatch error.
    fn other<'a>(&self, op: &'static str, s: &'a dyn BackendStorage) -> Result<&'a CudaStorage> {
        match s.as_any().downcast_ref::<CudaStorage>() {
            Some(c) if Arc::ptr_eq(&c.rt, &self.rt) => Ok(c),
            _ => Err(Error::Core(nn_core::Error::DeviceMismatch {
                op,
                lhs: self.dev.name(),
                rhs: s.device().to_string(),
            })),
        }
    }

    pub(crate) fn f32s(&self, op: &'static str) -> Result<&DevBuf<f32>> {
        match &self.buf {
            Buf::F32(x) => Ok(x),
            Buf::I64(_) => Err(dtype_err(op, DType::I64, DType::F32)),
        }
    }

    pub(crate) fn i64s(&self, op: &'static str) -> Result<&DevBuf<i64>> {
        match &self.buf {
            Buf::I64(x) => Ok(x),
            Buf::F32(_) => Err(dtype_err(op, DType::F32, DType::I64)),
        }
    }

    fn to_host_(&self) -> Result<HostData> {
        Ok(match &self.buf {
            Buf::F32(x) => HostData::F32(self.rt.dtoh(x, self.len)?),
            Buf::I64(x) => HostData::I64(self.rt.dtoh(x, self.len)?),
        })
    }

    /// Checks `indices` against `size` on the device (negative ones count from the end,
    /// as on the CPU) and returns a device copy with every index in `[0, size)`; only the
    /// check's verdict comes back to the host (the indices themselves only on an error).
    fn checked_indices(
        &self,
        op: &'static str,
        indices: &dyn BackendStorage,
        size: usize,
    ) -> Result<(DevBuf<i64>, usize)> {
        let idx = self.other(op, indices)?;
        let (fixed, bad) = copy::check_indices(&self.rt, idx.i64s(op)?, idx.len, size)?;
        if let Some(pos) = bad {
            let index = self
                .rt
                .dtoh(idx.i64s(op)?, idx.len)?
                .get(pos)
                .copied()
                .unwrap_or(-1);
            return Err(Error::Core(nn_core::Error::IndexOutOfRange {
                op,
                index,
                size,
            }));
        }
        Ok((fixed, idx.len))
    }

    fn unary_(&self, op: UnaryOp) -> Result<Storage> {
        let y = ew::unary_f32(&self.rt, op, self.f32s("unary")?, self.len)?;
        self.wrap(Buf::F32(y), self.len)
    }

    fn binary_(
        &self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs: &dyn BackendStorage,
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        let rhs = self.other("binary", rhs)?;
        check_len("binary", lhs_shape, self.len)?;
        check_len("binary", rhs_shape, rhs.len)?;
        let n = numel(out_shape);
        let l = Layout3::broadcast("binary", out_shape, &[lhs_shape, rhs_shape])?;
        let buf = match (&self.buf, &rhs.buf) {
            (Buf::F32(a), Buf::F32(b)) if op.is_comparison() => {
                Buf::I64(ew::cmp_f32(&self.rt, op, &l, a, b, n)?)
            }
            (Buf::F32(a), Buf::F32(b)) => Buf::F32(ew::binary_f32(&self.rt, op, &l, a, b, n)?),
            (Buf::I64(a), Buf::I64(b)) => Buf::I64(ew::binary_i64(&self.rt, op, &l, a, b, n)?),
            _ => return Err(dtype_err("binary", rhs.dtype_(), self.dtype_())),
        };
        self.wrap(buf, n)
    }

    #[allow(clippy::too_many_arguments)]
    fn where_(
        &self,
        cond_shape: &[usize],
        a: &dyn BackendStorage,
        a_shape: &[usize],
        b: &dyn BackendStorage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        let cond = self.i64s("where")?;
        let (a, b) = (self.other("where", a)?, self.other("where", b)?);
        check_len("where", cond_shape, self.len)?;
        check_len("where", a_shape, a.len)?;
        check_len("where", b_shape, b.len)?;
        let n = numel(out_shape);
        let l = Layout3::broadcast("where", out_shape, &[cond_shape, a_shape, b_shape])?;
        let buf = match (&a.buf, &b.buf) {
            (Buf::F32(x), Buf::F32(y)) => Buf::F32(ew::where_(&self.rt, &l, cond, x, y, n)?),
            (Buf::I64(x), Buf::I64(y)) => Buf::I64(ew::where_(&self.rt, &l, cond, x, y, n)?),
            _ => return Err(dtype_err("where", b.dtype_(), a.dtype_())),
        };
        self.wrap(buf, n)
    }

    fn matmul_(&self, rhs: &dyn BackendStorage, spec: &MatmulSpec) -> Result<Storage> {
        let a = self.f32s("matmul")?;
        let b = self.other("matmul", rhs)?.f32s("matmul")?;
        let y = matmul::matmul_f32(&self.rt, a, b, spec, None)?;
        let n = nn_core::shape::checked_numel("matmul", &[spec.batch, spec.m, spec.n])?;
        self.wrap(Buf::F32(y), n)
    }

    fn reduce_(&self, op: ReduceOp, shape: &[usize], axes: &[usize]) -> Result<Storage> {
        check_len("reduce", shape, self.len)?;
        let axes: Vec<usize> = match op {
            ReduceOp::ArgMax => vec![axes.first().copied().unwrap_or(0)],
            _ => axes.to_vec(),
        };
        let l = RedLayout::new("reduce", shape, &axes)?;
        // checked: beside a zero dim the others may be anything (`[0, MAX, MAX]`)
        let red_dims: Vec<usize> = axes.iter().filter_map(|&a| shape.get(a).copied()).collect();
        let out_dims: Vec<usize> = (0..shape.len())
            .filter(|i| !axes.contains(i))
            .map(|i| shape[i])
            .collect();
        let n_red = nn_core::shape::checked_numel("reduce", &red_dims)?;
        let n_out = nn_core::shape::checked_numel("reduce", &out_dims)?;
        let s = RedSizes { n_out, n_red };
        let buf = match (&self.buf, op) {
            (Buf::F32(x), ReduceOp::ArgMax) => Buf::I64(reduce::argmax_f32(&self.rt, &l, s, x)?),
            (Buf::I64(x), ReduceOp::ArgMax) => {
                let xf = ew::cast_i64_f32(&self.rt, x, self.len)?;
                Buf::I64(reduce::argmax_f32(&self.rt, &l, s, &xf)?)
            }
            (Buf::F32(x), op) => Buf::F32(reduce::reduce(&self.rt, op, &l, s, x)?),
            (Buf::I64(x), op) => Buf::I64(reduce::reduce(&self.rt, op, &l, s, x)?),
        };
        self.wrap(buf, n_out)
    }

    /// A fresh buffer of `n` elements of this storage's dtype (contents unspecified).
    fn alloc_like(&self, n: usize) -> Result<Buf> {
        Ok(match self.buf {
            Buf::F32(_) => Buf::F32(self.rt.alloc(n, false)?),
            Buf::I64(_) => Buf::I64(self.rt.alloc(n, false)?),
        })
    }

    /// Copies the `n` indices of `l` from `self` (from element `src_off` on) into `dst`
    /// (from element `dst_off` on): operand 0 strides address the source, 1 the target.
    fn copy_into(
        &self,
        l: &Layout3,
        src_off: usize,
        dst: &mut Buf,
        dst_off: usize,
        n: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        match (&self.buf, dst) {
            (Buf::F32(x), Buf::F32(y)) => copy::copy(&self.rt, l, (x, src_off), (y, dst_off), n),
            (Buf::I64(x), Buf::I64(y)) => copy::copy(&self.rt, l, (x, src_off), (y, dst_off), n),
            (_, y) => {
                let d = match y {
                    Buf::F32(_) => DType::F32,
                    Buf::I64(_) => DType::I64,
                };
                Err(dtype_err("copy", self.dtype_(), d))
            }
        }
    }

    fn permute_(&self, shape: &[usize], perm: &[usize]) -> Result<Storage> {
        check_len("permute", shape, self.len)?;
        if perm.len() != shape.len() || perm.iter().any(|&p| p >= shape.len()) {
            return Err(Error::Core(nn_core::Error::bad_shape(
                "permute",
                shape,
                format!("invalid permutation {perm:?}"),
            )));
        }
        let l = layout::permute(shape, perm)?;
        let mut y = self.alloc_like(self.len)?;
        self.copy_into(&l, 0, &mut y, 0, self.len)?;
        self.wrap(y, self.len)
    }

    fn narrow_(&self, shape: &[usize], axis: usize, start: usize, len: usize) -> Result<Storage> {
        check_len("narrow", shape, self.len)?;
        if axis >= shape.len() || start.checked_add(len).is_none_or(|e| e > shape[axis]) {
            return Err(Error::Core(nn_core::Error::bad_shape(
                "narrow",
                shape,
                format!("range {start}..+{len} on axis {axis} out of bounds"),
            )));
        }
        let (l, src_off, out) = layout::narrow(shape, axis, start, len)?;
        let n = numel(&out);
        let mut y = self.alloc_like(n)?;
        self.copy_into(&l, src_off, &mut y, 0, n)?;
        self.wrap(y, n)
    }

    fn cat_(
        &self,
        shape: &[usize],
        others: &[(&dyn BackendStorage, &[usize])],
        axis: usize,
    ) -> Result<Storage> {
        check_len("cat", shape, self.len)?;
        if axis >= shape.len() {
            return Err(Error::Core(nn_core::Error::bad_shape(
                "cat",
                shape,
                format!("axis {axis} out of range"),
            )));
        }
        let mut parts: Vec<(&CudaStorage, &[usize])> = vec![(self, shape)];
        let mut out = shape.to_vec();
        for (s, sh) in others {
            let c = self.other("cat", *s)?;
            if c.dtype_() != self.dtype_() {
                return Err(dtype_err("cat", c.dtype_(), self.dtype_()));
            }
            check_len("cat", sh, c.len)?;
            let fits = sh.len() == shape.len()
                && sh
                    .iter()
                    .zip(shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !fits {
                return Err(Error::Core(nn_core::Error::mismatch("cat", shape, sh)));
            }
            out[axis] += sh[axis];
            parts.push((c, sh));
        }
        let n = numel(&out);
        let mut y = self.alloc_like(n)?;
        let mut at = 0;
        for (p, sh) in parts {
            let (l, dst_off) = layout::cat_part(sh, &out, axis, at)?;
            p.copy_into(&l, 0, &mut y, dst_off, p.len)?;
            at += sh[axis];
        }
        self.wrap(y, n)
    }

    fn index_select_(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
    ) -> Result<Storage> {
        check_len("index_select", shape, self.len)?;
        let Some(&d) = shape.get(axis) else {
            return Err(Error::Core(nn_core::Error::bad_shape(
                "index_select",
                shape,
                format!("axis {axis} out of range"),
            )));
        };
        let (idx, k) = self.checked_indices("index_select", indices, d)?;
        let (outer, inner) = axis_split(shape, axis);
        let s = AxisSplit { outer, d, k, inner };
        let buf = match &self.buf {
            Buf::F32(x) => Buf::F32(copy::index_select(&self.rt, s, &idx, x)?),
            Buf::I64(x) => Buf::I64(copy::index_select(&self.rt, s, &idx, x)?),
        };
        let n = nn_core::shape::checked_numel("index_select", &[outer, k, inner])?;
        self.wrap(buf, n)
    }

    fn index_add_(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
        out_shape: &[usize],
    ) -> Result<Storage> {
        check_len("index_add", shape, self.len)?;
        let x = self.f32s("index_add")?;
        let ok = axis < shape.len()
            && out_shape.len() == shape.len()
            && (0..shape.len()).all(|i| i == axis || shape[i] == out_shape[i]);
        if !ok {
            return Err(Error::Core(nn_core::Error::mismatch(
                "index_add",
                shape,
                out_shape,
            )));
        }
        let d = out_shape[axis];
        let (idx, k) = self.checked_indices("index_add", indices, d)?;
        if k != shape[axis] {
            return Err(Error::Core(nn_core::Error::bad_shape(
                "index_add",
                shape,
                format!("{k} indices for an axis of size {}", shape[axis]),
            )));
        }
        let (outer, inner) = axis_split(shape, axis);
        let s = AxisSplit { outer, d, k, inner };
        let y = copy::index_add_f32(&self.rt, s, &idx, x)?;
        self.wrap(Buf::F32(y), numel(out_shape))
    }

    fn cast_(&self, dtype: DType) -> Result<Storage> {
        let buf = match (&self.buf, dtype) {
            (_, other) if !other.is_compute() => {
                return Err(Error::Core(nn_core::Error::StorageOnly {
                    op: "to_dtype on CUDA (move the tensor to the CPU first)",
                    dtype: other,
                }))
            }
            (Buf::F32(x), DType::I64) => Buf::I64(ew::cast_f32_i64(&self.rt, x, self.len)?),
            (Buf::I64(x), DType::F32) => Buf::F32(ew::cast_i64_f32(&self.rt, x, self.len)?),
            (Buf::F32(x), _) => Buf::F32(self.rt.dtod(x)?),
            (Buf::I64(x), _) => Buf::I64(self.rt.dtod(x)?),
        };
        self.wrap(buf, self.len)
    }
}

impl BackendStorage for CudaStorage {
    fn device(&self) -> Device {
        Device::Backend(self.dev.clone())
    }
    fn dtype(&self) -> DType {
        self.dtype_()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn to_host(&self) -> nn_core::Result<HostData> {
        self.core(self.to_host_())
    }
    fn deep_copy(&self) -> nn_core::Result<Storage> {
        self.core(self.cast_(self.dtype_()))
    }
    fn write_at(&mut self, offset: usize, src: &HostData) -> nn_core::Result<()> {
        let r = self.write_at_(offset, src);
        self.core(r)
    }
    fn sgd_step(
        &mut self,
        grad: &dyn BackendStorage,
        buf: Option<&mut dyn BackendStorage>,
        step: &SgdStep,
    ) -> nn_core::Result<bool> {
        let r = self.sgd_step_(grad, buf, step);
        self.core(r.map(|()| true))
    }
    fn adam_step(
        &mut self,
        grad: &dyn BackendStorage,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        step: &AdamStep,
    ) -> nn_core::Result<bool> {
        let r = self.adam_step_(grad, m, v, step);
        self.core(r.map(|()| true))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn unary(&self, op: UnaryOp) -> nn_core::Result<Storage> {
        self.core(self.unary_(op))
    }
    fn binary(
        &self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs: &dyn BackendStorage,
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> nn_core::Result<Storage> {
        self.core(self.binary_(op, lhs_shape, rhs, rhs_shape, out_shape))
    }
    fn where_cond(
        &self,
        cond_shape: &[usize],
        a: &dyn BackendStorage,
        a_shape: &[usize],
        b: &dyn BackendStorage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> nn_core::Result<Storage> {
        self.core(self.where_(cond_shape, a, a_shape, b, b_shape, out_shape))
    }
    fn matmul(&self, rhs: &dyn BackendStorage, spec: &MatmulSpec) -> nn_core::Result<Storage> {
        self.core(self.matmul_(rhs, spec))
    }
    fn reduce(&self, op: ReduceOp, shape: &[usize], axes: &[usize]) -> nn_core::Result<Storage> {
        self.core(self.reduce_(op, shape, axes))
    }
    fn permute(&self, shape: &[usize], perm: &[usize]) -> nn_core::Result<Storage> {
        self.core(self.permute_(shape, perm))
    }
    fn narrow(
        &self,
        shape: &[usize],
        axis: usize,
        start: usize,
        len: usize,
    ) -> nn_core::Result<Storage> {
        self.core(self.narrow_(shape, axis, start, len))
    }
    fn cat(
        &self,
        shape: &[usize],
        others: &[(&dyn BackendStorage, &[usize])],
        axis: usize,
    ) -> nn_core::Result<Storage> {
        self.core(self.cat_(shape, others, axis))
    }
    fn index_select(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
    ) -> nn_core::Result<Storage> {
        self.core(self.index_select_(shape, axis, indices))
    }
    fn index_add(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
        out_shape: &[usize],
    ) -> nn_core::Result<Storage> {
        self.core(self.index_add_(shape, axis, indices, out_shape))
    }
    fn cast(&self, dtype: DType) -> nn_core::Result<Storage> {
        self.core(self.cast_(dtype))
    }
    fn cross_entropy(
        &self,
        targets: &dyn BackendStorage,
        rows: usize,
        classes: usize,
    ) -> nn_core::Result<Option<(Storage, Storage)>> {
        self.core(self.cross_entropy_(targets, rows, classes).map(Some))
    }
    fn cross_entropy_backward(
        &self,
        targets: &dyn BackendStorage,
        grad: &dyn BackendStorage,
        rows: usize,
        classes: usize,
    ) -> nn_core::Result<Option<Storage>> {
        self.core(
            self.cross_entropy_backward_(targets, grad, rows, classes)
                .map(Some),
        )
    }
    fn matmul_bias(
        &self,
        rhs: &dyn BackendStorage,
        spec: &MatmulSpec,
        bias: &dyn BackendStorage,
    ) -> nn_core::Result<Storage> {
        self.core(self.matmul_bias_(rhs, spec, bias))
    }
    fn relu_backward(&self, grad: &dyn BackendStorage) -> nn_core::Result<Storage> {
        self.core(self.relu_backward_(grad))
    }
    fn relu_backward_colsum(
        &self,
        grad: &dyn BackendStorage,
        rows: usize,
        cols: usize,
    ) -> nn_core::Result<(Storage, Storage)> {
        self.core(self.relu_backward_colsum_(grad, rows, cols))
    }
    fn im2col(&self, spec: &Im2ColSpec) -> nn_core::Result<Storage> {
        self.core(self.im2col_(spec))
    }
    fn col2im(&self, spec: &Im2ColSpec) -> nn_core::Result<Storage> {
        self.core(self.col2im_(spec))
    }
}
