//! This thread's cache of freed f32 buffers, which CPU tensors are allocated from and
//! given back to. The cache itself lives with host memory (`crate::host::pool`), below
//! the backends; these are its public controls.

pub use crate::host::pool::{cached_bytes, clear};
