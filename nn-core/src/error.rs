//! The one error type of nn-core: every failure says what went wrong and where.

use crate::DType;

/// Result alias used across nn-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in nn-core. Variants carry the op, the shapes, the
/// parameter names involved, so a message can be read without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two operands whose shapes do not fit together.
    #[error("{op}: shape mismatch between {lhs:?} and {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// A shape that is invalid for an op on its own (bad axis, bad element count ...).
    #[error("{op}: {msg} (shape {shape:?})")]
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        msg: String,
    },
    /// An op that does not support the given dtype.
    #[error("{op}: unsupported dtype {dtype:?}{}", expected.map(|e| format!(", expected {e:?}")).unwrap_or_default())]
    DType {
        op: &'static str,
        dtype: DType,
        expected: Option<DType>,
    },
    /// Operands live on different devices.
    #[error("{op}: operands are on different devices ({lhs} and {rhs}); move them with .to_device() first")]
    DeviceMismatch {
        op: &'static str,
        lhs: String,
        rhs: String,
    },
    /// A layer received an input whose size does not match what it was built for.
    #[error("{layer}: expected input with {expected}, got shape {actual:?}")]
    InputMismatch {
        layer: String,
        expected: String,
        actual: Vec<usize>,
    },
    /// A parameter whose shape is still deferred was read.
    #[error("parameter `{param}` is not initialized yet (deferred shape); run a forward pass or load a state dict first")]
    Uninitialized { param: String },
    /// Gradient computation failed.
    #[error("backward: {0}")]
    Backward(String),
    /// An index out of range.
    #[error("{op}: index {index} out of range for size {size}")]
    IndexOutOfRange {
        op: &'static str,
        index: i64,
        size: usize,
    },
    /// Loading a state dict failed: all problems are listed together (nothing was loaded).
    #[error("{0}")]
    StateDict(crate::io::LoadReport),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not a valid tensor/state-dict file.
    #[error("{path}: invalid file: {msg}")]
    Format { path: String, msg: String },
    /// An error reported by a device backend (CUDA ...).
    #[error("{device}: {msg}")]
    Backend { device: String, msg: String },
    /// A requested device does not exist or is not usable here.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),
    /// An op that needs at least one input was given none.
    #[error("{op}: no input given (expected at least one tensor)")]
    EmptyInput { op: &'static str },
    /// Anything else, with a message.
    #[error("{0}")]
    Msg(String),
    /// An allocation that the machine cannot satisfy (sizes come from user input).
    #[error("{op}: out of memory allocating {bytes} bytes")]
    OutOfMemory { bytes: u128, op: &'static str },
    /// A training checkpoint that cannot be used as asked ([`crate::io::TrainingCheckpoint`]).
    #[error("training checkpoint{}: {problem}", path.as_ref().map(|p| format!(" {p}")).unwrap_or_default())]
    InvalidCheckpoint {
        /// The file it was read from, when it came from one.
        path: Option<String>,
        /// What is wrong.
        problem: crate::io::CheckpointProblem,
    },
}

impl Error {
    /// Shorthand for [`Error::BadShape`].
    pub fn bad_shape(op: &'static str, shape: &[usize], msg: impl Into<String>) -> Self {
        Error::BadShape {
            op,
            shape: shape.to_vec(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::ShapeMismatch`].
    pub fn mismatch(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Self {
        Error::ShapeMismatch {
            op,
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
        }
    }
}
