//! The one error type of nn-core: every failure says what went wrong and where.

use crate::DType;

mod backward;
pub(crate) mod checkpoint;
#[cfg(feature = "mpi")]
mod distributed;
pub(crate) mod load_report;

pub use backward::BackwardProblem;
#[cfg(feature = "mpi")]
pub use distributed::DistributedProblem;

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
        /// The op that was called.
        op: &'static str,
        /// The shape of the first (left) operand.
        lhs: Vec<usize>,
        /// The shape of the second (right) operand.
        rhs: Vec<usize>,
    },
    /// A shape that is invalid for an op on its own (bad axis, bad element count ...).
    #[error("{op}: {msg} (shape {shape:?})")]
    BadShape {
        /// The op that was called.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// What is wrong with it.
        msg: String,
    },
    /// An op that does not support the given dtype.
    #[error("{op}: unsupported dtype {dtype:?}{}", expected.map(|e| format!(", expected {e:?}")).unwrap_or_default())]
    DType {
        /// The op that was called.
        op: &'static str,
        /// The dtype it was given.
        dtype: DType,
        /// The dtype it needs, when there is exactly one.
        expected: Option<DType>,
    },
    /// Operands live on different devices.
    #[error("{op}: operands are on different devices ({lhs} and {rhs}); move them with .to_device() first")]
    DeviceMismatch {
        /// The op that was called.
        op: &'static str,
        /// The device of the first operand, as displayed (`cpu`, `cuda:0` ...).
        lhs: String,
        /// The device of the second operand, as displayed.
        rhs: String,
    },
    /// A layer received an input whose size does not match what it was built for.
    #[error("{layer}: expected input with {expected}, got shape {actual:?}")]
    InputMismatch {
        /// The layer, by its path in the model where known.
        layer: String,
        /// What the layer accepts, in words (`last dim 784` ...).
        expected: String,
        /// The shape of the input it got.
        actual: Vec<usize>,
    },
    /// A parameter whose shape is still deferred was read.
    #[error("parameter `{param}` is not initialized yet (deferred shape); run a forward pass or load a state dict first")]
    Uninitialized {
        /// The parameter's name (its path in the model where known).
        param: String,
    },
    /// Gradient computation failed: in which op's backward (when one is to blame), and why.
    #[error("backward: {}{problem}", op.map(|o| format!("{o}: ")).unwrap_or_default())]
    Backward {
        /// The op whose backward (or the call) failed; `None` for the sweep as a whole.
        op: Option<&'static str>,
        /// What went wrong.
        problem: BackwardProblem,
    },
    /// An index out of range.
    #[error("{op}: index {index} out of range for size {size}")]
    IndexOutOfRange {
        /// The op that was called.
        op: &'static str,
        /// The index as given (possibly negative).
        index: i64,
        /// The size of the dimension it indexes.
        size: usize,
    },
    /// Loading a state dict failed: all problems are listed together (nothing was loaded).
    #[error("{0}")]
    StateDict(load_report::LoadReport),
    /// A file could not be read or written. `path` is empty when the failing call did
    /// not name a file (an `std::io::Error` converted with `?`).
    #[error("{}{source}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Io {
        /// The file concerned, or empty.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A damaged or hostile tensor/state-dict file: what is wrong with it.
    #[error("{path}: invalid file: {msg}")]
    Format {
        /// The file (or other byte source) that was read.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A valid file of another kind than the one asked for (a tensor file loaded as a
    /// state dict, a file in neither supported format).
    #[error("{path}: this file holds {found}, expected {expected}")]
    FileKind {
        /// The file that was read.
        path: String,
        /// The kind of file the caller asked for.
        expected: String,
        /// The kind of file it holds.
        found: String,
    },
    /// A value could not be encoded (a user `Serialize` impl failed).
    #[error("{path}: cannot serialize: {msg}")]
    Serialize {
        /// The file being written (`<memory>` when encoding to bytes).
        path: String,
        /// The encoder's message.
        msg: String,
    },
    /// A key looked up in a container (a state dict, a file, a fixture) is absent.
    #[error("{container}: no entry `{key}`")]
    MissingKey {
        /// What was searched.
        container: String,
        /// The key that is absent.
        key: String,
    },
    /// A configuration value (hyperparameter, layer option, name) is out of range.
    #[error("{op}: invalid {field} {value}: {reason}")]
    InvalidConfig {
        /// The op, layer or optimizer that was configured.
        op: &'static str,
        /// The name of the setting.
        field: &'static str,
        /// The value it was given, as displayed.
        value: String,
        /// Why the value is rejected (the accepted range ...).
        reason: String,
    },
    /// An op given no input where it needs at least one (`cat` of no tensors ...).
    #[error("{op}: {what} is empty")]
    EmptyInput {
        /// The op that was called.
        op: &'static str,
        /// The input that is empty (`the list of tensors` ...).
        what: String,
    },
    /// A value of another kind than the one asked for (a layer downcast ...).
    #[error("{what}: expected {expected}, found {found}")]
    WrongType {
        /// The value concerned (`DynSequential layer 2` ...).
        what: String,
        /// The type asked for.
        expected: String,
        /// The type it has.
        found: String,
    },
    /// Two computations that should agree do not (gradient checks, reference
    /// comparisons); `what` names the compared quantity.
    #[error("{what}: got {got}, expected {expected}")]
    NotClose {
        /// The compared quantity.
        what: String,
        /// The value computed, as displayed.
        got: String,
        /// The reference value, as displayed.
        expected: String,
    },
    /// An optimizer state that cannot be saved or restored: every problem found.
    #[error("{op}: {}", problems.join("; "))]
    OptimizerState {
        /// The optimizer method that was called (`Adam.state_dict` ...).
        op: &'static str,
        /// One line per problem found.
        problems: Vec<String>,
    },
    /// An error reported by a device backend (CUDA ...), with the backend's own error
    /// kept as the source.
    #[error("{device}: {source}")]
    Backend {
        /// The device that failed, as displayed (`cuda:0` ...).
        device: String,
        /// The backend's own error.
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
    OutOfMemory {
        /// The size of the allocation that failed.
        bytes: u128,
        /// The op that allocated.
        op: &'static str,
    },
    /// A training checkpoint that cannot be used as asked ([`crate::io::TrainingCheckpoint`]).
    #[error("training checkpoint{}: {problem}", path.as_ref().map(|p| format!(" {p}")).unwrap_or_default())]
    InvalidCheckpoint {
        /// The file it was read from, when it came from one.
        path: Option<String>,
        /// What is wrong.
        problem: checkpoint::CheckpointProblem,
    },
    /// A compute op on a storage-only dtype (f16, bf16, f64, i32, u8, bool).
    #[error("{op}: {dtype} tensors are storage only; convert first with .to_dtype(DType::F32)")]
    StorageOnly {
        /// The op that was called.
        op: &'static str,
        /// The tensor's dtype.
        dtype: DType,
    },
    /// A distributed run that cannot go on ([`crate::distributed`], feature `mpi`).
    #[cfg(feature = "mpi")]
    #[error("{op}: {problem}")]
    Distributed {
        /// The call that failed (`all_reduce`, `DistributedDataParallel::new`, `resume` ...).
        op: &'static str,
        /// What is wrong.
        problem: DistributedProblem,
    },
    /// A data set's sample could not be loaded ([`crate::data`]): the index, and why.
    #[error("sample {index}: {source}")]
    Sample {
        /// The sample's index in the data set.
        index: usize,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// User code run by a data loader (a data set's `get`, a collate function, a stream)
    /// panicked; the panic was caught and the loader goes on.
    #[error("data loader: {what} panicked: {msg}")]
    WorkerPanic {
        /// The call that panicked (`dataset.get(17)` ...).
        what: String,
        /// The panic's message.
        msg: String,
    },
    /// An error raised by user code: a custom layer's `forward`, a data set, a training
    /// loop. Build it with [`Error::custom`] (a message) or [`Error::from_source`] (any
    /// error, kept as the source so a caller can downcast it).
    #[error("{message}")]
    Custom {
        /// What went wrong, in the user's words (the source's message for
        /// [`Error::from_source`]).
        message: String,
        /// The user's own error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An op inside a layer failed on that layer's input (`layer1.0.conv1
    /// (Conv2d(...)): conv2d: kernel [3, 3] ... is larger than the padded input`).
    #[error("{layer}: {source}")]
    InLayer {
        /// The layer, by its path in the model where known, and what it is.
        layer: String,
        /// What failed.
        #[source]
        source: Box<Error>,
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

    /// [`Error::Backward`] for the sweep as a whole (no single op to blame).
    pub(crate) fn backward(problem: BackwardProblem) -> Self {
        Error::Backward { op: None, problem }
    }

    /// [`Error::Custom`] with a message: the error a user's own layer (or other code)
    /// returns when none of the other variants fits.
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::{Error, Forward, Result, Tensor};
    ///
    /// /// Divides its input by its L2 norm; an all-zero input has no direction.
    /// struct Normalize;
    ///
    /// impl Forward for Normalize {
    ///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
    ///         let norm = x.square()?.sum()?.sqrt()?.item()?;
    ///         if norm == 0.0 {
    ///             return Err(Error::custom(format!(
    ///                 "Normalize: input of shape {:?} is all zeros",
    ///                 x.shape()
    ///             )));
    ///         }
    ///         x.div_scalar(norm)
    ///     }
    /// }
    ///
    /// # fn main() -> Result<()> {
    /// let err = Normalize.forward(&Tensor::zeros(&[2, 3])).unwrap_err();
    /// assert_eq!(err.to_string(), "Normalize: input of shape [2, 3] is all zeros");
    /// assert!(matches!(err, Error::Custom { source: None, .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn custom(message: impl std::fmt::Display) -> Self {
        Error::Custom {
            message: message.to_string(),
            source: None,
        }
    }

    /// [`Error::Custom`] wrapping the user's own error: its message is this error's
    /// message, and it stays reachable through [`std::error::Error::source`] (downcast it
    /// to get the original value back).
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::{Error, Forward, Result, Tensor};
    ///
    /// /// The user's own error type.
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("lookup table has no row {0}")]
    /// struct NoRow(usize);
    ///
    /// /// Checks that its input's first value is a valid row number.
    /// struct Lookup {
    ///     rows: usize,
    /// }
    ///
    /// impl Forward for Lookup {
    ///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
    ///         let first = x.to_vec::<f32>()?.first().copied().unwrap_or(0.0) as usize;
    ///         if first >= self.rows {
    ///             return Err(Error::from_source(NoRow(first)));
    ///         }
    ///         Ok(x.clone())
    ///     }
    /// }
    ///
    /// # fn main() -> Result<()> {
    /// let err = Lookup { rows: 4 }.forward(&Tensor::from_vec(vec![7.0f32], &[1])?).unwrap_err();
    /// assert_eq!(err.to_string(), "lookup table has no row 7");
    /// let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<NoRow>());
    /// assert_eq!(source.map(|s| s.0), Some(7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_source(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Custom {
            message: source.to_string(),
            source: Some(Box::new(source)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("bad token {0}")]
    struct BadToken(u32);

    #[test]
    fn custom_errors_keep_the_message_and_the_source() {
        let plain = Error::custom("MyLayer: the mask must be boolean");
        assert_eq!(plain.to_string(), "MyLayer: the mask must be boolean");
        assert!(std::error::Error::source(&plain).is_none());

        let wrapped = Error::from_source(BadToken(7));
        assert_eq!(wrapped.to_string(), "bad token 7");
        let source = std::error::Error::source(&wrapped).and_then(|s| s.downcast_ref::<BadToken>());
        assert_eq!(source.map(|s| s.0), Some(7));

        // inside a layer's context, the user's message follows the layer path
        let in_layer = Error::InLayer {
            layer: "encoder.0 (MyLayer)".into(),
            source: Box::new(wrapped),
        };
        assert_eq!(in_layer.to_string(), "encoder.0 (MyLayer): bad token 7");
    }
}
