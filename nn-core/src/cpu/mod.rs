//! The CPU backend: contiguous host vectors, viewed through ndarray where it helps,
//! with matrix products on the `gemm` crate (both cores for large products).

mod kernels;
mod small_gemm;

use crate::backend::{BackendStorage, BinaryOp, MatmulSpec, ReduceOp, Storage, UnaryOp};
use crate::{DType, Device, Error, Result};
use std::any::Any;
use std::sync::Arc;

/// Host storage of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuStorage {
    /// f32 elements.
    F32(Vec<f32>),
    /// i64 elements.
    I64(Vec<i64>),
}

impl CpuStorage {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::I64(_) => DType::I64,
        }
    }

    /// The f32 data, or a dtype error naming `op`.
    pub fn f32s(&self, op: &'static str) -> Result<&[f32]> {
        match self {
            CpuStorage::F32(v) => Ok(v),
            CpuStorage::I64(_) => Err(Error::DType {
                op,
                dtype: DType::I64,
                expected: Some(DType::F32),
            }),
        }
    }

    /// The i64 data, or a dtype error naming `op`.
    pub fn i64s(&self, op: &'static str) -> Result<&[i64]> {
        match self {
            CpuStorage::I64(v) => Ok(v),
            CpuStorage::F32(_) => Err(Error::DType {
                op,
                dtype: DType::F32,
                expected: Some(DType::I64),
            }),
        }
    }

    /// Zeros of a dtype.
    pub fn zeros(len: usize, dtype: DType) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; len]),
            DType::I64 => CpuStorage::I64(vec![0; len]),
        }
    }

    /// Shares this storage as a backend handle.
    pub fn into_storage(self) -> Storage {
        Arc::new(self)
    }

    /// The raw little-endian bytes of the elements.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            CpuStorage::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            CpuStorage::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Rebuilds storage from little-endian bytes; the length must be a multiple of the
    /// element size.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Result<Self> {
        let sz = dtype.size_in_bytes();
        if bytes.len() % sz != 0 {
            return Err(Error::bad_shape(
                "from_le_bytes",
                &[bytes.len()],
                format!("not a whole number of {dtype} elements"),
            ));
        }
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::I64 => CpuStorage::I64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
        })
    }
}

/// The f32 host data of `t` as a mutable slice, when `t` is the only handle on its
/// tensor and on its storage (so a write cannot be observed through any other value).
pub(crate) fn tensor_f32_mut(t: &mut crate::Tensor) -> Option<&mut [f32]> {
    let inner = Arc::get_mut(&mut t.0)?;
    let s = Arc::get_mut(&mut inner.storage)?;
    match s.as_any_mut().downcast_mut::<CpuStorage>()? {
        CpuStorage::F32(v) => Some(v.as_mut_slice()),
        CpuStorage::I64(_) => None,
    }
}

/// The f32 host data of `t`, when it lives on the CPU.
pub(crate) fn tensor_f32(t: &crate::Tensor) -> Option<&[f32]> {
    match t.storage().as_any().downcast_ref::<CpuStorage>()? {
        CpuStorage::F32(v) => Some(v.as_slice()),
        CpuStorage::I64(_) => None,
    }
}

/// Downcasts a storage handle of another operand to the CPU, or reports a device mismatch.
fn cpu<'a>(op: &'static str, s: &'a dyn BackendStorage) -> Result<&'a CpuStorage> {
    s.as_any()
        .downcast_ref::<CpuStorage>()
        .ok_or_else(|| Error::DeviceMismatch {
            op,
            lhs: "cpu".into(),
            rhs: s.device().to_string(),
        })
}

