//! `Param`: a shared, named, possibly deferred trainable tensor.

use super::lend::{Lend, LENT};
use super::repr::fmt_partial;
use crate::autograd::GradSlot;
use crate::backend::BackendStorage;
use crate::init::{Fans, Init};
use crate::shape::Dims;
use crate::{Device, Error, HostData, Result, Tensor};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A trainable tensor with a stable identity.
///
/// Cloning a `Param` shares it: that is how weights are tied. A write through one handle
/// is seen through every other, and gradients of all uses accumulate into one slot.
/// [`Param::deep_copy`] makes an independent copy.
///
/// A param may be *deferred*: created with unknown dims and an initializer, and
/// materialized (by a lazy layer's first forward, or by loading a state dict) once its
/// shape is known. Reading a deferred param's data is an [`Error::Uninitialized`].
#[derive(Clone)]
pub struct Param(Arc<ParamInner>);

struct ParamInner {
    id: u64,
    state: RwLock<State>,
    grad: Arc<GradSlot>,
    requires_grad: AtomicBool,
    name: RwLock<String>,
}

enum State {
    Ready(Tensor),
    Deferred {
        shape: Vec<Option<usize>>,
        init: Init,
        key: u64,
        device: Device,
    },
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Param {
    fn from_state(state: State) -> Param {
        Param(Arc::new(ParamInner {
            id: next_id(),
            state: RwLock::new(state),
            grad: Arc::new(GradSlot::default()),
            requires_grad: AtomicBool::new(true),
            name: RwLock::new(String::new()),
        }))
    }

    fn leaf(&self, t: &Tensor) -> Tensor {
        Tensor::leaf_with_slot(
            t.storage().clone(),
            Dims::from_slice(t.shape()),
            self.0.grad.clone(),
        )
    }

    /// A parameter holding `data`, requiring grad. Only f32 data can be trained: any
    /// other dtype is an [`Error::DType`], as PyTorch refuses `nn.Parameter` of an
    /// integer tensor.
    pub fn new(data: Tensor) -> Result<Param> {
        if data.dtype() != crate::DType::F32 {
            return Err(Error::DType {
                op: "Param::new",
                dtype: data.dtype(),
                expected: Some(crate::DType::F32),
            });
        }
        let p = Param::from_state(State::Ready(Tensor::scalar(0.0)));
        let leaf = p.leaf(&data);
        *p.write() = State::Ready(leaf);
        Ok(p)
    }

    /// A parameter of a known shape, initialized now with `init` from its own random
    /// stream (one key drawn from the global generator).
    pub fn init(shape: &[usize], init: Init) -> Result<Param> {
        Self::init_with_fans(shape, init, Fans::of(shape))
    }

    /// Like [`Param::init`], with explicit fan-in/fan-out for the initializer (a Linear
    /// bias uses its weight's fans, as PyTorch does).
    pub fn init_with_fans(shape: &[usize], init: Init, fans: Fans) -> Result<Param> {
        let key = crate::rng::next_key();
        let t = init.tensor(shape, fans, key)?;
        Param::new(t)
    }

    /// A deferred parameter: `None` dims are unknown until [`Param::materialize`].
    /// Its random stream key is drawn now, so the values it gets later equal those an
    /// eagerly built twin would have got.
    pub fn deferred(shape: &[Option<usize>], init: Init) -> Param {
        let key = crate::rng::next_key();
        Param::from_state(State::Deferred {
            shape: shape.to_vec(),
            init,
            key,
            device: Device::Cpu,
        })
    }

    /// Shape and device when this thread is inside `with_data_mut` on this parameter.
    fn lent(&self) -> Option<(Vec<usize>, Device)> {
        LENT.with(|l| {
            l.borrow()
                .iter()
                .find(|(id, ..)| *id == self.0.id)
                .map(|(_, s, d)| (s.clone(), d.clone()))
        })
    }

    /// The re-entrancy check of every call that needs the data or the lock for writing.
    fn not_lent(&self, op: &'static str) -> Result<()> {
        match self.lent() {
            Some(_) => Err(Error::Reentrant {
                op,
                param: self.name(),
            }),
            None => Ok(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.0.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A process-unique identity (shared by all handles of one parameter).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Whether two handles are the same parameter.
    pub fn ptr_eq(&self, other: &Param) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The parameter's dotted path in its model (`0.weight`, `encoder.layers.2.bias`),
    /// for messages. A parameter learns its path when it is placed: when a
    /// [`crate::layers::Sequential`] is built around it, and at every traversal of a
    /// model holding it (`parameters()`, an optimizer, `state_dict()`, `apply`, save and
    /// load, printing). A traversal from a larger model extends the path it knows
    /// (`0.weight` becomes `encoder.0.weight`); one from a sub-module does not shorten it.
    /// A tied or shared parameter keeps the path of its first placement, the name
    /// [`crate::ModuleExt::named_parameters`] lists it under. Before any placement: the
    /// local name its layer gave it (`weight`), or `param#<id>`.
    pub fn name(&self) -> String {
        let n = self
            .0
            .name
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if n.is_empty() {
            format!("param#{}", self.0.id)
        } else {
            n
        }
    }

    /// Sets the name messages use for this parameter (replacing any learned path).
    pub fn set_name(&self, name: &str) {
        let mut n = self.0.name.write().unwrap_or_else(|e| e.into_inner());
        if n.as_str() != name {
            *n = name.to_string();
        }
    }

    /// Records `path`, where a traversal found this parameter, if it is the first path
    /// known or extends the known one (`encoder.0.weight` extends `0.weight` and the
    /// local `weight`); see [`Param::name`].
    pub(crate) fn learn_path(&self, path: &str) {
        let extends = |known: &str| {
            known.is_empty()
                || path
                    .strip_suffix(known)
                    .is_some_and(|outer| outer.ends_with('.'))
        };
        if !extends(&self.0.name.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let mut n = self.0.name.write().unwrap_or_else(|e| e.into_inner());
        if extends(&n) {
            *n = path.to_string();
        }
    }

    /// Whether the shape is known and data exists.
    pub fn is_initialized(&self) -> bool {
        self.lent().is_some() || matches!(*self.read(), State::Ready(_))
    }

    /// The shape, or None while deferred.
    pub fn shape(&self) -> Option<Vec<usize>> {
        if let Some((shape, _)) = self.lent() {
            return Some(shape);
        }
        match &*self.read() {
            State::Ready(t) => Some(t.shape().to_vec()),
            State::Deferred { .. } => None,
        }
    }

    /// The shape with unknown dims as None (PyTorch prints them as `?`/`-1`).
    pub fn partial_shape(&self) -> Vec<Option<usize>> {
        if let Some((shape, _)) = self.lent() {
            return shape.into_iter().map(Some).collect();
        }
        match &*self.read() {
            State::Ready(t) => t.shape().iter().map(|&d| Some(d)).collect(),
            State::Deferred { shape, .. } => shape.clone(),
        }
    }

    /// Number of elements (0 while deferred).
    pub fn numel(&self) -> usize {
        self.shape().map(|s| s.iter().product()).unwrap_or(0)
    }

    /// The data, detached from the graph. Errors while deferred.
    pub fn data(&self) -> Result<Tensor> {
        self.not_lent("data")?;
        match &*self.read() {
            State::Ready(t) => Ok(t.detach()),
            State::Deferred { .. } => Err(Error::Uninitialized { param: self.name() }),
        }
    }

    /// The tensor to use in a forward pass: a graph leaf whose gradient accumulates in
    /// this parameter when it requires grad, a detached tensor otherwise.
    pub fn tensor(&self) -> Result<Tensor> {
        self.not_lent("tensor")?;
        match &*self.read() {
            State::Ready(t) if self.requires_grad() => Ok(t.clone()),
            State::Ready(t) => Ok(t.detach()),
            State::Deferred { .. } => Err(Error::Uninitialized { param: self.name() }),
        }
    }

    /// Replaces the data (same shape required unless the param is deferred, in which case
    /// the new data materializes it). Every tied handle sees the new data.
    pub fn set_data(&self, data: &Tensor) -> Result<()> {
        self.not_lent("set_data")?;
        let mut st = self.write();
        match &*st {
            State::Ready(t) if t.shape() != data.shape() => {
                return Err(Error::ShapeMismatch {
                    op: "set_data",
                    lhs: t.shape().to_vec(),
                    rhs: data.shape().to_vec(),
                })
            }
            State::Deferred { shape, .. } => {
                let fits = shape.len() == data.rank()
                    && shape
                        .iter()
                        .zip(data.shape())
                        .all(|(a, b)| a.is_none_or(|a| a == *b));
                if !fits {
                    return Err(Error::bad_shape(
                        "set_data",
                        data.shape(),
                        format!(
                            "parameter `{}` expects shape {}",
                            self.name(),
                            fmt_partial(shape)
                        ),
                    ));
                }
            }
            _ => {}
        }
        *st = State::Ready(self.leaf(data));
        Ok(())
    }

    /// Hands the data's little-endian bytes to `f` for overwriting in place, when that is
    /// unobservable: the parameter is ready, on the CPU, and no other handle shares its
    /// tensor or storage (no live graph, no `data()` snapshot). Returns `Ok(false)`
    /// without calling `f` otherwise. The state-dict loader uses it to read files
    /// straight into memory the model already owns.
    pub(crate) fn overwrite_in_place(
        &self,
        f: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<bool> {
        if cfg!(target_endian = "big") {
            return Ok(false);
        }
        self.not_lent("load")?;
        let mut st = self.write();
        let State::Ready(t) = &mut *st else {
            return Ok(false);
        };
        match t.storage_mut().and_then(|s| s.as_host_mut()) {
            Some(h) => f(h.bytes_mut())?,
            None => return Ok(false),
        }
        Ok(true)
    }

    /// Applies `f` to the data and stores the result (e.g. `p.update(|d| d.add_scalar(1.0))`).
    pub fn update(&self, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<()> {
        let new = crate::no_grad(|| f(&self.data()?))?;
        self.set_data(&new)
    }

    /// Runs `f` on the data as a mutable host slice, in place, when the data is f32 on the
    /// CPU and no other tensor shares its storage (the optimizers' allocation-free path).
    /// Returns `Ok(None)` without calling `f` when the data cannot be borrowed that way
    /// (shared with a live tensor, on another device, another dtype): callers then fall
    /// back to [`Param::set_data`]. Errors while deferred.
    ///
    /// Inside `f`, this parameter (through any of its handles) answers its shape,
    /// device and initialization state; whatever needs its data or replaces it
    /// (`data()`, `set_data`, a nested `with_data_mut` ...) is an [`Error::Reentrant`]
    /// instead of a deadlock. [`Param::deep_copy`] of it there panics (it cannot fail).
    pub fn with_data_mut<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> Result<Option<R>> {
        self.not_lent("with_data_mut")?;
        let mut st = self.write();
        match &mut *st {
            State::Ready(t) => {
                let lend = Lend::new(self.0.id, t.shape().to_vec(), t.device());
                let r = match t.storage_mut().and_then(|s| s.as_host_mut()) {
                    Some(HostData::F32(v)) => Some(f(v)),
                    _ => None,
                };
                drop(lend);
                Ok(r)
            }
            State::Deferred { .. } => Err(Error::Uninitialized { param: self.name() }),
        }
    }

    /// Runs `f` on the data's storage in place, on the device where it lives (the
    /// optimizers' fused updates). Copy-on-write: when a live tensor (a `data()`
    /// snapshot, a graph) shares the storage, `f` gets a fresh copy that then becomes
    /// the data, so no value a user holds changes. Errors while deferred.
    pub(crate) fn update_in_place<R>(
        &self,
        f: impl FnOnce(&mut dyn BackendStorage) -> Result<R>,
    ) -> Result<R> {
        self.not_lent("update")?;
        let mut st = self.write();
        match &mut *st {
            State::Ready(t) => f(t.make_mut()?),
            State::Deferred { .. } => Err(Error::Uninitialized { param: self.name() }),
        }
    }

    /// Writes one element (`data[idx] = v`).
    pub fn set_item(&self, idx: &[usize], v: f32) -> Result<()> {
        let d = self.data()?;
        let shape = d.shape().to_vec();
        if idx.len() != shape.len() || idx.iter().zip(&shape).any(|(i, s)| i >= s) {
            return Err(Error::bad_shape(
                "set_item",
                &shape,
                format!("index {idx:?} out of range for parameter `{}`", self.name()),
            ));
        }
        let flat = idx
            .iter()
            .zip(crate::shape::strides(&shape))
            .map(|(i, s)| i * s)
            .sum::<usize>();
        drop(d);
        self.update_in_place(|s| s.write_at(flat, &HostData::F32(vec![v])))
    }

    /// Fills unknown dims from `shape` and initializes with the stored initializer.
    /// A no-op when already initialized with that shape; an error naming the parameter
    /// when the known dims disagree.
    pub fn materialize(&self, shape: &[usize], fans: Option<Fans>) -> Result<()> {
        self.not_lent("materialize")?;
        // The initializer may be a user closure: it runs without the lock held, so one
        // that reads this very parameter gets `Uninitialized` rather than a deadlock.
        let (init, key, device) = match &*self.read() {
            State::Ready(t) => return self.check_materialized(t.shape(), shape),
            State::Deferred {
                shape: partial,
                init,
                key,
                device,
            } => {
                let fits = partial.len() == shape.len()
                    && partial
                        .iter()
                        .zip(shape)
                        .all(|(a, b)| a.is_none_or(|a| a == *b));
                if !fits {
                    return Err(Error::bad_shape(
                        "materialize",
                        shape,
                        format!(
                            "parameter `{}` expects shape {}",
                            self.name(),
                            fmt_partial(partial)
                        ),
                    ));
                }
                (init.clone(), *key, device.clone())
            }
        };
        let t = init
            .tensor(shape, fans.unwrap_or_else(|| Fans::of(shape)), key)?
            .to_device(&device)?;
        let mut st = self.write();
        match &*st {
            // another thread got there first: its values are ours too (same stream key)
            State::Ready(t) => self.check_materialized(t.shape(), shape),
            State::Deferred { .. } => {
                *st = State::Ready(self.leaf(&t));
                Ok(())
            }
        }
    }

    fn check_materialized(&self, have: &[usize], want: &[usize]) -> Result<()> {
        if have != want {
            return Err(Error::ShapeMismatch {
                op: "materialize",
                lhs: have.to_vec(),
                rhs: want.to_vec(),
            });
        }
        Ok(())
    }

    /// Re-initializes with `init` now (Gluon's `force_reinit`), drawing a fresh stream key;
    /// on a deferred parameter, replaces the initializer its materialization will use.
    pub fn reinit(&self, init: &Init) -> Result<()> {
        self.reinit_with_fans(init, None)
    }

    /// Like [`Param::reinit`] with explicit fans (None: from the parameter's own shape).
    /// A Linear bias uses its weight's fans, as PyTorch's `reset_parameters` does.
    pub fn reinit_with_fans(&self, init: &Init, fans: Option<Fans>) -> Result<()> {
        self.not_lent("reinit")?;
        let key = crate::rng::next_key();
        // A state only goes from deferred to ready (and a ready shape never changes), so
        // at most two rounds: draw outside the lock (the initializer may be a closure
        // reading this parameter), then install unless it was materialized meanwhile.
        loop {
            let ready = match &*self.read() {
                State::Ready(t) => Some((t.shape().to_vec(), t.device())),
                State::Deferred { .. } => None,
            };
            let Some((shape, device)) = ready else {
                if let State::Deferred {
                    init: i, key: k, ..
                } = &mut *self.write()
                {
                    *i = init.clone();
                    *k = key;
                    return Ok(());
                }
                continue;
            };
            let new = init
                .tensor(&shape, fans.unwrap_or_else(|| Fans::of(&shape)), key)?
                .to_device(&device)?;
            *self.write() = State::Ready(self.leaf(&new));
            return Ok(());
        }
    }

    /// Whether gradients are computed for this parameter.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Freezes (false) or unfreezes (true) the parameter.
    pub fn set_requires_grad(&self, on: bool) {
        self.0.requires_grad.store(on, Ordering::Relaxed)
    }

    /// The accumulated gradient (None before any backward, or after `zero_grad`).
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.get()
    }

    /// Replaces the gradient (optimizers and tests).
    pub fn set_grad(&self, g: Option<Tensor>) {
        self.0.grad.set(g)
    }

    /// Forgets the gradient.
    pub fn zero_grad(&self) {
        self.0.grad.clear()
    }

    /// Registers `hook` to run each time a backward has accumulated this parameter's
    /// gradient, in the middle of the backward (PyTorch's
    /// `register_post_accumulate_grad_hook`; see [`Tensor::register_post_accumulate_grad_hook`]
    /// for when it runs and what it gets). Every tied handle shares the hook. It does
    /// not run while the parameter is frozen (it gets no gradient then).
    pub fn register_post_accumulate_grad_hook(
        &self,
        hook: impl Fn(&Tensor) -> Result<()> + Send + Sync + 'static,
    ) -> crate::autograd::HookHandle {
        self.0.grad.add_hook(Arc::new(hook))
    }

    /// The device of the data (for a deferred param, where it will materialize).
    pub fn device(&self) -> Device {
        if let Some((_, device)) = self.lent() {
            return device;
        }
        match &*self.read() {
            State::Ready(t) => t.device(),
            State::Deferred { device, .. } => device.clone(),
        }
    }

    /// Moves the data (and gradient) to `device`, in place: every tied handle follows.
    pub fn to_device(&self, device: &Device) -> Result<()> {
        self.not_lent("to_device")?;
        let mut st = self.write();
        match &mut *st {
            State::Ready(t) => {
                if &t.device() != device {
                    let moved = t.detach().to_device(device)?;
                    *st = State::Ready(self.leaf(&moved));
                }
            }
            State::Deferred { device: d, .. } => *d = device.clone(),
        }
        drop(st);
        if let Some(g) = self.grad() {
            self.set_grad(Some(g.to_device(device)?));
        }
        Ok(())
    }

    /// An independent copy (new identity, copied data, same requires-grad, no grad).
    ///
    /// # Panics
    ///
    /// From inside [`Param::with_data_mut`]'s closure on this same parameter, where
    /// its data is being written and no copy of it exists (as `RefCell` does on a
    /// conflicting borrow); everywhere else it cannot fail.
    pub fn deep_copy(&self) -> Param {
        if self.lent().is_some() {
            panic!(
                "Param::deep_copy of `{}` inside its own with_data_mut closure",
                self.name()
            );
        }
        let state = match &*self.read() {
            State::Ready(t) => State::Ready(t.detach()),
            State::Deferred {
                shape,
                init,
                key,
                device,
            } => State::Deferred {
                shape: shape.clone(),
                init: init.clone(),
                key: *key,
                device: device.clone(),
            },
        };
        let p = Param::from_state(state);
        // take the data out before writing: a read guard held across `p.write()` (as an
        // `if let` on `p.read()` would) deadlocks
        let ready = match &*p.read() {
            State::Ready(t) => Some(t.clone()),
            State::Deferred { .. } => None,
        };
        if let Some(t) = ready {
            let leaf = p.leaf(&t);
            *p.write() = State::Ready(leaf);
        }
        p.set_requires_grad(self.requires_grad());
        p
    }
}

#[cfg(test)]
#[path = "param_tests.rs"]
mod tests;
