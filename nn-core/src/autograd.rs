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

use crate::backend::Storage;
use crate::shape::Dims;
use crate::tensor::Tensor;
use crate::{BackwardProblem, Error, Result};
use smallvec::SmallVec;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// Where a leaf's gradient accumulates; shared by every handle on the same parameter.
#[derive(Default)]
pub struct GradSlot {
    grad: Mutex<Option<Tensor>>,
    mark: Mutex<Mark>,
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
/// leaves every gradient as it was.
pub(crate) fn backward(root: &Tensor, grad: Tensor) -> Result<()> {
    if !root.requires_grad() {
        return Err(Error::backward(BackwardProblem::NotRequiringGrad));
    }
    if root.node().is_none() {
        // a leaf: its gradient is the output gradient
        return match root.grad_slot() {
            Some(slot) => slot.accumulate(grad),
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
    // the root is emitted last
    let mut grads: Vec<Option<Tensor>> = vec![None; order.len()];
    if let Some(last) = grads.last_mut() {
        *last = Some(grad);
    }
    let mut leaves: Vec<(Arc<GradSlot>, Option<Tensor>)> = Vec::new();
    for (idx, t) in order.iter().enumerate().rev() {
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
    for (slot, g) in leaves {
        if let Some(g) = g {
            slot.accumulate(g)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(v: &[f32]) -> Result<Tensor> {
        Ok(Tensor::from_vec(v.to_vec(), &[v.len()])?.with_requires_grad(true))
    }

    /// An op with the value of its input whose backward fails.
    fn failing(x: &Tensor) -> Tensor {
        record(x.storage().clone(), x.shape_dims(), &[x], "failing", || {
            backward_fn(|_, _| Err(Error::custom("failing: on purpose")))
        })
    }

    #[test]
    fn reused_intermediates_sum_their_gradients() -> Result<()> {
        // a = x^2 feeds b = a + a and c = b * a = 2 x^4, so dc/dx = 8 x^3
        let x = leaf(&[1.0, -2.0, 0.5])?;
        let a = x.mul(&x)?;
        let c = a.add(&a)?.mul(&a)?;
        c.sum()?.backward()?;
        let g = x.grad().map(|g| g.to_vec::<f32>()).transpose()?;
        assert_eq!(g, Some(vec![8.0, -64.0, 1.0]));
        Ok(())
    }

    #[test]
    fn a_second_backward_adds_to_the_leaf_and_a_freed_graph_is_an_error() -> Result<()> {
        let x = leaf(&[3.0])?;
        x.mul(&x)?.backward()?;
        let y = x.mul(&x)?;
        y.backward()?;
        assert_eq!(
            x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![12.0])
        );
        let again = y.backward();
        assert!(
            matches!(
                &again,
                Err(Error::Backward {
                    op: None,
                    problem: BackwardProblem::GraphFreed
                })
            ),
            "{again:?}"
        );
        Ok(())
    }

    #[test]
    fn a_failing_backward_leaves_every_gradient_as_it_was() -> Result<()> {
        // x reaches the root through a good path and a failing one; whichever runs first,
        // no slot is written
        let x = leaf(&[1.0, 2.0])?;
        let w = leaf(&[5.0, 6.0])?;
        let root = x.mul(&w)?.add(&failing(&x))?.sum()?;
        assert!(root.backward().is_err());
        assert!(x.grad().is_none() && w.grad().is_none());
        Ok(())
    }

    #[test]
    fn a_leaf_root_gets_the_output_gradient() -> Result<()> {
        let x = leaf(&[1.0, 2.0])?;
        x.backward_with(&Tensor::from_vec(vec![0.5f32, 4.0], &[2])?)?;
        assert_eq!(
            x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
            Some(vec![0.5, 4.0])
        );
        Ok(())
    }
}
