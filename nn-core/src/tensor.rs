//! `Tensor`: a cheap-to-clone handle on device storage, a shape and its autograd record.

use crate::autograd::{self, GradSlot, Node};
use crate::backend::Storage;
use crate::cpu::CpuStorage;
use crate::shape::{numel, Dims};
use crate::{DType, Device, Error, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;
use std::sync::{Arc, Mutex};

/// An n-dimensional array on a device, with define-by-run autograd.
///
/// Cloning is cheap and shares the storage. Tensors are immutable values: ops return new
/// tensors; in-place parameter updates go through [`crate::Param`].
///
/// ```
/// use nn_core::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?.set_requires_grad(true);
/// let y = x.mul(&x)?.sum_all()?;
/// y.backward()?;
/// assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![2.0, 4.0, 6.0, 8.0]);
/// # Ok::<(), nn_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) storage: Storage,
    pub(crate) shape: Dims,
    pub(crate) requires_grad: bool,
    /// Set for results of recorded ops; taken (freed) by backward.
    pub(crate) node: Option<Mutex<Option<Node>>>,
    /// Set for leaves that require grad: where their gradient accumulates.
    pub(crate) grad: Option<Arc<GradSlot>>,
}

/// Element types a tensor can be built from and read back as.
pub trait Element: Copy + Send + Sync + 'static + fmt::Debug {
    /// The runtime dtype.
    const DTYPE: DType;
    #[doc(hidden)]
    fn into_storage(v: Vec<Self>) -> CpuStorage;
    #[doc(hidden)]
    fn from_storage(s: CpuStorage) -> Result<Vec<Self>>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn into_storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn from_storage(s: CpuStorage) -> Result<Vec<Self>> {
        match s {
            CpuStorage::F32(v) => Ok(v),
            CpuStorage::I64(_) => Err(Error::DType {
                op: "to_vec::<f32>",
                dtype: DType::I64,
                expected: Some(DType::F32),
            }),
        }
    }
}

impl Element for i64 {
    const DTYPE: DType = DType::I64;
    fn into_storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::I64(v)
    }
    fn from_storage(s: CpuStorage) -> Result<Vec<Self>> {
        match s {
            CpuStorage::I64(v) => Ok(v),
            CpuStorage::F32(_) => Err(Error::DType {
                op: "to_vec::<i64>",
                dtype: DType::F32,
                expected: Some(DType::I64),
            }),
        }
    }
}

