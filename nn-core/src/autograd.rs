//! Define-by-run reverse-mode autograd.
//!
//! An op whose inputs require grad (while grad mode is on) records a node: a closure
//! computing the input gradients from the output gradient, plus the inputs. `backward`
//! walks the recorded graph in reverse topological order, sums gradients of tensors used
//! several times, accumulates into leaves' [`GradSlot`]s and frees every node it visits.
//! With nothing requiring grad, an op costs one thread-local read and no allocation.
//!
//! The sweep uses no hash maps: each backward call takes a fresh run id, and the graph
//! walk stamps every node (and every leaf's slot) it reaches with that id and its index in
//! the sweep's own gradient vectors, so finding where a gradient goes is a field read.
//!
//! A leaf may carry post-accumulate-grad hooks ([`Tensor::register_post_accumulate_grad_hook`],
//! PyTorch's `register_post_accumulate_grad_hook`): the sweep then accumulates that leaf
//! as soon as its last consumer has been swept and calls its hooks right there, in the
//! middle of backward (how data-parallel training starts a gradient's all-reduce while
//! the rest of backward runs). While no hook exists anywhere, the sweep is unchanged.

use crate::backend::Storage;
use crate::shape::Dims;
use crate::tensor::Tensor;
use crate::{BackwardProblem, Error, Result};
use smallvec::SmallVec;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

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
    /// Inline up to three (a linear layer: input, weight, bias).
    inputs: SmallVec<[Tensor; 3]>,
    backward: BackwardFn,
    /// The backward run that reached this node last, and its index in that run's sweep.
    mark: Mark,
}

/// A run id and an index into that run's vectors (run 0: never reached).
#[derive(Default, Clone, Copy)]
struct Mark {
    run: u64,
    index: usize,
}

/// Backward run ids: unique per call, so a mark left by another run never matches.
static RUNS: AtomicU64 = AtomicU64::new(1);

/// A post-accumulate-grad hook: called with the leaf's gradient once it holds everything
/// one backward accumulates into it. An `Err` stops the backward and is what it returns.
pub type PostAccumulateGradHook = Arc<dyn Fn(&Tensor) -> Result<()> + Send + Sync>;

/// Hooks registered and not removed, process-wide: 0 keeps the sweep free of hook work.
static LIVE_HOOKS: AtomicUsize = AtomicUsize::new(0);

/// Hook ids, unique per process.
static HOOK_IDS: AtomicU64 = AtomicU64::new(1);

/// Where a leaf's gradient accumulates; shared by every handle on the same parameter.
#[derive(Default)]
pub struct GradSlot {
    grad: Mutex<Option<Tensor>>,
    mark: Mutex<Mark>,
    hooks: Mutex<Vec<(u64, PostAccumulateGradHook)>>,
}

impl Drop for GradSlot {
    fn drop(&mut self) {
        let n = self.hooks.get_mut().map_or(0, |h| h.len());
        LIVE_HOOKS.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Removes a hook registered with [`Tensor::register_post_accumulate_grad_hook`] or
/// [`crate::Param::register_post_accumulate_grad_hook`] (PyTorch's `RemovableHandle`).
/// Dropping the handle keeps the hook.
#[derive(Debug, Clone)]
#[must_use = "dropping the handle keeps the hook; keep it to remove the hook later"]
pub struct HookHandle {
    slot: Weak<GradSlot>,
    id: u64,
}

impl HookHandle {
    /// Removes the hook (nothing happens if it is gone already).
    pub fn remove(&self) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        let mut hooks = slot.hooks.lock().unwrap_or_else(|e| e.into_inner());
        let before = hooks.len();
        hooks.retain(|(id, _)| *id != self.id);
        LIVE_HOOKS.fetch_sub(before - hooks.len(), Ordering::Relaxed);
    }
}

impl GradSlot {
    /// The current gradient.
    pub fn get(&self) -> Option<Tensor> {
        self.grad.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Forgets the gradient.
    pub fn clear(&self) {
        *self.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
    /// Replaces the gradient.
    pub fn set(&self, g: Option<Tensor>) {
        *self.grad.lock().unwrap_or_else(|e| e.into_inner()) = g;
    }
    /// This slot's index among run `run`'s leaves, stamping it with `next` if the run has
    /// not reached it yet. Returns the index and whether it is new.
    fn index_in(&self, run: u64, next: usize) -> (usize, bool) {
        let mut m = self.mark.lock().unwrap_or_else(|e| e.into_inner());
        if m.run == run {
            (m.index, false)
        } else {
            *m = Mark { run, index: next };
            (next, true)
        }
    }
    fn accumulate(&self, g: Tensor) -> Result<()> {
        let mut slot = self.grad.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(match slot.take() {
            Some(prev) => prev.add(&g)?,
            None => g,
        });
        Ok(())
    }

    /// Adds `hook` to the slot's post-accumulate-grad hooks.
    pub(crate) fn add_hook(self: &Arc<Self>, hook: PostAccumulateGradHook) -> HookHandle {
        let id = HOOK_IDS.fetch_add(1, Ordering::Relaxed);
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, hook));
        LIVE_HOOKS.fetch_add(1, Ordering::Relaxed);
        HookHandle {
            slot: Arc::downgrade(self),
            id,
        }
    }

