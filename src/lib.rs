//! `nn`: a PyTorch-style deep-learning library for Rust.
pub use nn_core::*;
#[cfg(feature = "cuda")]
pub use nn_cuda as cuda;
