//! `nn`: a PyTorch-style deep-learning library for Rust.
//!
#![doc = include_str!("tutorial.md")]

// lets `#[derive(Module)]` (which names `::nn::...`) work inside this crate too
extern crate self as nn;

pub use nn_core::*;
/// `#[derive(Module)]` (the derive shares the trait's name, like serde's `Serialize`)
/// and `sequential![...]`.
pub use nn_macros::{sequential, Module};

pub mod data;
pub mod train;
