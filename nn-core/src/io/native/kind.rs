//! What a native file holds, as a typed answer ([`NativeKind`]), told from its header
//! and payload layout without decoding any tensor: the kind the `nn` command reports
//! and the "this file holds X, expected Y" of a load of the wrong type.

use super::scan::Scan;
use std::fmt;

/// What a sound native file holds, as a whole (see [`crate::io::native_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NativeKind {
    /// A map of name to tensor (a [`crate::StateDict`], `BTreeMap`/`HashMap<String,
    /// Tensor>`): what `ModuleExt::save` and `io::save_state_dict` write.
    StateDict,
    /// A [`crate::io::TrainingCheckpoint`] (either layout: with or without the lr
    /// scheduler's state).
    TrainingCheckpoint,
    /// One [`crate::Tensor`] (`io::save(&tensor)`). Not named `Tensor`: a second public
    /// item of that name makes rustc print `nn::Tensor` instead of `Tensor` in users'
    /// compile errors (the trybuild snapshots in tests/ui/ show them).
    SingleTensor,
    /// A `Vec<Tensor>` (or slice) of this many tensors.
    List(usize),
    /// A tuple or array of this many tensors (two or more).
    Tuple(usize),
    /// A value of some other type (your own serde type): read it with
    /// [`crate::io::load`] as that type.
    Other,
}

impl NativeKind {
    /// The text of an [`crate::Error::FileKind`]'s `found` for the kinds a load of
    /// another type names ("a Tensor", "a Vec<Tensor> (2 tensors)", "a tuple of 2
    /// tensors", "a StateDict"); `None` for the others, whose failed loads stay format
    /// errors.
    pub(super) fn found(self) -> Option<String> {
        match self {
            NativeKind::TrainingCheckpoint | NativeKind::Other => None,
            k => Some(k.to_string()),
        }
    }

    /// The `found` of a state-dict read of another kind of file: also a training
    /// checkpoint (whose loader reads both of its layouts as format errors, so
    /// [`Self::found`] leaves it out).
    pub(super) fn found_by_state_dict_reader(self) -> Option<String> {
        match self {
            NativeKind::Other => None,
            k => Some(k.to_string()),
        }
    }
}

impl fmt::Display for NativeKind {
    /// As a noun phrase: `a StateDict`, `a Vec<Tensor> (3 tensors)`, `a Tensor`, `a tuple
    /// of 2 tensors`, `a TrainingCheckpoint`, `a value of another type`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeKind::StateDict => f.write_str("a StateDict"),
            NativeKind::TrainingCheckpoint => f.write_str("a TrainingCheckpoint"),
            NativeKind::SingleTensor => f.write_str("a Tensor"),
            NativeKind::List(n) => write!(f, "a Vec<Tensor> ({n} tensors)"),
            NativeKind::Tuple(n) => write!(f, "a tuple of {n} tensors"),
            NativeKind::Other => f.write_str("a value of another type"),
        }
    }
}

/// What a payload (a version-1 payload, `refs`: a version-2 skeleton) holds: a state
/// dict, a counted list of tensors, a training checkpoint, one or more tensors back to
/// back (a tensor, a tuple), else [`NativeKind::Other`].
pub(super) fn payload_kind(body: &[u8], refs: bool) -> NativeKind {
    if Scan::over(body, refs).state_dict().is_ok() {
        return NativeKind::StateDict;
    }
    let mut sc = Scan::over(body, refs);
    if let Ok(count) = sc.varint() {
        if (0..count).all(|_| sc.tensor("").is_ok()) && sc.end().is_ok() {
            return NativeKind::List(usize::try_from(count).unwrap_or(usize::MAX));
        }
    }
    if checkpoint(&mut Scan::over(body, refs)).is_ok() {
        return NativeKind::TrainingCheckpoint;
    }
    let mut sc = Scan::over(body, refs);
    let mut count = 0;
    while sc.remaining > 0 {
        if sc.tensor("").is_err() {
            return NativeKind::Other;
        }
        count += 1;
    }
    match count {
        0 => NativeKind::Other,
        1 => NativeKind::SingleTensor,
        k => NativeKind::Tuple(k),
    }
}

/// A training checkpoint's payload (see [`crate::io::TrainingCheckpoint`]'s layout):
/// the format tag, epoch, generator state, metadata, then three state dicts (version
/// 1) or four.
fn checkpoint(sc: &mut Scan<&[u8]>) -> std::result::Result<(), String> {
    let tag = sc.string()?;
    if !tag.starts_with("nn-training-checkpoint/") {
        return Err(format!("format tag `{tag}`"));
    }
    for _ in 0..3 {
        sc.varint()?; // epoch, generator key and default seed
    }
    let metadata = sc.varint()?;
    for _ in 0..metadata {
        sc.string()?;
        match sc.varint()? {
            0 => {
                sc.varint()?;
            }
            1 => {
                sc.string()?;
            }
            v => return Err(format!("metadata variant {v}")),
        }
    }
    for _ in 0..3 {
        sc.entries()?; // model, optimizer, your tensors
    }
    if sc.remaining > 0 {
        sc.entries()?; // the scheduler's (version 2 of the checkpoint layout)
    }
    sc.end()
}

#[cfg(test)]
mod tests;
