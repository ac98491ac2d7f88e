//! The device handle: one CUDA context, one stream, one cuBLAS handle and the loaded
//! kernel modules per GPU, shared by every tensor on it (opened once per process).

use crate::compile::{compile, Target};
use crate::error::{Error, Result};
use crate::kernels::KernelModule;
use crate::storage::{Buf, CudaStorage};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use nn_core::backend::{DeviceBackend, Storage};
use nn_core::{DType, HostData};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// Element types stored on the device.
pub(crate) trait Elem: DeviceRepr + ValidAsZeroBits + Copy + Send + Sync + 'static {}
impl Elem for f32 {}
impl Elem for i64 {}

/// A CUDA GPU as an nn device. Obtain one with [`crate::device`]; it lives as long as any
/// tensor on it.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    gpu_name: String,
    arch: u32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
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
        let ctx = CudaContext::new(ordinal)?;
        // SAFETY: called before this backend allocates anything in the context; the
        // backend uses a single stream, where cudarc's per-allocation events are pure cost.
        unsafe { ctx.disable_event_tracking() };
        keep_freed_memory_pooled(&ctx);
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())?;
        let (major, minor) = ctx.compute_capability()?;
        let arch = u32::try_from(major * 10 + minor).unwrap_or(0);
        let gpu_name = ctx.name()?;
        let dev = Arc::new_cyclic(|me| CudaDevice {
            ordinal,
            name: format!("cuda:{ordinal}"),
            gpu_name,
            arch,
            ctx,
            stream,
            blas: Mutex::new(blas),
            modules: Mutex::new(HashMap::new()),
            funcs: Mutex::new(HashMap::new()),
            me: me.clone(),
        });
        open.insert(ordinal, dev.clone());
        Ok(dev)
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
        Ok(self.ctx.mem_get_info()?)
    }

    /// `cuda:N`.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Makes this device's context current on the calling thread.
    pub(crate) fn bind(&self) -> Result<()> {
        Ok(self.ctx.bind_to_thread()?)
    }

    pub(crate) fn blas(&self) -> MutexGuard<'_, CudaBlas> {
        lock(&self.blas)
    }

    pub(crate) fn arc(&self) -> Result<Arc<CudaDevice>> {
        self.me.upgrade().ok_or_else(|| Error::Unsupported {
            op: "device",
            msg: "the device handle was dropped".into(),
        })
    }

    /// Device memory for `n` elements (at least one is allocated: zero-byte allocations
    /// fail on some drivers). The contents are unspecified until a kernel writes them;
    /// callers write every element before the slice is read.
    pub(crate) fn alloc<T: Elem>(&self, n: usize) -> Result<CudaSlice<T>> {
        // SAFETY: for f32 and i64 (the only `Elem`s) every bit pattern is a valid value,
        // so even an unwritten element read back is not undefined behaviour in Rust.
        Ok(unsafe { self.stream.alloc::<T>(n.max(1)) }?)
    }

    /// Zero-filled device memory for `n` elements (at least one allocated).
    pub(crate) fn alloc_zeros<T: Elem>(&self, n: usize) -> Result<CudaSlice<T>> {
        Ok(self.stream.alloc_zeros::<T>(n.max(1))?)
    }

    /// The kernel `name` of `module`, compiling (once per process) and loading (once per
    /// device) the module on first use. Prefers a CUBIN for this GPU's exact
    /// architecture; falls back to PTX when that does not load.
    pub(crate) fn func(
        &self,
        module: &'static KernelModule,
        name: &'static str,
    ) -> Result<CudaFunction> {
        if let Some(f) = lock(&self.funcs).get(name) {
            return Ok(f.clone());
        }
        let m = self.module(module)?;
        let f = m.load_function(name)?;
        lock(&self.funcs).insert(name, f.clone());
        Ok(f)
    }

    fn module(&self, module: &'static KernelModule) -> Result<Arc<CudaModule>> {
        let mut mods = lock(&self.modules);
        if let Some(m) = mods.get(module.name) {
            return Ok(m.clone());
        }
        let cubin = compile(module, self.arch, Target::Cubin)
            .and_then(|img| Ok(self.ctx.load_module(Ptx::from_binary(img.to_vec()))?));
        let m = match cubin {
            Ok(m) => m,
            Err(cubin_err) => {
                let img = compile(module, self.arch, Target::Ptx)?;
                self.ctx
                    .load_module(Ptx::from_binary(img.to_vec()))
                    .map_err(|ptx_err| Error::Unsupported {
                        op: "load kernels",
                        msg: format!(
                            "module `{}` loads neither as CUBIN ({cubin_err}) nor as PTX ({ptx_err})",
                            module.name
                        ),
                    })?
            }
        };
        mods.insert(module.name, m.clone());
        Ok(m)
    }

    /// Wraps a device buffer of `len` elements as storage on this device.
    pub(crate) fn storage(&self, buf: Buf, len: usize) -> Result<Storage> {
        Ok(Arc::new(CudaStorage::new(buf, len, self.arc()?)))
    }

    fn upload_impl(&self, data: &HostData) -> Result<Storage> {
        let (buf, len) = match data {
            HostData::F32(v) if v.is_empty() => (Buf::F32(self.alloc_zeros(0)?), 0),
            HostData::I64(v) if v.is_empty() => (Buf::I64(self.alloc_zeros(0)?), 0),
            HostData::F32(v) => (Buf::F32(self.stream.clone_htod(v.as_slice())?), v.len()),
            HostData::I64(v) => (Buf::I64(self.stream.clone_htod(v.as_slice())?), v.len()),
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
            DType::F32 => Buf::F32(self.alloc_zeros(len)?),
            DType::I64 => Buf::I64(self.alloc_zeros(len)?),
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

/// Keeps freed blocks in the stream-ordered pool instead of returning them to the OS at
/// every synchronization (the default threshold 0 makes training loops slow). Best
/// effort: a failure only costs speed.
fn keep_freed_memory_pooled(ctx: &Arc<CudaContext>) {
    use cudarc::driver::{result, sys};
    if !ctx.has_async_alloc() {
        return;
    }
    // SAFETY: the context is current on this thread (CudaContext::new binds it); `thr`
    // outlives the call and is the u64 this attribute expects.
    let r = unsafe {
        result::device::get_default_mem_pool(ctx.cu_device()).and_then(|pool| {
            let mut thr: u64 = u64::MAX;
            result::mem_pool::set_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut thr as *mut u64 as *mut std::ffi::c_void,
            )
        })
    };
    // pooling is an optimisation only: without it allocations still work, just slower
    let _ = r;
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
    /// Waits for the stream, then reports any error cudarc recorded in a drop path
    /// (an asynchronous free that failed) since the last check.
    fn synchronize(&self) -> nn_core::Result<()> {
        self.stream
            .synchronize()
            .and_then(|()| self.ctx.check_err())
            .map_err(|e| Error::from(e).into_core(&self.name))
    }
}