impl Tensor {
    /// Wraps storage without any autograd record.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        if storage.len() != numel(shape) {
            return Err(Error::bad_shape(
                "from_storage",
                shape,
                format!("storage holds {} elements", storage.len()),
            ));
        }
        Ok(Self::leaf(storage, Dims::from_slice(shape)))
    }

    pub(crate) fn leaf(storage: Storage, shape: Dims) -> Tensor {
        Tensor(Arc::new(Inner {
            storage,
            shape,
            requires_grad: false,
            node: None,
            grad: None,
        }))
    }

    /// A leaf sharing `slot` as its gradient accumulator (how a [`crate::Param`] keeps its
    /// gradient across data replacements).
    pub(crate) fn leaf_with_slot(storage: Storage, shape: Dims, slot: Arc<GradSlot>) -> Tensor {
        Tensor(Arc::new(Inner {
            storage,
            shape,
            requires_grad: true,
            node: None,
            grad: Some(slot),
        }))
    }

    /// A tensor from host data and a shape (row-major).
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::bad_shape(
                "from_vec",
                shape,
                format!("{} elements given", data.len()),
            ));
        }
        Ok(Self::leaf(
            T::into_storage(data).into_storage(),
            Dims::from_slice(shape),
        ))
    }

    /// A tensor copied from a slice.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape)
    }

    /// A 0-d f32 tensor.
    pub fn scalar(v: f32) -> Tensor {
        Self::leaf(CpuStorage::F32(vec![v]).into_storage(), Dims::new())
    }

    /// Zeros (f32).
    pub fn zeros(shape: &[usize]) -> Tensor {
        Self::full(shape, 0.0)
    }

    /// Ones (f32).
    pub fn ones(shape: &[usize]) -> Tensor {
        Self::full(shape, 1.0)
    }

    /// A tensor filled with `v` (f32).
    pub fn full(shape: &[usize], v: f32) -> Tensor {
        Self::leaf(
            CpuStorage::F32(vec![v; numel(shape)]).into_storage(),
            Dims::from_slice(shape),
        )
    }

    /// Zeros of a given dtype.
    pub fn zeros_dtype(shape: &[usize], dtype: DType) -> Tensor {
        Self::leaf(
            CpuStorage::zeros(numel(shape), dtype).into_storage(),
            Dims::from_slice(shape),
        )
    }

    /// Zeros with the shape, dtype and device of `self`.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros_dtype(self.shape(), self.dtype()).to_device(&self.device())
    }

    /// Ones with the shape and device of `self` (f32).
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape()).to_device(&self.device())
    }

    /// `[start, start+step, ...)` below `end`, as i64 (PyTorch's `arange` on integers).
    pub fn arange(start: i64, end: i64) -> Tensor {
        let v: Vec<i64> = (start..end).collect();
        let n = v.len();
        Self::leaf(CpuStorage::I64(v).into_storage(), smallvec::smallvec![n])
    }

    /// `[start, start+step, ...)` below `end`, as f32.
    pub fn arange_f32(start: f32, end: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid_config(
                "arange_f32",
                "range",
                format!("{start}..{end} step {step}"),
                "bounds and step must be finite and the step non-zero",
            ));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let v: Vec<f32> = (0..n).map(|i| start + i as f32 * step).collect();
        Ok(Self::leaf(
            CpuStorage::F32(v).into_storage(),
            smallvec::smallvec![n],
        ))
    }

    /// Uniform samples in `[0, 1)` from the global generator.
    pub fn rand(shape: &[usize]) -> Tensor {
        Self::rand_uniform(shape, 0.0, 1.0)
    }

    /// Uniform samples in `[lo, hi)` from the global generator.
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let v = crate::rng::with_rng(|r| {
            (0..numel(shape))
                .map(|_| lo + (hi - lo) * r.random::<f32>())
                .collect()
        });
        Self::leaf(CpuStorage::F32(v).into_storage(), Dims::from_slice(shape))
    }

    /// Standard normal samples from the global generator.
    pub fn randn(shape: &[usize]) -> Tensor {
        Self::randn_with(shape, 0.0, 1.0)
    }

    /// Normal samples with the given mean and standard deviation.
    pub fn randn_with(shape: &[usize], mean: f32, std: f32) -> Tensor {
        let v = crate::rng::with_rng(|r| {
            (0..numel(shape))
                .map(|_| {
                    let z: f32 = StandardNormal.sample(r);
                    mean + std * z
                })
                .collect()
        });
        Self::leaf(CpuStorage::F32(v).into_storage(), Dims::from_slice(shape))
    }

    /// Integer samples in `[lo, hi)` (i64).
    pub fn randint(shape: &[usize], lo: i64, hi: i64) -> Result<Tensor> {
        if hi <= lo {
            return Err(Error::EmptyInput {
                op: "randint",
                what: format!("the range {lo}..{hi}"),
            });
        }
        let v =
            crate::rng::with_rng(|r| (0..numel(shape)).map(|_| r.random_range(lo..hi)).collect());
        Ok(Self::leaf(
            CpuStorage::I64(v).into_storage(),
            Dims::from_slice(shape),
        ))
    }

    /// Copies an ndarray array into a tensor.
    pub fn from_ndarray(a: &ndarray::ArrayD<f32>) -> Tensor {
        let shape = a.shape().to_vec();
        let v: Vec<f32> = a.iter().copied().collect();
        Self::leaf(CpuStorage::F32(v).into_storage(), Dims::from_slice(&shape))
    }

    /// Copies the tensor into an ndarray array (f32).
    pub fn to_ndarray(&self) -> Result<ndarray::ArrayD<f32>> {
        let v = self.to_vec::<f32>()?;
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(self.shape()), v)
            .map_err(|e| Error::bad_shape("to_ndarray", self.shape(), e.to_string()))
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Alias of [`Tensor::shape`].
    pub fn dims(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.storage.dtype()
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        self.0.storage.device()
    }

    /// The backend storage.
    pub fn storage(&self) -> &Storage {
        &self.0.storage
    }

    /// A host copy of the storage.
    pub fn to_cpu_storage(&self) -> Result<CpuStorage> {
        self.0.storage.to_cpu()
    }

    /// Copies the elements to a host vector (row-major).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        T::from_storage(self.0.storage.to_cpu()?)
    }

    /// Copies a 2-d tensor into nested vectors.
    pub fn to_vec2<T: Element>(&self) -> Result<Vec<Vec<T>>> {
        let [r, c] = *self.shape() else {
            return Err(Error::bad_shape("to_vec2", self.shape(), "expected rank 2"));
        };
        let v = self.to_vec::<T>()?;
        Ok((0..r).map(|i| v[i * c..(i + 1) * c].to_vec()).collect())
    }

    /// The value of a one-element tensor, as f32.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::bad_shape(
                "item",
                self.shape(),
                "expected one element",
            ));
        }
        Ok(match self.0.storage.to_cpu()? {
            CpuStorage::F32(v) => v[0],
            CpuStorage::I64(v) => v[0] as f32,
        })
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// A leaf sharing the data, with requires-grad set as asked. Gradients of a leaf that
    /// requires grad accumulate into [`Tensor::grad`].
    pub fn set_requires_grad(&self, on: bool) -> Tensor {
        if on {
            Self::leaf_with_slot(
                self.0.storage.clone(),
                self.0.shape.clone(),
                Arc::new(GradSlot::default()),
            )
        } else {
            self.detach()
        }
    }

    /// The accumulated gradient of a leaf (None before any backward).
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.as_ref().and_then(|s| s.get())
    }

    /// Clears the accumulated gradient of a leaf.
    pub fn zero_grad(&self) {
        if let Some(s) = &self.0.grad {
            s.clear();
        }
    }

    /// The same data, cut from the graph.
    pub fn detach(&self) -> Tensor {
        Self::leaf(self.0.storage.clone(), self.0.shape.clone())
    }

    /// Whether two handles share one storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// Backpropagates from a one-element tensor (gradient 1).
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::bad_shape(
                "backward",
                self.shape(),
                "backward() needs a one-element output; use backward_with(grad) otherwise",
            ));
        }
        let g = Tensor::ones(self.shape()).to_device(&self.device())?;
        autograd::backward(self, g)
    }

    /// Backpropagates with an explicit output gradient of the same shape.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(Error::mismatch("backward_with", self.shape(), grad.shape()));
        }
        autograd::backward(self, grad.detach())
    }

    /// Copies the tensor to `device` (a no-op handle clone when it is already there).
    /// The copy is a differentiable op.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if &self.device() == device {
            return Ok(self.clone());
        }
        let host = self.0.storage.to_cpu()?;
        let storage = match device {
            Device::Cpu => host.into_storage(),
            Device::Cuda(d) => d.upload(&host)?,
        };
        let src = self.device();
        Ok(autograd::record(
            storage,
            self.0.shape.clone(),
            &[self],
            "to_device",
            move || autograd::backward_fn(move |_, g| Ok(vec![Some(g.to_device(&src)?)])),
        ))
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, dtype={}, device={}{})",
            self.shape(),
            self.dtype(),
            self.device(),
            if self.requires_grad() {
                ", requires_grad"
            } else {
                ""
            }
        )
    }
}

