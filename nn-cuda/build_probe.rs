// Build-time probes shared by the root package's and nn-cuda's build scripts (each
// includes this file): they decide which GPU-dependent tests are compiled as
// `#[ignore]`d, so a run without a GPU says so in the test runner's own summary
// ("N ignored") instead of reporting tests that did not run as `ok`.
//
// `NN_CUDA_REQUIRE=1` / `NN_NVRTC_REQUIRE=1` force the tests in (they then fail where
// the device or library is missing); `cargo test -- --include-ignored` runs them too.

use std::path::Path;

fn env_is_1(name: &str) -> bool {
    println!("cargo::rerun-if-env-changed={name}");
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// Whether this machine has an NVIDIA GPU with its driver loaded.
fn gpu_found() -> bool {
    if env_is_1("NN_CUDA_REQUIRE") {
        return true;
    }
    let gpus = Path::new("/proc/driver/nvidia/gpus");
    Path::new("/dev/nvidia0").exists()
        || std::fs::read_dir(gpus).is_ok_and(|mut d| d.next().is_some())
}

/// Whether a `libnvrtc.so*` lies on LD_LIBRARY_PATH or in a usual CUDA place.
fn nvrtc_found() -> bool {
    if env_is_1("NN_NVRTC_REQUIRE") {
        return true;
    }
    println!("cargo::rerun-if-env-changed=LD_LIBRARY_PATH");
    let mut dirs: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    dirs.extend(
        [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
        ]
        .map(String::from),
    );
    dirs.iter().any(|d| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("libnvrtc.so"))
            })
        })
    })
}

/// Declares the cfgs and sets those that hold.
fn emit_probes() {
    println!("cargo::rustc-check-cfg=cfg(nn_gpu_found)");
    println!("cargo::rustc-check-cfg=cfg(nn_nvrtc_found)");
    if gpu_found() {
        println!("cargo::rustc-cfg=nn_gpu_found");
    }
    if nvrtc_found() {
        println!("cargo::rustc-cfg=nn_nvrtc_found");
    }
}
