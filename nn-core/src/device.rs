//! Where a tensor lives: the CPU, or a device a backend crate registers.

use crate::backend::{DeviceBackend, Storage};
use crate::{DType, HostData, Result};
use std::fmt;
use std::sync::Arc;

/// A compute device: the CPU, or a device provided by a backend crate (`nn-cuda` gives
/// `cuda:N`). nn-core names no backend: a new one implements
/// [`crate::backend::DeviceBackend`] and [`crate::backend::BackendStorage`] and hands
/// out `Device::Backend` values.
#[derive(Clone)]
pub enum Device {
    /// Host memory, computed with the gemm/matrixmultiply CPU backend.
    Cpu,
    /// A device of a backend crate (a CUDA GPU with `nn::cuda` ...).
    Backend(Arc<dyn DeviceBackend>),
}

impl Device {
    /// Whether this is the CPU.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
    /// Whether this is a CUDA device.
    pub fn is_cuda(&self) -> bool {
        self.kind() == "cuda"
    }
    /// The kind of device: `cpu`, or the backend's kind (`cuda` ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Backend(d) => d.kind(),
        }
    }
    /// The ordinal among devices of its kind (0 for the CPU).
    pub fn ordinal(&self) -> usize {
        match self {
            Device::Cpu => 0,
            Device::Backend(d) => d.ordinal(),
        }
    }
    /// Copies host data into storage on this device (the backend registration point:
    /// the CPU's storage type is named only by the CPU backend).
    pub fn upload(&self, data: HostData) -> Result<Storage> {
        match self {
            Device::Cpu => Ok(crate::cpu::storage(data)),
            Device::Backend(d) => d.upload(&data),
        }
    }
    /// Zero-filled storage of `len` elements on this device; `OutOfMemory` when it
    /// cannot be allocated.
    pub fn zeros(&self, len: usize, dtype: DType) -> Result<Storage> {
        match self {
            Device::Cpu => Ok(crate::cpu::storage(HostData::zeros(len, dtype)?)),
            Device::Backend(d) => d.zeros(len, dtype),
        }
    }
    /// Waits for all work queued on the device (a no-op on the CPU).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Backend(d) => d.synchronize(),
        }
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Backend(a), Device::Backend(b)) => a.same(b.as_ref()),
            _ => false,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Backend(d) => f.write_str(&d.name()),
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