    fn has_hooks(&self) -> bool {
        !self
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Accumulates `g` and calls the hooks with the total; returns the gradient held
    /// before, for a restore if the backward fails later.
    fn accumulate_and_notify(&self, g: Tensor) -> Result<Option<Tensor>> {
        let before = self.get();
        self.accumulate(g)?;
        // called without the lock held: a hook may read or replace the gradient, or
        // register and remove hooks
        let hooks: Vec<PostAccumulateGradHook> = self
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, h)| h.clone())
            .collect();
        for hook in hooks {
            if let Some(total) = self.get() {
                hook(&total)?;
            }
        }
        Ok(before)
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
        mark: Mark::default(),
    };
    Tensor::from_op(storage, shape, node)
}

/// Adds `g` to an optional running sum.
fn add_to(sum: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *sum = Some(match sum.take() {
        Some(prev) => prev.add(&g)?,
        None => g,
    });
    Ok(())
}

/// The freed-graph error.
fn freed() -> Error {
    Error::backward(BackwardProblem::GraphFreed)
}

fn lock(cell: &Mutex<Option<Node>>) -> std::sync::MutexGuard<'_, Option<Node>> {
    cell.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reverse-mode sweep from `root` with output gradient `grad`.
///
/// Leaves' slots are written only after every node's backward succeeded, so an error
/// leaves every gradient as it was. Hooked leaves are written during the sweep (their
/// hooks see the total); if the backward fails afterwards they get back the gradient
/// they held before (what their hooks did stays done).
pub(crate) fn backward(root: &Tensor, grad: Tensor) -> Result<()> {
    if !root.requires_grad() {
        return Err(Error::backward(BackwardProblem::NotRequiringGrad));
    }
    if root.node().is_none() {
        // a leaf: its gradient is the output gradient
        return match root.grad_slot() {
            Some(slot) => {
                let before = slot.get();
                slot.accumulate_and_notify(grad).map(drop).inspect_err(|_| {
                    slot.set(before);
                })
            }
            None => Ok(()),
        };
    }
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    // Iterative DFS post-order over op results, children before parents. A node counts as
    // visited when it is popped for expansion (stamped with `run`), so a node reached again
    // through a later parent is expanded above that parent and still precedes it.
    let mut order: Vec<Tensor> = Vec::new();
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        let Some(cell) = t.node() else { continue };
        let children = {
            let mut guard = lock(cell);
            let node = guard.as_mut().ok_or_else(freed)?;
            if expanded {
                node.mark.index = order.len();
                drop(guard);
                order.push(t);
                continue;
            }
            if node.mark.run == run {
                continue;
            }
            node.mark = Mark { run, index: 0 };
            node.inputs.clone()
        };
        stack.push((t, true));
        for c in children {
            let unseen = match c.node() {
                Some(cc) => lock(cc).as_ref().is_none_or(|n| n.mark.run != run),
                None => false,
            };
            if c.requires_grad() && unseen {
                stack.push((c, false));
            }
        }
    }
    let _ng = NoGradGuard::new();
    let mut leaves: Vec<(Arc<GradSlot>, Option<Tensor>)> = Vec::new();
    let mut due = if LIVE_HOOKS.load(Ordering::Relaxed) > 0 {
        hooked_leaves(&order, run, &mut leaves)?
    } else {
        Vec::new()
    };
    // hooked leaves accumulated so far, with their gradients before this backward
    let mut done: Vec<(Arc<GradSlot>, Option<Tensor>)> = Vec::new();
    let swept = sweep(&order, grad, run, &mut leaves, &mut due, &mut done);
    if let Err(e) = swept {
        for (slot, before) in done {
            slot.set(before);
        }
        return Err(e);
    }
    for (slot, g) in leaves {
        if let Some(g) = g {
            slot.accumulate(g)?;
        }
    }
    Ok(())
}

