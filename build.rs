//! Sets `cfg(nn_gpu_found)` when this machine has a GPU (see nn-cuda/build_probe.rs):
//! without one, the CUDA instances of tests/devices.rs are compiled as ignored.

include!("nn-cuda/build_probe.rs");

fn main() {
    println!("cargo::rerun-if-changed=nn-cuda/build_probe.rs");
    emit_probes();
}
