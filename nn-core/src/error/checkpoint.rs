//! `CheckpointProblem`: what is wrong with a training checkpoint, the payload of
//! [`Error::InvalidCheckpoint`].

#[cfg(doc)]
use crate::Error;

/// The format tag at the start of a training checkpoint's payload (the version is its
/// last part).
pub(crate) const FORMAT: &str = "nn-training-checkpoint/2";

/// What is wrong with a training checkpoint (inside [`Error::InvalidCheckpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointProblem {
    /// A metadata entry that was asked for is absent.
    #[error("no metadata entry `{key}`")]
    MissingMeta {
        /// The key asked for.
        key: String,
    },
    /// A metadata entry holds another kind of value than the one asked for.
    #[error("metadata entry `{key}` is {found}, expected {expected}")]
    MetaType {
        /// The key asked for.
        key: String,
        /// The kind asked for.
        expected: &'static str,
        /// The kind stored.
        found: &'static str,
    },
    /// The file is a plain state dict (what `save_state_dict` or `ModuleExt::save`
    /// write), not a checkpoint.
    #[error("the file holds a plain state dict, not a training checkpoint (load it with ModuleExt::load)")]
    StateDictFile,
    /// The payload starts with another format tag (another program's file, or a newer
    /// version of this format).
    #[error("unknown format `{found}` (this version reads `{FORMAT}`)")]
    UnknownFormat {
        /// The tag found.
        found: String,
    },
}
