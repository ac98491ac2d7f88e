//! `nn`: a PyTorch-style deep-learning library for Rust.
pub use nn_core::*;

pub mod data;
pub mod train;
