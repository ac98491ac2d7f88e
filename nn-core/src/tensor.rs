//! `Tensor`: a cheap-to-clone handle on device storage, a shape and its autograd record.

use crate::autograd::{self, GradSlot, Node};
use crate::backend::{BackendStorage, Storage};
use crate::shape::{numel, Dims};
use crate::{DType, Device, Error, HostData, Result};
use std::fmt;
use std::sync::{Arc, Mutex};

mod create;

/// An n-dimensional array on a device, with define-by-run autograd.
///
/// Cloning is cheap and shares the storage. Tensors are immutable values: ops return new
/// tensors; in-place parameter updates go through [`crate::Param`].
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?.with_requires_grad(true);
/// let y = x.mul(&x)?.sum()?;
/// y.backward()?;
/// assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![2.0, 4.0, 6.0, 8.0]);
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

/// A tensor's internals: built and read only in this file (others use the constructors
/// and accessors below).
struct Inner {
    storage: Storage,
    shape: Dims,
    requires_grad: bool,
    /// Set for results of recorded ops; taken (freed) by backward.
    node: Option<Mutex<Option<Node>>>,
    /// Set for leaves that require grad: where their gradient accumulates.
    grad: Option<Arc<GradSlot>>,
}

/// Element types a tensor can be built from and read back as.
pub trait Element: Copy + Send + Sync + 'static + fmt::Debug {
    /// The runtime dtype.
    const DTYPE: DType;
    /// Wraps a vector as host data.
    fn into_host(v: Vec<Self>) -> HostData;
    /// Unwraps host data of this type, or a dtype error.
    fn from_host(s: HostData) -> Result<Vec<Self>>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn into_host(v: Vec<Self>) -> HostData {
        HostData::F32(v)
    }
    fn from_host(s: HostData) -> Result<Vec<Self>> {
        match s {
            HostData::F32(v) => Ok(v),
            other => Err(Error::DType {
                op: "to_vec::<f32>",
                dtype: other.dtype(),
                expected: Some(DType::F32),
            }),
        }
    }
}

impl Element for i64 {
    const DTYPE: DType = DType::I64;
    fn into_host(v: Vec<Self>) -> HostData {
        HostData::I64(v)
    }
    fn from_host(s: HostData) -> Result<Vec<Self>> {
        match s {
            HostData::I64(v) => Ok(v),
            other => Err(Error::DType {
                op: "to_vec::<i64>",
                dtype: other.dtype(),
                expected: Some(DType::I64),
            }),
        }
    }
}

