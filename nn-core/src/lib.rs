//! nn-core: tensors with define-by-run autograd, the backend seam with its CPU
//! implementation, and (in later modules) parameters, modules, layers, initializers,
//! optimizers and serialization.
//!
//! Everything fallible returns [`Result`]; errors name the op, the shapes and the
//! parameters involved. Nothing here names a CUDA type: GPU backends plug in through
//! [`backend::DeviceBackend`] and [`backend::BackendStorage`].
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod autograd;
pub mod backend;
pub mod cpu;
pub mod data;
mod device;
#[cfg(feature = "mpi")]
pub mod distributed;
mod dtype;
mod error;
pub mod functional;
pub mod host;
pub mod init;
pub mod io;
pub mod layers;
pub mod module;
mod ops;
pub mod optim;
mod print;
pub mod rng;
pub mod shape;
mod tensor;
pub mod utils;

pub use autograd::{is_grad_enabled, no_grad, NoGradGuard};
pub use device::Device;
pub use dtype::DType;
pub use error::{BackwardProblem, Error, Result};
pub use host::HostData;
pub use init::Init;
pub use io::{LoadOptions, LoadReport};
pub use layers::{
    BceLoss, BceWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, HuberLoss, KlDivLoss,
    L1Loss, MseLoss, NllLoss, SmoothL1Loss,
};
pub use layers::{Dropout, DynSequential, Flatten, Linear, ReLU, Sequential, Sigmoid, Tanh};
pub use layers::{
    Embedding, LayerNorm, MultiheadAttention, TransformerEncoder, TransformerEncoderLayer,
};
pub use module::{Buffer, Forward, Layer, Module, ModuleExt, Param, StateDict};
pub use ops::{Conv2dOptions, Pool2dOptions, Reduction};
pub use optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
pub use rng::manual_seed;
pub use tensor::{Element, Tensor};
