//! The device handle: a GPU's runtime (context, stream, cuBLAS handle, loaded kernels)
//! with its name, shared by every tensor on it (opened once per process).

use crate::error::{Error, Result};
use crate::runtime::cuda::CudaRt;
use crate::runtime::{Driver, Runtime};
use crate::storage::{Buf, CudaStorage};
use nn_core::backend::{DeviceBackend, Storage};
use nn_core::{DType, HostData};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// A CUDA GPU as an nn device. Obtain one with [`crate::device`]; it lives as long as any
/// tensor on it.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    gpu_name: String,
    arch: u32,
    rt: Arc<Runtime>,
    me: Weak<CudaDevice>,
}

impl fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, sm_{})", self.name, self.gpu_name, self.arch)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CudaDevice {
    /// The device with index `ordinal`, opened on first use and shared afterwards.
    /// Checks the driver, NVRTC and cuBLAS libraries before touching cudarc, so a missing
    /// library is an error, never a panic.
    pub fn open(ordinal: usize) -> Result<Arc<CudaDevice>> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
        let mut open = lock(OPEN.get_or_init(|| Mutex::new(HashMap::new())));
        if let Some(d) = open.get(&ordinal) {
            return Ok(d.clone());
        }
        crate::probe::check_device(ordinal)?;
        let (rt, gpu_name, arch) = CudaRt::open(ordinal)?;
        let dev = Self::with_runtime(
            ordinal,
            format!("cuda:{ordinal}"),
            gpu_name,
            arch,
            Runtime::Cuda(rt),
        );
        open.insert(ordinal, dev.clone());
        Ok(dev)
    }

    fn with_runtime(
        ordinal: usize,
        name: String,
        gpu_name: String,
        arch: u32,
        rt: Runtime,
    ) -> Arc<CudaDevice> {
        let rt = Arc::new(rt);
        Arc::new_cyclic(|me| CudaDevice {
            ordinal,
            name,
            gpu_name,
            arch,
            rt,
            me: me.clone(),
        })
    }

    /// The host-run CUDA backend of nn's own tests (feature `host-runtime`, never in a
    /// user's build): the real kernel sources and launches, executed on the CPU with
    /// bounds-checked buffers, cuBLAS answered by a reference GEMM. Named `cuda:host`;
    /// `mutant` gives a second device whose `copy` module has one index expression
    /// deliberately broken (`cuda:host-mutant`), for the test that shows the device
    /// suite catches such a bug.
    #[cfg(feature = "host-runtime")]
    pub fn host(mutant: bool) -> Arc<CudaDevice> {
        static HOST: OnceLock<[Arc<CudaDevice>; 2]> = OnceLock::new();
        let devs = HOST.get_or_init(|| {
            [false, true].map(|m| {
                let rt = Runtime::Host(crate::runtime::host::HostRt::new(m));
                let name = if m { "cuda:host-mutant" } else { "cuda:host" };
                Self::with_runtime(0, name.into(), "host runtime (tests only)".into(), 0, rt)
            })
        });
        devs[usize::from(mutant)].clone()
    }

    /// The GPU's product name (`NVIDIA H100 80GB HBM3`).
    pub fn gpu_name(&self) -> &str {
        &self.gpu_name
    }

    /// Compute capability as one number (`90` for sm_90).
    pub fn arch(&self) -> u32 {
        self.arch
    }

    /// Free and total device memory in bytes.
    pub fn memory_info(&self) -> Result<(usize, usize)> {
        match self.rt.as_ref() {
            Runtime::Cuda(rt) => rt.memory_info(),
            #[cfg(feature = "host-runtime")]
            Runtime::Host(_) => Err(Error::Unsupported {
                op: "memory_info",
                msg: "the host runtime has no device memory".into(),
            }),
        }
    }

    /// `cuda:N`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The cudarc runtime of a GPU (`None` for the host runtime of the tests).
    #[cfg_attr(not(feature = "nccl"), allow(dead_code))]
    pub(crate) fn cuda(&self) -> Option<&CudaRt> {
        match self.rt.as_ref() {
            Runtime::Cuda(rt) => Some(rt),
            #[cfg(feature = "host-runtime")]
            Runtime::Host(_) => None,
        }
    }

    /// The runtime every op on this device goes through.
    #[cfg_attr(not(feature = "nccl"), allow(dead_code))]
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.rt
    }

    pub(crate) fn arc(&self) -> Result<Arc<CudaDevice>> {
        self.me.upgrade().ok_or_else(|| Error::Unsupported {
            op: "device",
            msg: "the device handle was dropped".into(),
        })
    }

    /// Wraps a device buffer of `len` elements as storage on this device.
    pub(crate) fn storage(&self, buf: Buf, len: usize) -> Result<Storage> {
        let dev: Arc<dyn DeviceBackend> = self.arc()?;
        Ok(Arc::new(CudaStorage::new(buf, len, dev, self.rt.clone())))
    }

    fn upload_impl(&self, data: &HostData) -> Result<Storage> {
        let (buf, len) = match data {
            HostData::F32(v) => (Buf::F32(self.rt.htod(v.as_slice())?), v.len()),
            HostData::I64(v) => (Buf::I64(self.rt.htod(v.as_slice())?), v.len()),
            other => {
                return Err(Error::Core(nn_core::Error::StorageOnly {
                    op: "upload to CUDA",
                    dtype: other.dtype(),
                }))
            }
        };
        self.storage(buf, len)
    }

    fn zeros_impl(&self, len: usize, dtype: DType) -> Result<Storage> {
        let buf = match dtype {
            DType::F32 => Buf::F32(self.rt.alloc(len, true)?),
            DType::I64 => Buf::I64(self.rt.alloc(len, true)?),
            other => {
                return Err(Error::Core(nn_core::Error::StorageOnly {
                    op: "zeros on CUDA",
                    dtype: other,
                }))
            }
        };
        self.storage(buf, len)
    }
}

impl DeviceBackend for CudaDevice {
    fn kind(&self) -> &'static str {
        "cuda"
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn ordinal(&self) -> usize {
        self.ordinal
    }
    fn upload(&self, data: &HostData) -> nn_core::Result<Storage> {
        self.upload_impl(data).map_err(|e| e.into_core(&self.name))
    }
    fn zeros(&self, len: usize, dtype: DType) -> nn_core::Result<Storage> {
        self.zeros_impl(len, dtype)
            .map_err(|e| e.into_core(&self.name))
    }
    /// Two handles are one device when kind, ordinal and name agree (the tests' host
    /// runtime is `cuda:host`, never `cuda:0`).
    fn same(&self, other: &dyn DeviceBackend) -> bool {
        self.kind() == other.kind()
            && self.ordinal() == other.ordinal()
            && self.name == other.name()
    }
    /// Waits for the stream, then reports any error cudarc recorded in a drop path
    /// (an asynchronous free that failed) since the last check.
    fn synchronize(&self) -> nn_core::Result<()> {
        self.rt.synchronize().map_err(|e| e.into_core(&self.name))
    }
}