/// `bool` reads and writes [`DType::Bool`] (one byte per element, 0 or 1).
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn into_host(v: Vec<Self>) -> HostData {
        HostData::Bool(v.into_iter().map(u8::from).collect())
    }
    fn from_host(s: HostData) -> Result<Vec<Self>> {
        match s {
            HostData::Bool(v) => Ok(v.into_iter().map(|b| b != 0).collect()),
            other => Err(Error::DType {
                op: "to_vec::<bool>",
                dtype: other.dtype(),
                expected: Some(DType::Bool),
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

    /// A CPU tensor from host data and a shape (row-major).
    pub fn from_host(data: HostData, shape: &[usize]) -> Result<Tensor> {
        Self::from_storage(crate::cpu::storage(data), shape)
    }

    /// A CPU leaf from host data whose length the caller computed from `shape`.
    fn host_leaf(data: HostData, shape: Dims) -> Tensor {
        debug_assert_eq!(
            data.len(),
            numel(&shape),
            "host data does not match its shape"
        );
        Self::leaf(crate::cpu::storage(data), shape)
    }

    /// The result of a recorded op: a tensor that requires grad, with `node` as the
    /// record backward walks (see [`autograd::record`]).
    pub(crate) fn from_op(storage: Storage, shape: Dims, node: Node) -> Tensor {
        debug_assert_storage_fits(&storage, &shape);
        Tensor(Arc::new(Inner {
            storage,
            shape,
            requires_grad: true,
            node: Some(Mutex::new(Some(node))),
            grad: None,
        }))
    }

    /// The op record of a result tensor (None for leaves).
    pub(crate) fn node(&self) -> Option<&Mutex<Option<Node>>> {
        self.0.node.as_ref()
    }

    /// Where a leaf's gradient accumulates (None for results and plain leaves).
    pub(crate) fn grad_slot(&self) -> Option<&Arc<GradSlot>> {
        self.0.grad.as_ref()
    }

    /// The shape as inline dims (for building results).
    pub(crate) fn shape_dims(&self) -> Dims {
        self.0.shape.clone()
    }

    /// The storage for writing in place, when this handle is the only one on both its
    /// tensor and its storage (so a write cannot be observed through any other value).
    pub(crate) fn storage_mut(&mut self) -> Option<&mut dyn BackendStorage> {
        let inner = Arc::get_mut(&mut self.0)?;
        Arc::get_mut(&mut inner.storage)
    }

    /// The storage for writing in place, copying it first (copy-on-write) when another
    /// handle shares the tensor or its storage: the copy replaces `self` as a tensor
    /// with the same shape, requires-grad flag and gradient slot, and no op record.
    pub(crate) fn make_mut(&mut self) -> Result<&mut dyn BackendStorage> {
        if self.storage_mut().is_none() {
            let copy = self.0.storage.deep_copy()?;
            *self = Tensor(Arc::new(Inner {
                storage: copy,
                shape: self.shape_dims(),
                requires_grad: self.0.requires_grad,
                node: None,
                grad: self.0.grad.clone(),
            }));
        }
        self.storage_mut().ok_or_else(|| Error::Backward {
            op: Some("make_mut"),
            problem: crate::BackwardProblem::SharedCopy,
        })
    }

    pub(crate) fn leaf(storage: Storage, shape: Dims) -> Tensor {
        debug_assert_storage_fits(&storage, &shape);
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
        debug_assert_storage_fits(&storage, &shape);
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
        if data.len() != crate::shape::checked_numel("from_vec", shape)? {
            return Err(Error::bad_shape(
                "from_vec",
                shape,
                format!("{} elements given", data.len()),
            ));
        }
        Ok(Self::host_leaf(T::into_host(data), Dims::from_slice(shape)))
    }

    /// A tensor copied from a slice.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape)
    }

    /// Copies an ndarray array into a tensor.
    #[must_use]
    pub fn from_ndarray(a: &ndarray::ArrayD<f32>) -> Tensor {
        let shape = a.shape().to_vec();
        let v: Vec<f32> = a.iter().copied().collect();
        Self::host_leaf(HostData::F32(v), Dims::from_slice(&shape))
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

    /// A host copy of the data.
    pub fn to_host(&self) -> Result<HostData> {
        self.0.storage.to_host()
    }

    /// Copies the elements to a host vector (row-major).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        T::from_host(self.0.storage.to_host()?)
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
        Ok(match self.0.storage.to_host()? {
            HostData::F32(v) => v[0],
            HostData::I64(v) => v[0] as f32,
            other => other.to_dtype(DType::F32)?.f32s("item")?[0],
        })
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// A NEW leaf tensor sharing the data, with requires-grad set as asked (`self` is
    /// unchanged: tensors are values). Gradients of a leaf that requires grad accumulate
    /// into [`Tensor::grad`] of the returned tensor: PyTorch's
    /// `x = x.detach().requires_grad_(on)`.
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::Tensor;
    /// let x = Tensor::ones(&[2]).with_requires_grad(true);
    /// x.sum()?.backward()?;
    /// assert!(x.grad().is_some());
    /// # Ok::<(), nn::Error>(())
    /// ```
    #[must_use = "with_requires_grad returns a new tensor; it does not change `self`"]
    pub fn with_requires_grad(&self, on: bool) -> Tensor {
        if on {
            Self::leaf_with_slot(
                self.0.storage.clone(),
                self.shape_dims(),
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

    /// Registers `hook` to run each time a backward has accumulated this leaf's gradient
    /// (PyTorch's `register_post_accumulate_grad_hook`): once per backward that gives the
    /// leaf a gradient, as soon as every contribution of that backward is in, before
    /// the rest of the graph is swept; leaves are reached in reverse topological order
    /// (the last layers' parameters first). The hook gets the accumulated gradient
    /// (what [`Tensor::grad`] returns then); an `Err` from it stops the backward, which
    /// returns that error. Only leaves that require grad accumulate gradients: anything
    /// else is an [`Error::Backward`] with [`crate::BackwardProblem::HookOnNonLeaf`].
    ///
    /// A hook that captures a handle on its own tensor (or parameter) keeps it alive
    /// until [`autograd::HookHandle::remove`] is called.
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::Tensor;
    /// use std::sync::{Arc, Mutex};
    /// let w = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?.with_requires_grad(true);
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let handle = w.register_post_accumulate_grad_hook(move |g| {
    ///     log.lock().unwrap().push(g.to_vec::<f32>()?);
    ///     Ok(())
    /// })?;
    /// w.mul(&w)?.sum()?.backward()?;
    /// assert_eq!(*seen.lock().unwrap(), vec![vec![2.0, 4.0]]);
    /// handle.remove();
    /// w.sum()?.backward()?;
    /// assert_eq!(seen.lock().unwrap().len(), 1);
    /// # Ok::<(), nn::Error>(())
    /// ```
    pub fn register_post_accumulate_grad_hook(
        &self,
        hook: impl Fn(&Tensor) -> Result<()> + Send + Sync + 'static,
    ) -> Result<autograd::HookHandle> {
        match (&self.0.grad, &self.0.node) {
            (Some(slot), None) => Ok(slot.add_hook(Arc::new(hook))),
            _ => Err(Error::backward(crate::BackwardProblem::HookOnNonLeaf)),
        }
    }

    /// Clears the accumulated gradient of a leaf.
    pub fn zero_grad(&self) {
        if let Some(s) = &self.0.grad {
            s.clear();
        }
    }

    /// The same data, cut from the graph.
    #[must_use]
    pub fn detach(&self) -> Tensor {
        Self::leaf(self.0.storage.clone(), self.shape_dims())
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
        let storage = device.upload(self.0.storage.to_host()?)?;
        let src = self.device();
        Ok(autograd::record(
            storage,
            self.shape_dims(),
            &[self],
            "to_device",
            move || autograd::backward_fn(move |_, g| Ok(vec![Some(g.to_device(&src)?)])),
        ))
    }
}

/// The invariant every constructor keeps: the storage holds exactly the elements the
/// shape says (an op that breaks it is a bug: caught in debug builds, at its source).
fn debug_assert_storage_fits(storage: &Storage, shape: &[usize]) {
    debug_assert_eq!(
        storage.len(),
        numel(shape),
        "storage of {} elements for shape {shape:?}",
        storage.len()
    );
}

/// The value of an infallible constructor, whose only failure is a size no allocation
/// can hold: documented on each as its panic, with a `try_` form beside it.
fn infallible(r: Result<Tensor>) -> Tensor {
    match r {
        Ok(t) => t,
        Err(e) => panic!("{e} (the try_ form of this constructor returns it as an error)"),
    }
}
