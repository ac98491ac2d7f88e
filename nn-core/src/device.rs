//! Where a tensor lives.

use crate::backend::DeviceBackend;
use std::fmt;
use std::sync::Arc;

/// A compute device: the CPU, or a GPU provided by a backend crate (`nn-cuda`).
#[derive(Clone)]
pub enum Device {
    /// Host memory, computed with the ndarray/gemm CPU backend.
    Cpu,
    /// A CUDA device (see `nn::cuda`).
    Cuda(Arc<dyn DeviceBackend>),
}

impl Device {
    /// Whether this is the CPU.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
    /// Whether this is a CUDA device.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Cuda(a), Device::Cuda(b)) => a.same(b.as_ref()),
            _ => false,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(d) => f.write_str(&d.name()),
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
