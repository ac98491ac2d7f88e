//! `nn`: a PyTorch-style deep-learning library for Rust.
//!
#![doc = include_str!("tutorial.md")]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub use nn_core::*;
/// The CUDA backend (`nn::cuda::device(0)`, `nn::cuda::device_count()`), with the `cuda` feature.
#[cfg(feature = "cuda")]
pub use nn_cuda as cuda;
/// `#[derive(Module)]` (the derive shares the trait's name, like serde's `Serialize`)
/// and `sequential![...]`.
pub use nn_macros::{sequential, Module};
