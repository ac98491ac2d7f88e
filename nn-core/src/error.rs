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
    /// A file could not be read or written. `path` is empty when the failing call did
    /// not name a file (an `std::io::Error` converted with `?`).
    #[error("{}{source}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A damaged or hostile tensor/state-dict file: what is wrong with it.
    #[error("{path}: invalid file: {msg}")]
    Format { path: String, msg: String },
    /// A valid file of another kind than the one asked for (a tensor file loaded as a
    /// state dict, a file in neither supported format).
    #[error("{path}: this file holds {found}, expected {expected}")]
    FileKind {
        path: String,
        expected: String,
        found: String,
    },
    /// A value could not be encoded (a user `Serialize` impl failed).
    #[error("{path}: cannot serialize: {msg}")]
    Serialize { path: String, msg: String },
    /// A key looked up in a container (a state dict, a file, a fixture) is absent.
    #[error("{container}: no entry `{key}`")]
    MissingKey { container: String, key: String },
    /// A configuration value (hyperparameter, layer option, name) is out of range.
    #[error("{op}: invalid {field} {value}: {reason}")]
    InvalidConfig {
        op: &'static str,
        field: &'static str,
        value: String,
        reason: String,
    },
    /// An op given no input where it needs at least one (`cat` of no tensors ...).
    #[error("{op}: {what} is empty")]
    EmptyInput { op: &'static str, what: String },
    /// A value of another kind than the one asked for (a layer downcast ...).
    #[error("{what}: expected {expected}, found {found}")]
    WrongType {
        what: String,
        expected: String,
        found: String,
    },
    /// Two computations that should agree do not (gradient checks, reference
    /// comparisons); `what` names the compared quantity.
    #[error("{what}: got {got}, expected {expected}")]
    NotClose {
        what: String,
        got: String,
        expected: String,
    },
    /// An optimizer state that cannot be saved or restored: every problem found.
    #[error("{op}: {}", problems.join("; "))]
    OptimizerState {
        op: &'static str,
        problems: Vec<String>,
    },
    /// An error reported by a device backend (CUDA ...), with the backend's own error
    /// kept as the source.
    #[error("{device}: {source}")]
    Backend {
        device: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A requested device does not exist or is not usable here.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),
    /// A call on a parameter from inside a closure that holds that same parameter's
    /// data (`Param::with_data_mut`): refused instead of deadlocking.
    #[error("{op} on parameter `{param}` from inside with_data_mut on that same parameter (its data is being written); do it after the closure returns")]
    Reentrant {
        /// The refused call.
        op: &'static str,
        /// The parameter's name (its path in the model where known).
        param: String,
    },
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

impl From<std::io::Error> for Error {
    /// An I/O error whose path is unknown at the call site; prefer building
    /// [`Error::Io`] with the path where one is at hand.
    fn from(source: std::io::Error) -> Self {
        Error::Io {
            path: String::new(),
            source,
        }
    }
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

    /// [`Error::Io`] naming the file concerned.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// [`Error::InvalidConfig`].
    pub fn invalid_config(
        op: &'static str,
        field: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            op,
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// [`Error::Backend`] from any backend error.
    pub fn backend(
        device: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            device: device.into(),
            source: source.into(),
        }
    }
}