impl BackendStorage for CpuStorage {
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn dtype(&self) -> DType {
        CpuStorage::dtype(self)
    }
    fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
        }
    }
    fn to_cpu(&self) -> Result<CpuStorage> {
        Ok(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn unary(&self, op: UnaryOp) -> Result<Storage> {
        let x = self.f32s("unary")?;
        Ok(CpuStorage::F32(kernels::unary(op, x)).into_storage())
    }

    fn binary(
        &self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs: &dyn BackendStorage,
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        let rhs = cpu("binary", rhs)?;
        let out = match (self, rhs) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                kernels::binary_f32(op, a, lhs_shape, b, rhs_shape, out_shape)
            }
            (CpuStorage::I64(a), CpuStorage::I64(b)) => {
                kernels::binary_i64(op, a, lhs_shape, b, rhs_shape, out_shape)
            }
            _ => {
                return Err(Error::DType {
                    op: "binary",
                    dtype: rhs.dtype(),
                    expected: Some(self.dtype()),
                })
            }
        };
        Ok(out.into_storage())
    }

    fn where_cond(
        &self,
        cond_shape: &[usize],
        a: &dyn BackendStorage,
        a_shape: &[usize],
        b: &dyn BackendStorage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        let cond = self.i64s("where")?;
        let (a, b) = (cpu("where", a)?, cpu("where", b)?);
        let out = match (a, b) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(kernels::where_cond(
                cond, cond_shape, a, a_shape, b, b_shape, out_shape,
            )),
            (CpuStorage::I64(a), CpuStorage::I64(b)) => CpuStorage::I64(kernels::where_cond(
                cond, cond_shape, a, a_shape, b, b_shape, out_shape,
            )),
            _ => {
                return Err(Error::DType {
                    op: "where",
                    dtype: b.dtype(),
                    expected: Some(a.dtype()),
                })
            }
        };
        Ok(out.into_storage())
    }

    fn matmul(&self, rhs: &dyn BackendStorage, spec: &MatmulSpec) -> Result<Storage> {
        let a = self.f32s("matmul")?;
        let b = cpu("matmul", rhs)?.f32s("matmul")?;
        Ok(CpuStorage::F32(kernels::matmul(a, b, spec)).into_storage())
    }

    fn matmul_bias(
        &self,
        rhs: &dyn BackendStorage,
        spec: &MatmulSpec,
        bias: &dyn BackendStorage,
    ) -> Result<Storage> {
        let a = self.f32s("linear")?;
        let b = cpu("linear", rhs)?.f32s("linear")?;
        let bias = cpu("linear", bias)?.f32s("linear")?;
        if bias.len() != spec.n {
            return Err(Error::mismatch("linear", &[bias.len()], &[spec.n]));
        }
        Ok(CpuStorage::F32(kernels::matmul_bias(a, b, spec, bias)).into_storage())
    }

    fn relu_backward(&self, grad: &dyn BackendStorage) -> Result<Storage> {
        let x = self.f32s("relu_backward")?;
        let g = cpu("relu_backward", grad)?.f32s("relu_backward")?;
        if x.len() != g.len() {
            return Err(Error::mismatch("relu_backward", &[x.len()], &[g.len()]));
        }
        Ok(CpuStorage::F32(kernels::relu_backward(x, g)).into_storage())
    }

    fn reduce(&self, op: ReduceOp, shape: &[usize], axes: &[usize]) -> Result<Storage> {
        let out = match (self, op) {
            (CpuStorage::F32(x), ReduceOp::ArgMax) => {
                let ax = axes.first().copied().unwrap_or(0);
                CpuStorage::I64(kernels::argmax(x, shape, ax))
            }
            (CpuStorage::I64(x), ReduceOp::ArgMax) => {
                let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let ax = axes.first().copied().unwrap_or(0);
                CpuStorage::I64(kernels::argmax(&xf, shape, ax))
            }
            (CpuStorage::F32(x), op) => CpuStorage::F32(kernels::reduce(op, x, shape, axes)),
            (CpuStorage::I64(x), op) => CpuStorage::I64(kernels::reduce(op, x, shape, axes)),
        };
        Ok(out.into_storage())
    }

    fn permute(&self, shape: &[usize], perm: &[usize]) -> Result<Storage> {
        Ok(match self {
            CpuStorage::F32(x) => CpuStorage::F32(kernels::permute(x, shape, perm)),
            CpuStorage::I64(x) => CpuStorage::I64(kernels::permute(x, shape, perm)),
        }
        .into_storage())
    }

    fn narrow(&self, shape: &[usize], axis: usize, start: usize, len: usize) -> Result<Storage> {
        Ok(match self {
            CpuStorage::F32(x) => CpuStorage::F32(kernels::narrow(x, shape, axis, start, len)),
            CpuStorage::I64(x) => CpuStorage::I64(kernels::narrow(x, shape, axis, start, len)),
        }
        .into_storage())
    }

    fn cat(
        &self,
        shape: &[usize],
        others: &[(&dyn BackendStorage, &[usize])],
        axis: usize,
    ) -> Result<Storage> {
        let mut parts: Vec<(&CpuStorage, &[usize])> = vec![(self, shape)];
        for (s, sh) in others {
            let c = cpu("cat", *s)?;
            if c.dtype() != self.dtype() {
                return Err(Error::DType {
                    op: "cat",
                    dtype: c.dtype(),
                    expected: Some(self.dtype()),
                });
            }
            parts.push((c, sh));
        }
        Ok(match self {
            CpuStorage::F32(_) => {
                let p: Vec<(&[f32], &[usize])> = parts
                    .iter()
                    .map(|(c, s)| c.f32s("cat").map(|v| (v, *s)))
                    .collect::<Result<_>>()?;
                CpuStorage::F32(kernels::cat(&p, axis))
            }
            CpuStorage::I64(_) => {
                let p: Vec<(&[i64], &[usize])> = parts
                    .iter()
                    .map(|(c, s)| c.i64s("cat").map(|v| (v, *s)))
                    .collect::<Result<_>>()?;
                CpuStorage::I64(kernels::cat(&p, axis))
            }
        }
        .into_storage())
    }

    fn index_select(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
    ) -> Result<Storage> {
        let idx = cpu("index_select", indices)?.i64s("index_select")?;
        let size = shape[axis];
        let idx = kernels::check_indices("index_select", idx, size)?;
        Ok(match self {
            CpuStorage::F32(x) => CpuStorage::F32(kernels::index_select(x, shape, axis, &idx)),
            CpuStorage::I64(x) => CpuStorage::I64(kernels::index_select(x, shape, axis, &idx)),
        }
        .into_storage())
    }

    fn index_add(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
        out_shape: &[usize],
    ) -> Result<Storage> {
        let idx = cpu("index_add", indices)?.i64s("index_add")?;
        let idx = kernels::check_indices("index_add", idx, out_shape[axis])?;
        let x = self.f32s("index_add")?;
        Ok(CpuStorage::F32(kernels::index_add(x, shape, axis, &idx, out_shape)).into_storage())
    }

    fn cast(&self, dtype: DType) -> Result<Storage> {
        Ok(match (self, dtype) {
            (CpuStorage::F32(x), DType::I64) => {
                CpuStorage::I64(x.iter().map(|&v| v as i64).collect())
            }
            (CpuStorage::I64(x), DType::F32) => {
                CpuStorage::F32(x.iter().map(|&v| v as f32).collect())
            }
            (s, _) => s.clone(),
        }
        .into_storage())
    }
}
