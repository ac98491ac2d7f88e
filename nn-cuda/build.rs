//! Sets `cfg(nn_gpu_found)` / `cfg(nn_nvrtc_found)` (see build_probe.rs): the
//! tests that need a GPU or libnvrtc are compiled as ignored where they are missing.

include!("build_probe.rs");

fn main() {
    println!("cargo::rerun-if-changed=build_probe.rs");
    emit_probes();
}
