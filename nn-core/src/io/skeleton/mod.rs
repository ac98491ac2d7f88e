//! postcard with the native format's tensor table carried in the serializer's and the
//! deserializer's state (never in a thread-local, so encodes and decodes on any threads,
//! or nested in one another, cannot see each other's tables).
//!
//! [`ser`] wraps postcard's serializer: a tensor (the newtype struct
//! `tensor_serde::TOKEN`) is written as `{dtype, shape, data: (offset, length)}`, its
//! data placed in a version-2 file's data section. [`de`] wraps postcard's deserializer:
//! with a data section it reads that form back, checking each reference; without one
//! (version 1) it reads tensors inline as plain postcard does. Both wrappers forward
//! every other call to postcard unchanged, so the bytes are postcard's, and both keep
//! the first error message in their state (postcard reports every custom message as
//! "Serde Deserialization Error").

pub(crate) mod de;
pub(crate) mod ser;
mod table;

use std::cell::RefCell;
use std::fmt;

/// An error that keeps its message.
#[derive(Debug)]
pub(crate) struct Msg(pub(crate) String);

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Msg {}

impl serde::de::Error for Msg {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Msg(msg.to_string())
    }
}

impl serde::ser::Error for Msg {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Msg(msg.to_string())
    }
}

/// The first error message of one encode or decode: the innermost, where it arose
/// (the layers it passes on the way out only see postcard's generic text).
#[derive(Default)]
pub(crate) struct Kept(RefCell<Option<String>>);

impl Kept {
    fn keep(&self, m: &Msg) {
        let mut k = self.0.borrow_mut();
        if k.is_none() {
            *k = Some(m.0.clone());
        }
    }

    /// `m` kept, as the deserializer's own error type.
    pub(crate) fn de<E: serde::de::Error>(&self, m: Msg) -> E {
        self.keep(&m);
        E::custom(m.0)
    }

    /// `m` kept, as the serializer's own error type.
    pub(crate) fn ser<E: serde::ser::Error>(&self, m: Msg) -> E {
        self.keep(&m);
        E::custom(m.0)
    }

    /// The kept message, else `fallback`'s text.
    pub(crate) fn or(self, fallback: impl fmt::Display) -> String {
        self.0.into_inner().unwrap_or_else(|| fallback.to_string())
    }
}

#[cfg(test)]
mod tests;
