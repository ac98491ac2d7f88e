//! Running the built `nn` binary, and the paths the tests read and write.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A file of the PyTorch fixtures (tests/fixtures/pt/).
pub fn fixture(name: &str) -> String {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/pt"))
        .join(name)
        .display()
        .to_string()
}

/// Runs `nn` with `args`: exit code, stdout, stderr.
pub fn nn(args: &[&str]) -> (i32, String, String) {
    let out: Output = match Command::new(env!("CARGO_BIN_EXE_nn")).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("could not run nn: {e}"),
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A path in this test process's scratch directory.
pub fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("nn-cli-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d.join(name).display().to_string()
}
