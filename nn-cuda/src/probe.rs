//! Safe detection of the CUDA libraries and devices: cudarc panics when a library it
//! dlopens is missing, so every entry point asks here first (answers cached per process).

use crate::error::{Error, Result};
use std::sync::OnceLock;

/// Whether `libcuda` (the driver) can be loaded. Never panics.
pub fn driver_present() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` only dlopens/dlcloses the candidate library names; it
    // has no preconditions and reports absence as `false` instead of panicking.
    *P.get_or_init(|| unsafe { cudarc::driver::sys::is_culib_present() })
}

/// Whether `libnvrtc` (the run-time kernel compiler) can be loaded. Never panics.
pub fn nvrtc_present() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    // SAFETY: as in `driver_present`: a dlopen probe without preconditions.
    *P.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

/// Whether `libcublas` can be loaded. Never panics.
pub fn cublas_present() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    // SAFETY: as in `driver_present`: a dlopen probe without preconditions.
    *P.get_or_init(|| unsafe { cudarc::cublas::sys::is_culib_present() })
}

/// Number of CUDA devices (0 without a driver or without a GPU). Never panics.
pub fn device_count() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        if !driver_present() {
            return 0;
        }
        match cudarc::driver::CudaContext::device_count() {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

/// Checks everything a device needs before cudarc is asked to open it.
pub(crate) fn check_device(ordinal: usize) -> Result<()> {
    if !driver_present() {
        return Err(Error::DriverNotFound);
    }
    let count = device_count();
    if ordinal >= count {
        return Err(Error::NoDevice { ordinal, count });
    }
    check_nvrtc()?;
    if !cublas_present() {
        return Err(Error::LibraryNotFound {
            lib: "libcublas.so",
            pip: "cublas",
        });
    }
    Ok(())
}

/// Fails unless libnvrtc can be loaded.
pub(crate) fn check_nvrtc() -> Result<()> {
    if nvrtc_present() {
        Ok(())
    } else {
        Err(Error::LibraryNotFound {
            lib: "libnvrtc.so",
            pip: "cuda-nvrtc",
        })
    }
}
