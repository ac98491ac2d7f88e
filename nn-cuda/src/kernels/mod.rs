//! Raw kernel launches: the only place that calls `launch` or cuBLAS. Each kernel
//! family's CUDA source (`*.cu`) sits next to its Rust launcher (`*.rs`); every module is
//! compiled at run time by NVRTC with the shared `prelude.cuh` prepended.
//!
//! Launchers take and return `CudaSlice`s of exactly the sizes they document; empty
//! outputs never launch (a zero-sized grid is a CUDA error).

pub(crate) mod conv;
pub(crate) mod copy;
pub(crate) mod elementwise;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod optim;
pub(crate) mod reduce;

use crate::runtime::Launch;

pub use crate::compile::{KernelModule, PRELUDE};

/// Every kernel module of the backend (the CI compile test walks this list).
pub static ALL_MODULES: [&KernelModule; 6] = [
    &elementwise::MODULE,
    &copy::MODULE,
    &reduce::MODULE,
    &optim::MODULE,
    &conv::MODULE,
    &loss::MODULE,
];

/// Threads per block of the elementwise kernels.
const BLOCK: u32 = 256;

/// A 1-d launch for a grid-stride loop over `n` elements (`n > 0`).
pub(crate) fn grid(n: usize) -> Launch {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    Launch {
        grid: (blocks, 1, 1),
        block: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, Target};

    /// Compiles every kernel module to `compute_90` PTX with NVRTC (no GPU needed) and
    /// checks each entry point the launchers name is in it. Ignored when libnvrtc was not
    /// found at build time, unless `NN_NVRTC_REQUIRE=1` (set by CI, which installs NVRTC
    /// from PyPI): then it runs and fails without the library.
    #[test]
    #[cfg_attr(not(nn_nvrtc_found), ignore = "libnvrtc not found when this was built")]
    fn all_kernel_sources_compile_with_nvrtc() -> Result<(), String> {
        if !crate::probe::nvrtc_present() {
            return Err("libnvrtc could not be loaded (put nvidia/cu13/lib of the nvidia-cuda-nvrtc wheel on LD_LIBRARY_PATH)".into());
        }
        let version = crate::compile::nvrtc_version().map_err(|e| e.to_string())?;
        println!("NVRTC {}.{}", version.0, version.1);
        for m in ALL_MODULES {
            let ptx = compile(m, 90, Target::Ptx).map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&ptx);
            for k in m.kernels {
                if !text.contains(&format!(".entry {k}(")) {
                    return Err(format!(
                        "module `{}`: entry point `{k}` missing from the PTX",
                        m.name
                    ));
                }
            }
            // the CUBIN path a device prefers must build too
            let cubin = compile(m, 90, Target::Cubin).map_err(|e| e.to_string())?;
            println!(
                "compiled `{}`: {} kernels, {} bytes of PTX, {} bytes of sm_90 CUBIN",
                m.name,
                m.kernels.len(),
                ptx.len(),
                cubin.len()
            );
        }
        Ok(())
    }

    /// A broken source must fail with the compiler's log, not panic.
    #[test]
    #[cfg_attr(not(nn_nvrtc_found), ignore = "libnvrtc not found when this was built")]
    fn compile_errors_carry_the_log() {
        assert!(
            crate::probe::nvrtc_present(),
            "libnvrtc could not be loaded"
        );
        static BAD: KernelModule = KernelModule {
            name: "bad",
            src: "extern \"C\" __global__ void k(float* y) { y[0] = undefined_thing; }",
            kernels: &["k"],
        };
        let e = compile(&BAD, 90, Target::Ptx)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("undefined_thing") && e.contains("`bad`"), "{e}");
    }
}
