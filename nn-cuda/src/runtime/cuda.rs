//! The real runtime: one CUDA context, its stream and cuBLAS handle, and the kernel
//! modules compiled by NVRTC and loaded once per device, all driven through cudarc.

#[cfg(feature = "host-runtime")]
use super::foreign;
use super::{Arg, DevBuf, Driver, Elem, Gemm, Launch};
use crate::compile::{compile, KernelModule, Target};
use crate::error::{Error, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm as _, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// cudarc's context, stream and cuBLAS handle of one GPU, with its loaded kernels.
pub(crate) struct CudaRt {
    arch: u32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl CudaRt {
    /// Opens GPU `ordinal` (the caller checked the libraries are present). Returns the
    /// runtime, the GPU's name and its compute capability as one number (`90`).
    pub(crate) fn open(ordinal: usize) -> Result<(CudaRt, String, u32)> {
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
        let rt = CudaRt {
            arch,
            ctx,
            stream,
            blas: Mutex::new(blas),
            modules: Mutex::new(HashMap::new()),
            funcs: Mutex::new(HashMap::new()),
        };
        Ok((rt, gpu_name, arch))
    }

    /// The stream every launch and copy is queued on.
    #[cfg_attr(not(feature = "nccl"), allow(dead_code))]
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The device's context.
    #[cfg_attr(not(feature = "nccl"), allow(dead_code))]
    pub(crate) fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Free and total device memory in bytes.
    pub(crate) fn memory_info(&self) -> Result<(usize, usize)> {
        Ok(self.ctx.mem_get_info()?)
    }

    /// Makes this device's context current on the calling thread.
    pub(crate) fn bind(&self) -> Result<()> {
        Ok(self.ctx.bind_to_thread()?)
    }

    /// The kernel `name` of `module`, compiling (once per process) and loading (once per
    /// device) the module on first use. Prefers a CUBIN for this GPU's exact
    /// architecture; falls back to PTX when that does not load.
    fn func(&self, module: &'static KernelModule, name: &'static str) -> Result<CudaFunction> {
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

#[cfg_attr(not(feature = "host-runtime"), allow(unused_variables))]
fn slice<'a, T: Elem>(op: &'static str, b: &'a DevBuf<T>) -> Result<&'a CudaSlice<T>> {
    match b {
        DevBuf::Cuda(s) => Ok(s),
        #[cfg(feature = "host-runtime")]
        DevBuf::Host(_) => Err(foreign(op)),
    }
}

#[cfg_attr(not(feature = "host-runtime"), allow(unused_variables))]
fn slice_mut<'a, T: Elem>(op: &'static str, b: &'a mut DevBuf<T>) -> Result<&'a mut CudaSlice<T>> {
    match b {
        DevBuf::Cuda(s) => Ok(s),
        #[cfg(feature = "host-runtime")]
        DevBuf::Host(_) => Err(foreign(op)),
    }
}

fn out_of_range(op: &'static str) -> Error {
    Error::Unsupported {
        op,
        msg: "offset outside the buffer".into(),
    }
}

fn view<'a, T: Elem>(op: &'static str, b: &'a DevBuf<T>, off: usize) -> Result<CudaView<'a, T>> {
    slice(op, b)?
        .try_slice(off..)
        .ok_or_else(|| out_of_range(op))
}

fn view_mut<'a, T: Elem>(
    op: &'static str,
    b: &'a mut DevBuf<T>,
    off: usize,
) -> Result<CudaViewMut<'a, T>> {
    slice_mut(op, b)?
        .try_slice_mut(off..)
        .ok_or_else(|| out_of_range(op))
}

/// One argument ready for cudarc's launch builder.
enum Pushed<'a> {
    U64(&'a u64),
    I32(&'a i32),
    I64(&'a i64),
    F32(&'a f32),
    Layout3(&'a crate::layout::Layout3),
    Red(&'a crate::layout::RedLayout),
    Im2Col(&'a crate::layout::Im2ColLayout),
    F32s(CudaView<'a, f32>),
    I64s(CudaView<'a, i64>),
    F32sMut(CudaViewMut<'a, f32>),
    I64sMut(CudaViewMut<'a, i64>),
}

impl Driver for CudaRt {
    fn alloc<T: Elem>(&self, n: usize, zeroed: bool) -> Result<DevBuf<T>> {
        let s = if zeroed {
            self.stream.alloc_zeros::<T>(n.max(1))?
        } else {
            // SAFETY: for f32 and i64 (the only `Elem`s) every bit pattern is a valid
            // value, so even an unwritten element read back is not undefined behaviour.
            unsafe { self.stream.alloc::<T>(n.max(1)) }?
        };
        Ok(DevBuf::Cuda(s))
    }

    fn htod<T: Elem>(&self, src: &[T]) -> Result<DevBuf<T>> {
        if src.is_empty() {
            return self.alloc(0, true);
        }
        Ok(DevBuf::Cuda(self.stream.clone_htod(src)?))
    }

    fn write<T: Elem>(&self, dst: &mut DevBuf<T>, offset: usize, src: &[T]) -> Result<()> {
        let end = offset
            .checked_add(src.len())
            .ok_or_else(|| out_of_range("write"))?;
        let d = slice_mut("write", dst)?;
        let mut v = d
            .try_slice_mut(offset..end)
            .ok_or_else(|| out_of_range("write"))?;
        self.stream.memcpy_htod(src, &mut v)?;
        Ok(())
    }

    fn dtoh<T: Elem>(&self, src: &DevBuf<T>, len: usize) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut v = self.stream.clone_dtoh(slice("download", src)?)?;
        v.truncate(len);
        Ok(v)
    }

    fn dtod<T: Elem>(&self, src: &DevBuf<T>) -> Result<DevBuf<T>> {
        Ok(DevBuf::Cuda(slice("copy", src)?.try_clone()?))
    }

    unsafe fn launch(
        &self,
        module: &'static KernelModule,
        kernel: &'static str,
        dims: Launch,
        args: &mut [Arg<'_>],
    ) -> Result<()> {
        let f = self.func(module, kernel)?;
        let mut pushed = Vec::with_capacity(args.len());
        for a in args.iter_mut() {
            pushed.push(match a {
                Arg::U64(v) => Pushed::U64(v),
                Arg::I32(v) => Pushed::I32(v),
                Arg::I64(v) => Pushed::I64(v),
                Arg::F32(v) => Pushed::F32(v),
                Arg::Layout3(l) => Pushed::Layout3(l),
                Arg::Red(l) => Pushed::Red(l),
                Arg::Im2Col(l) => Pushed::Im2Col(l),
                Arg::F32s(b, off) => Pushed::F32s(view(kernel, b, *off)?),
                Arg::I64s(b, off) => Pushed::I64s(view(kernel, b, *off)?),
                Arg::F32sMut(b, off) => Pushed::F32sMut(view_mut(kernel, b, *off)?),
                Arg::I64sMut(b, off) => Pushed::I64sMut(view_mut(kernel, b, *off)?),
            });
        }
        let mut lb = self.stream.launch_builder(&f);
        for p in pushed.iter_mut() {
            match p {
                Pushed::U64(v) => lb.arg(*v),
                Pushed::I32(v) => lb.arg(*v),
                Pushed::I64(v) => lb.arg(*v),
                Pushed::F32(v) => lb.arg(*v),
                Pushed::Layout3(l) => lb.arg(*l),
                Pushed::Red(l) => lb.arg(*l),
                Pushed::Im2Col(l) => lb.arg(*l),
                Pushed::F32s(v) => lb.arg(&*v),
                Pushed::I64s(v) => lb.arg(&*v),
                Pushed::F32sMut(v) => lb.arg(v),
                Pushed::I64sMut(v) => lb.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: dims.grid,
            block_dim: dims.block,
            shared_mem_bytes: dims.shared_mem_bytes,
        };
        // SAFETY: the caller guarantees the arguments match the kernel's parameters and
        // every offset it computes is in bounds (this function's contract).
        unsafe { lb.launch(cfg) }?;
        Ok(())
    }

    unsafe fn gemm(
        &self,
        g: Gemm,
        a: (&DevBuf<f32>, usize),
        b: (&DevBuf<f32>, usize),
        c: (&mut DevBuf<f32>, usize),
    ) -> Result<()> {
        const OP: &str = "matmul";
        let op = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let cfg = GemmConfig {
            transa: op(g.transa),
            transb: op(g.transb),
            m: g.m,
            n: g.n,
            k: g.k,
            alpha: 1.0f32,
            lda: g.lda,
            ldb: g.ldb,
            beta: if g.accumulate { 1.0f32 } else { 0.0f32 },
            ldc: g.ldc,
        };
        let av = view(OP, a.0, a.1)?;
        let bv = view(OP, b.0, b.1)?;
        let mut cv = view_mut(OP, c.0, c.1)?;
        // cuBLAS, unlike cudarc's own calls, does not make the context current itself
        self.bind()?;
        let blas = lock(&self.blas);
        if g.batch == 1 {
            // SAFETY: the caller guarantees the matrices `g` addresses lie in the views.
            unsafe { blas.gemm(cfg, &av, &bv, &mut cv) }?;
        } else {
            let cfg = StridedBatchedConfig {
                gemm: cfg,
                batch_size: g.batch,
                stride_a: g.stride_a,
                stride_b: g.stride_b,
                stride_c: g.stride_c,
            };
            // SAFETY: as above, for each of the `batch` strided matrices.
            unsafe { blas.gemm_strided_batched(cfg, &av, &bv, &mut cv) }?;
        }
        Ok(())
    }

    /// Waits for the stream, then reports any error cudarc recorded in a drop path
    /// (an asynchronous free that failed) since the last check.
    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize()?;
        self.ctx.check_err()?;
        Ok(())
    }
}
