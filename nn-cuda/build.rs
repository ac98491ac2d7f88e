//! Sets `cfg(nn_gpu_found)` / `cfg(nn_nvrtc_found)` (see build_probe.rs): the
//! tests that need a GPU or libnvrtc are compiled as ignored where they are missing.
//! With the test-only feature `host-runtime`, also compiles the kernels for the host
//! runtime (see build_host.rs).

include!("build_probe.rs");
#[cfg(feature = "host-runtime")]
include!("build_host.rs");

fn main() {
    println!("cargo::rerun-if-changed=build_probe.rs");
    emit_probes();
    #[cfg(feature = "host-runtime")]
    build_host_runtime();
}
