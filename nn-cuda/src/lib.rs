//! nn-cuda: the CUDA backend for `nn`, on cudarc.
//!
//! It implements nn-core's [`nn_core::backend::BackendStorage`] and
//! [`nn_core::backend::DeviceBackend`] for NVIDIA GPUs: matrix products on cuBLAS,
//! everything else in kernels compiled at run time by NVRTC (once per process) and
//! loaded once per device. Because nn-core writes backward passes with tensor ops, both
//! forward and backward run on the GPU.
//!
//! Nothing CUDA is needed to build: the CUDA libraries are loaded when first used, and
//! every entry point checks they are present first, so a machine without a GPU gets an
//! `Err` with a readable message, never a panic.
//!
//! # Running on a GPU
//!
//! The driver (`libcuda.so.1`) comes with the NVIDIA driver; NVRTC and cuBLAS come from a
//! CUDA 13 toolkit or the PyPI wheels (`pip install nvidia-cuda-nvrtc nvidia-cublas`,
//! whose libraries sit in `site-packages/nvidia/cu13/lib`); put their directory on
//! `LD_LIBRARY_PATH`. Kernels are compiled to a CUBIN for the GPU's own architecture
//! (`sm_90` on an H100), with PTX as the fallback. The device tests of the `nn` facade
//! (`cargo test --features cuda --test devices`) skip without a GPU and fail instead when
//! `NN_CUDA_REQUIRE=1`; the kernel compile test needs only libnvrtc, and fails instead of
//! skipping when `NN_NVRTC_REQUIRE=1`.
//!
//! # Testing without a GPU
//!
//! nn's own tests run every kernel and launch of this crate on a *host runtime* (feature
//! `host-runtime`, enabled only by the `nn` package's dev-dependency, never in a user's
//! build): the same `.cu` sources compiled as C++ by the build script, run with the
//! grids, blocks and arguments this crate computes, each thread of a block a fiber
//! meeting the others at `__syncthreads`, every buffer access bounds-checked, cuBLAS
//! answered by a reference GEMM. The crate is layered so that this is one seam:
//! `runtime` (cudarc, or the host) -> `kernels` -> `storage` -> `device`.
//!
//! # Several GPUs
//!
//! With the `nccl` feature, `nccl::NcclEngine` moves CUDA tensors of an
//! `nn_core::distributed::ProcessGroup` (one process per GPU, started by `mpirun`) through
//! NCCL: all-reduce, broadcast and all-gather device to device, and so
//! `DistributedDataParallel`'s gradient averaging. libnccl is loaded at run time, like the
//! other CUDA libraries; without it the engine's constructor is an error on every rank.
//!
//! ```
//! use nn_core::{Device, Tensor};
//! // PyTorch's `torch.cuda.device_count()` and `try_gpu()`.
//! let n = nn_cuda::device_count();
//! let dev = nn_cuda::try_device(0);
//! let x = Tensor::ones(&[2, 3]).to_device(&dev)?;
//! assert_eq!(x.device(), dev);
//! if n == 0 {
//!     assert_eq!(dev, Device::Cpu);
//!     assert!(nn_cuda::device(0).is_err());
//! }
//! # Ok::<(), nn_core::Error>(())
//! ```
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod compile;
mod device;
mod error;
pub mod kernels;
pub mod layout;
#[cfg(any(feature = "nccl", feature = "host-runtime"))]
pub mod nccl;
mod probe;
mod runtime;
mod storage;

pub use compile::{compile, nvrtc_version, Image, Target};
pub use device::CudaDevice;
pub use error::{Error, Result};
pub use probe::{cublas_present, driver_present, nvrtc_present};
pub use storage::CudaStorage;

use nn_core::Device;

/// Number of CUDA devices on this machine (0 without an NVIDIA driver or GPU), like
/// `torch.cuda.device_count()`. Never panics.
pub fn device_count() -> usize {
    probe::device_count()
}

/// Whether a CUDA device can be used: a GPU, its driver, NVRTC and cuBLAS are all there.
pub fn is_available() -> bool {
    device_count() > 0 && nvrtc_present() && cublas_present()
}

/// The CUDA device with index `ordinal` (`cuda:0`, `cuda:1`, ...), like
/// `torch.device("cuda:0")`. An error, never a panic, when it does not exist or a CUDA
/// library is missing.
pub fn device(ordinal: usize) -> nn_core::Result<Device> {
    CudaDevice::open(ordinal)
        .map(|d| Device::Backend(d))
        .map_err(|e| e.into_core(&format!("cuda:{ordinal}")))
}

/// GPU `ordinal` when it exists, the CPU otherwise (the book's `try_gpu(i)`).
pub fn try_device(ordinal: usize) -> Device {
    device(ordinal).unwrap_or(Device::Cpu)
}

/// The host-run CUDA backend of nn's own test suite (feature `host-runtime`, which only
/// nn's tests enable; not a device for users): nn-cuda's real kernel sources and launches
/// executed on the CPU, with every buffer access bounds-checked and cuBLAS answered by a
/// reference GEMM, so CI runs the CUDA code paths on machines without a GPU. Speed, the
/// driver's own behaviour and NVRTC's code generation show only on a real GPU.
#[cfg(feature = "host-runtime")]
pub fn host_device() -> Device {
    Device::Backend(CudaDevice::host(false))
}

/// [`host_device`] with one index expression of the `copy` module deliberately broken:
/// the mutation test shows the device suite fails on it.
#[cfg(feature = "host-runtime")]
pub fn host_mutant_device() -> Device {
    Device::Backend(CudaDevice::host(true))
}

/// How many times each kernel has run on the host runtime in this process, by name
/// (tests only: the coverage test checks that every kernel of
/// [`kernels::ALL_MODULES`] ran).
#[cfg(feature = "host-runtime")]
pub fn host_launch_counts() -> std::collections::BTreeMap<&'static str, u64> {
    runtime::host::launch_counts()
}

/// Every usable GPU, or `[cpu]` when there is none (the book's `try_all_gpus()`).
pub fn all_devices() -> Vec<Device> {
    let gpus: Vec<Device> = (0..device_count()).filter_map(|i| device(i).ok()).collect();
    if gpus.is_empty() {
        vec![Device::Cpu]
    } else {
        gpus
    }
}