impl fmt::Display for Tensor {
    /// PyTorch-like printing: nested brackets, values with 4 decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(host) = self.0.storage.to_cpu() else {
            return write!(f, "tensor(<unreadable on {}>)", self.device());
        };
        let vals: Vec<String> = match host {
            CpuStorage::F32(v) => v.iter().map(|x| format!("{x:.4}")).collect(),
            CpuStorage::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        };
        fn rec(
            f: &mut fmt::Formatter<'_>,
            vals: &[String],
            shape: &[usize],
            depth: usize,
        ) -> fmt::Result {
            if shape.is_empty() {
                return f.write_str(vals.first().map(String::as_str).unwrap_or(""));
            }
            let inner: usize = shape[1..].iter().product();
            f.write_str("[")?;
            for i in 0..shape[0] {
                if i > 0 {
                    if shape.len() > 1 {
                        write!(f, ",\n{}", " ".repeat(depth + 8))?;
                    } else {
                        f.write_str(", ")?;
                    }
                }
                rec(f, &vals[i * inner..(i + 1) * inner], &shape[1..], depth + 1)?;
            }
            f.write_str("]")
        }
        f.write_str("tensor(")?;
        rec(f, &vals, self.shape(), 0)?;
        if self.requires_grad() {
            f.write_str(", requires_grad=True")?;
        }
        f.write_str(")")
    }
}