/// The hooked leaves among `order`'s inputs, stamped into `leaves`, each with the sweep
/// index of its last consumer (the smallest index that has it as an input), in
/// increasing index order: the sweep runs from the end, so it pops them from the back.
fn hooked_leaves(
    order: &[Tensor],
    run: u64,
    leaves: &mut Vec<(Arc<GradSlot>, Option<Tensor>)>,
) -> Result<Vec<(usize, usize)>> {
    let mut due = Vec::new();
    for (idx, t) in order.iter().enumerate() {
        let Some(cell) = t.node() else { continue };
        let guard = lock(cell);
        let node = guard.as_ref().ok_or_else(freed)?;
        for inp in &node.inputs {
            if inp.node().is_some() || !inp.requires_grad() {
                continue;
            }
            let Some(slot) = inp.grad_slot() else {
                continue;
            };
            if !slot.has_hooks() {
                continue;
            }
            let (j, new) = slot.index_in(run, leaves.len());
            if new {
                leaves.push((slot.clone(), None));
                due.push((idx, j));
            }
        }
    }
    Ok(due)
}

/// Accumulates hooked leaf `j` (if it got a gradient) and calls its hooks.
fn notify(
    leaves: &mut [(Arc<GradSlot>, Option<Tensor>)],
    j: usize,
    done: &mut Vec<(Arc<GradSlot>, Option<Tensor>)>,
) -> Result<()> {
    let Some((slot, sum)) = leaves.get_mut(j) else {
        return Ok(());
    };
    let Some(g) = sum.take() else { return Ok(()) };
    let slot = slot.clone();
    let before = slot.get();
    done.push((slot.clone(), before));
    slot.accumulate_and_notify(g).map(drop)
}

/// The sweep proper: every node's backward, from the root (the last of `order`) down;
/// plain leaves' sums are left in `leaves`, hooked ones are accumulated and notified as
/// soon as their last consumer is swept (`due`, see [`hooked_leaves`]).
fn sweep(
    order: &[Tensor],
    grad: Tensor,
    run: u64,
    leaves: &mut Vec<(Arc<GradSlot>, Option<Tensor>)>,
    due: &mut Vec<(usize, usize)>,
    done: &mut Vec<(Arc<GradSlot>, Option<Tensor>)>,
) -> Result<()> {
    // the root is emitted last
    let mut grads: Vec<Option<Tensor>> = vec![None; order.len()];
    if let Some(last) = grads.last_mut() {
        *last = Some(grad);
    }
    for (idx, t) in order.iter().enumerate().rev() {
        while let Some(&(last, j)) = due.last() {
            if last <= idx {
                break;
            }
            due.pop();
            notify(leaves, j, done)?;
        }
        let Some(g) = grads.get_mut(idx).and_then(Option::take) else {
            continue;
        };
        let Some(cell) = t.node() else { continue };
        let Some(node) = lock(cell).take() else {
            continue;
        };
        let input_grads = (node.backward)(&node.inputs, &g)?;
        for (inp, ig) in node.inputs.iter().zip(input_grads) {
            let Some(ig) = ig else { continue };
            if !inp.requires_grad() {
                continue;
            }
            if ig.shape() != inp.shape() {
                return Err(Error::Backward {
                    op: Some(node.name),
                    problem: BackwardProblem::GradShape {
                        grad: ig.shape().to_vec(),
                        input: inp.shape().to_vec(),
                    },
                });
            }
            if let Some(cc) = inp.node() {
                // an input precedes its consumer in `order`, so it is not yet swept
                let mark = lock(cc).as_ref().map(|n| n.mark);
                let sum = mark
                    .filter(|m| m.run == run && m.index < idx)
                    .and_then(|m| grads.get_mut(m.index))
                    .ok_or(Error::Backward {
                        op: Some(node.name),
                        problem: BackwardProblem::Unreached,
                    })?;
                add_to(sum, ig)?;
            } else if let Some(slot) = inp.grad_slot() {
                let (j, new) = slot.index_in(run, leaves.len());
                if new {
                    leaves.push((slot.clone(), None));
                }
                if let Some((_, sum)) = leaves.get_mut(j) {
                    add_to(sum, ig)?;
                }
            }
        }
    }
    while let Some((_, j)) = due.pop() {
        notify(leaves, j, done)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
