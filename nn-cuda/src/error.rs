//! The one error type of nn-cuda, and its conversion into `nn_core::Error` at the trait boundary.

use cudarc::cublas::result::CublasError;
use cudarc::driver::DriverError;
use cudarc::nvrtc::result::NvrtcError;

/// Result alias used inside nn-cuda.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the CUDA backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `libcuda.so` could not be loaded: no NVIDIA driver on this machine.
    #[error("no CUDA driver: libcuda.so could not be loaded (is an NVIDIA driver installed and on the library path?)")]
    DriverNotFound,
    /// The driver loaded but reports fewer devices than asked for.
    #[error("no CUDA device with index {ordinal}: {count} device(s) found")]
    NoDevice {
        /// The requested device index.
        ordinal: usize,
        /// How many devices the driver reports.
        count: usize,
    },
    /// A CUDA runtime library other than the driver is missing.
    #[error("CUDA library {lib} not found: install it (e.g. `pip install nvidia-{pip}`) and put its lib dir on LD_LIBRARY_PATH")]
    LibraryNotFound {
        /// The library's file name stem (`libnvrtc.so`).
        lib: &'static str,
        /// The PyPI package that ships it.
        pip: &'static str,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(#[from] DriverError),
    /// A cuBLAS call failed.
    #[error("cuBLAS: {0}")]
    Cublas(#[from] CublasError),
    /// An NVRTC call failed outside compilation proper.
    #[error("NVRTC: {0}")]
    Nvrtc(#[from] NvrtcError),
    /// A kernel module did not compile; `log` is the compiler's output.
    #[error("NVRTC could not compile kernel module `{module}` for {arch}:\n{log}")]
    Compile {
        /// The kernel module's name.
        module: &'static str,
        /// The target architecture (`sm_90`, `compute_90`).
        arch: String,
        /// The compiler log.
        log: String,
    },
    /// A size or rank this backend does not handle.
    #[error("{op}: {msg}")]
    Unsupported {
        /// The op.
        op: &'static str,
        /// What is out of range.
        msg: String,
    },
    /// A kernel failed where the runtime could see it: the host runtime's bounds checks,
    /// launch limits and argument types, or its reference GEMM's argument checks.
    #[error("kernel `{kernel}` failed: {msg}")]
    Kernel {
        /// The kernel (or cuBLAS routine).
        kernel: &'static str,
        /// What went wrong.
        msg: String,
    },
    /// An error of nn-core (dtype, index, device mismatch ...), passed through unchanged.
    #[error(transparent)]
    Core(#[from] nn_core::Error),
}

impl Error {
    /// Converts into nn-core's error: nn-core errors pass through, CUDA failures become
    /// [`nn_core::Error::Backend`] naming `device`.
    pub fn into_core(self, device: &str) -> nn_core::Error {
        match self {
            Error::Core(e) => e,
            Error::DriverNotFound | Error::NoDevice { .. } | Error::LibraryNotFound { .. } => {
                nn_core::Error::DeviceUnavailable(format!("{device}: {self}"))
            }
            other => nn_core::Error::backend(device, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn conversion_keeps_core_errors_and_names_the_device() {
        let core = nn_core::Error::bad_shape("narrow", &[2], "range");
        let back = Error::from(core).into_core("cuda:0");
        assert!(matches!(
            back,
            nn_core::Error::BadShape { op: "narrow", .. }
        ));
        let missing = Error::NoDevice {
            ordinal: 3,
            count: 1,
        }
        .into_core("cuda:3");
        assert!(matches!(missing, nn_core::Error::DeviceUnavailable(_)));
        assert_eq!(
            missing.to_string(),
            "device unavailable: cuda:3: no CUDA device with index 3: 1 device(s) found"
        );
        let failed = Error::Unsupported {
            op: "matmul",
            msg: "too big".into(),
        }
        .into_core("cuda:0");
        assert_eq!(failed.to_string(), "cuda:0: matmul: too big");
        // the CUDA error stays reachable as the source, not only as text
        let source = std::error::Error::source(&failed);
        assert!(source.is_some_and(|s| s.downcast_ref::<Error>().is_some()));
    }

    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        if crate::driver_present() {
            return;
        }
        assert_eq!(crate::device_count(), 0);
        let e = crate::device(0)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cuda:0") && e.contains("no CUDA driver"), "{e}");
    }
}
