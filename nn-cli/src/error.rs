//! The command's one error type: every failure names the file it is about.

use std::path::Path;

/// Why a command failed (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The library could not read or write a file (its message names the path).
    #[error(transparent)]
    Nn(#[from] nn_core::Error),
    /// A native file whose checksums hold but whose payload is none of the values nn's
    /// tools write.
    #[error("{path}: an nn native file (format v{version}, checksums verified) holding a value that is not a state dict, a training checkpoint, a tensor or a list or tuple of tensors (a value of your own serde type? read it with nn::io::load::<YourType>)")]
    UnknownPayload {
        /// The file.
        path: String,
        /// The native format version of its header.
        version: u32,
    },
    /// `convert --key` selected nothing.
    #[error(
        "{path}: no tensors under key `{key}` (the keys `nn inspect` lists start with: {tops})"
    )]
    NoTensorsUnderKey {
        /// The file.
        path: String,
        /// The key asked for.
        key: String,
        /// The distinct first parts of the file's keys.
        tops: String,
    },
    /// A dtype name nn does not know.
    #[error("unknown dtype `{0}`")]
    UnknownDType(String),
    /// A tensor listed by the scan was not among the loaded ones.
    #[error("{path}: tensor `{key}` is listed but could not be read back")]
    Vanished {
        /// The file.
        path: String,
        /// The key.
        key: String,
    },
    /// A tensor whose values could not be widened to float64 for comparison.
    #[error("{path}: `{key}` ({dtype}) could not be widened to float64")]
    Widen {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// Its dtype.
        dtype: String,
    },
}

impl CliError {
    /// [`CliError::Vanished`] for `key` of `path`.
    pub fn vanished(path: &Path, key: &str) -> Self {
        CliError::Vanished {
            path: path.display().to_string(),
            key: key.to_string(),
        }
    }
}

/// The result of a command step.
pub type Result<T> = std::result::Result<T, CliError>;
