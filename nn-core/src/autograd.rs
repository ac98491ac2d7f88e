//! Define-by-run reverse-mode autograd.
//!
//! An op whose inputs require grad (while grad mode is on) records a node: a closure
//! computing the input gradients from the output gradient, plus the inputs. `backward`
//! walks the recorded graph in reverse topological order, sums gradients of tensors used
//! several times, accumulates into leaves' [`GradSlot`]s and frees every node it visits.
//! With nothing requiring grad, an op costs one thread-local read and no allocation.

use crate::backend::Storage;
use crate::shape::Dims;
use crate::tensor::Tensor;
use crate::{Error, Result};
use smallvec::SmallVec;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;

/// The gradients of an op's inputs (None where an input gets none).
pub type Grads = Vec<Option<Tensor>>;

/// Computes input gradients from the inputs and the output gradient.
pub(crate) type BackwardFn = Box<dyn Fn(&[Tensor], &Tensor) -> Result<Grads> + Send + Sync>;

/// Boxes a backward closure.
pub(crate) fn backward_fn(
    f: impl Fn(&[Tensor], &Tensor) -> Result<Grads> + Send + Sync + 'static,
) -> BackwardFn {
    Box::new(f)
}

/// One recorded op.
pub(crate) struct Node {
    name: &'static str,
    inputs: SmallVec<[Tensor; 2]>,
    backward: BackwardFn,
}

/// Where a leaf's gradient accumulates; shared by every handle on the same parameter.
#[derive(Default)]
pub struct GradSlot(Mutex<Option<Tensor>>);

impl GradSlot {
    /// The current gradient.
    pub fn get(&self) -> Option<Tensor> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Forgets the gradient.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
    /// Replaces the gradient.
    pub fn set(&self, g: Option<Tensor>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = g;
    }
    fn accumulate(&self, g: Tensor) -> Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(match slot.take() {
            Some(prev) => prev.add(&g)?,
            None => g,
        });
        Ok(())
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record the graph on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` with graph recording off (PyTorch's `torch.no_grad()`): inference keeps no
/// graph and no memory for backward.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = NoGradGuard::new();
    f()
}

/// Turns graph recording off until dropped.
pub struct NoGradGuard {
    prev: bool,
}

impl NoGradGuard {
    /// Disables recording on this thread.
    pub fn new() -> Self {
        let prev = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { prev }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        let prev = self.prev;
        GRAD_ENABLED.with(|g| g.set(prev));
    }
}

/// Builds the result tensor of an op, recording a node when some input requires grad.
/// `make` is only called when a node is recorded.
pub(crate) fn record(
    storage: Storage,
    shape: Dims,
    inputs: &[&Tensor],
    name: &'static str,
    make: impl FnOnce() -> BackwardFn,
) -> Tensor {
    let track = inputs.iter().any(|t| t.requires_grad()) && is_grad_enabled();
    if !track {
        return Tensor::leaf(storage, shape);
    }
    let node = Node {
        name,
        inputs: inputs.iter().map(|t| (*t).clone()).collect(),
        backward: make(),
    };
    Tensor::from_op(storage, shape, node)
}

fn key(t: &Tensor) -> usize {
    t.node_id()
}

/// Reverse-mode sweep from `root` with output gradient `grad`.
pub(crate) fn backward(root: &Tensor, grad: Tensor) -> Result<()> {
    if !root.requires_grad() {
        return Err(Error::Backward(
            "the output does not require grad: no input of the graph has requires_grad set (or it was built under no_grad)".into(),
        ));
    }
    // iterative DFS post-order: children before parents
    let mut order: Vec<Tensor> = Vec::new();
    let mut seen: HashMap<usize, ()> = HashMap::new();
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if seen.insert(key(&t), ()).is_some() {
            continue;
        }
        let children: SmallVec<[Tensor; 2]> = match t.node() {
            Some(cell) => {
                let guard = cell.lock().unwrap_or_else(|e| e.into_inner());
                match guard.as_ref() {
                    Some(n) => n.inputs.clone(),
                    None => {
                        return Err(Error::Backward(
                            "the graph was already freed by an earlier backward; recompute the forward pass".into(),
                        ))
                    }
                }
            }
            None => SmallVec::new(),
        };
        stack.push((t, true));
        for c in children {
            if c.requires_grad() && !seen.contains_key(&key(&c)) {
                stack.push((c, false));
            }
        }
    }
    let _ng = NoGradGuard::new();
    let mut grads: HashMap<usize, Tensor> = HashMap::new();
    grads.insert(key(root), grad);
    for t in order.iter().rev() {
        let Some(g) = grads.remove(&key(t)) else {
            continue;
        };
        if let Some(slot) = t.grad_slot() {
            slot.accumulate(g.clone())?;
        }
        let Some(cell) = t.node() else { continue };
        let node = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(node) = node else { continue };
        let input_grads = (node.backward)(&node.inputs, &g)?;
        for (inp, ig) in node.inputs.iter().zip(input_grads) {
            let Some(ig) = ig else { continue };
            if !inp.requires_grad() {
                continue;
            }
            if ig.shape() != inp.shape() {
                return Err(Error::Backward(format!(
                    "{}: gradient shape {:?} does not match input shape {:?}",
                    node.name,
                    ig.shape(),
                    inp.shape()
                )));
            }
            let k = key(inp);
            let acc = match grads.remove(&k) {
                Some(prev) => prev.add(&ig)?,
                None => ig,
            };
            grads.insert(k, acc);
        }
    }
    Ok(())
}
