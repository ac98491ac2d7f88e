//! NVRTC compilation of the kernel modules, cached per process: each (module, arch)
//! pair is compiled at most once, whatever the number of devices or threads.

use crate::error::{Error, Result};
use cudarc::nvrtc::{result as nvrtc_result, sys as nvrtc_sys};
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock};

/// The prelude shared by every module: layouts, index helpers, grid-stride loop.
pub const PRELUDE: &str = include_str!("kernels/prelude.cuh");

/// One NVRTC compilation unit: a name, its source and its `extern "C"` entry points.
#[derive(Debug)]
pub struct KernelModule {
    /// Module name (cache key, file name in compiler messages).
    pub name: &'static str,
    /// The module's own source, without the prelude.
    pub src: &'static str,
    /// Entry points the Rust launchers call.
    pub kernels: &'static [&'static str],
}

impl KernelModule {
    /// The full source NVRTC compiles: prelude plus the module.
    pub fn source(&self) -> String {
        format!("{PRELUDE}\n{}", self.src)
    }
}

/// What NVRTC should produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// PTX for a virtual architecture (`compute_90`): JIT-compiled by the driver at load.
    Ptx,
    /// A CUBIN for a real architecture (`sm_90`): no JIT, no PTX-version gate.
    Cubin,
}

/// A compiled module image, ready for `CudaContext::load_module` (PTX text is kept
/// NUL-terminated, as `cuModuleLoadData` wants).
pub type Image = Arc<Vec<u8>>;

type Cache = Mutex<HashMap<(&'static str, String, Target), Image>>;

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The NVRTC version `(major, minor)`, when libnvrtc loads.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    crate::probe::check_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: libnvrtc is present (checked above); both pointers are valid for writes.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }.result()?;
    Ok((major, minor))
}

/// Compiles `module` for `arch` (a number such as `90`), from the process cache when
/// it was compiled before.
pub fn compile(module: &KernelModule, arch: u32, target: Target) -> Result<Image> {
    crate::probe::check_nvrtc()?;
    let arch_name = match target {
        Target::Ptx => format!("compute_{arch}"),
        Target::Cubin => format!("sm_{arch}"),
    };
    let key = (module.name, arch_name.clone(), target);
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(img) = c.get(&key) {
        return Ok(img.clone());
    }
    let img = Arc::new(compile_uncached(module, &arch_name, target)?);
    c.insert(key, img.clone());
    Ok(img)
}

fn compile_uncached(module: &KernelModule, arch_name: &str, target: Target) -> Result<Vec<u8>> {
    let src = CString::new(module.source()).map_err(|_| Error::Compile {
        module: module.name,
        arch: arch_name.to_string(),
        log: "kernel source contains a NUL byte".into(),
    })?;
    let name = CString::new(format!("{}.cu", module.name)).map_err(|_| Error::Compile {
        module: module.name,
        arch: arch_name.to_string(),
        log: "module name contains a NUL byte".into(),
    })?;
    let prog = nvrtc_result::create_program(&src, Some(&name))?;
    let opts = [
        format!("--gpu-architecture={arch_name}"),
        "--std=c++17".to_string(),
    ];
    // SAFETY: `prog` was created above and is destroyed only after this block.
    let out = unsafe { compile_program(prog, &opts, target) };
    // SAFETY: `prog` is live and not used after this call.
    let destroyed = unsafe { nvrtc_result::destroy_program(prog) };
    let out = out.map_err(|log| Error::Compile {
        module: module.name,
        arch: arch_name.to_string(),
        log,
    })?;
    destroyed?;
    Ok(out)
}

/// Compiles `prog` and fetches its PTX or CUBIN, or the compiler log on failure.
///
/// # Safety
/// 1. `prog` must come from `create_program` and not be destroyed yet.
unsafe fn compile_program(
    prog: nvrtc_sys::nvrtcProgram,
    opts: &[String],
    target: Target,
) -> std::result::Result<Vec<u8>, String> {
    // SAFETY: `prog` is live (caller's contract); the options are plain strings.
    if let Err(e) = unsafe { nvrtc_result::compile_program(prog, opts) } {
        // SAFETY: `prog` is live; the log is NUL-terminated by NVRTC.
        let log = unsafe { nvrtc_result::get_program_log(prog) }
            .map(|v| c_chars_to_string(&v))
            .unwrap_or_default();
        return Err(format!("{e}: {log}"));
    }
    match target {
        Target::Ptx => {
            // SAFETY: `prog` is live and compiled.
            let ptx = unsafe { nvrtc_result::get_ptx(prog) }.map_err(|e| e.to_string())?;
            let mut bytes: Vec<u8> = ptx.iter().map(|&c| c as u8).collect();
            if bytes.last() != Some(&0) {
                bytes.push(0);
            }
            Ok(bytes)
        }
        Target::Cubin => {
            let mut size = 0usize;
            // SAFETY: `prog` is live and compiled; `size` is valid for writes.
            unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size) }
                .result()
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` holds exactly the `size` bytes NVRTC reported for the CUBIN.
            unsafe { nvrtc_sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) }
                .result()
                .map_err(|e| e.to_string())?;
            Ok(buf)
        }
    }
}

fn c_chars_to_string(v: &[c_char]) -> String {
    let bytes: Vec<u8> = v.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}
