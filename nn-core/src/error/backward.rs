//! Why a backward pass failed ([`crate::Error::Backward`]).

/// What went wrong in a backward pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackwardProblem {
    /// `backward` was called on a tensor that is not part of a graph.
    #[error("the output does not require grad: no input of the graph has requires_grad set (or it was built under no_grad)")]
    NotRequiringGrad,
    /// The graph was consumed by an earlier backward (graphs are freed as they are swept).
    #[error("the graph was already freed by an earlier backward; recompute the forward pass")]
    GraphFreed,
    /// An op's backward returned a gradient whose shape is not its input's.
    #[error("gradient shape {grad:?} does not match input shape {input:?}")]
    GradShape {
        /// The shape of the gradient the op's backward returned.
        grad: Vec<usize>,
        /// The shape of the input it is the gradient of.
        input: Vec<usize>,
    },
    /// An input's op was missing from the sweep order (a broken graph invariant).
    #[error("an input's op was not reached by this backward's graph walk")]
    Unreached,
    /// A copy meant to be exclusively owned came back shared (a backend's `deep_copy`
    /// returned a shared handle).
    #[error("a fresh copy is shared (a backend's deep_copy returned a shared handle)")]
    SharedCopy,
    /// A post-accumulate-grad hook was registered on a tensor that has no gradient of
    /// its own: an op's result, or a leaf that does not require grad.
    #[error("post-accumulate-grad hooks need a leaf that requires grad (an op's result or a tensor without requires_grad gets no accumulated gradient)")]
    HookOnNonLeaf,
}
