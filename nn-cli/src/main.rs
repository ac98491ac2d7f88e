//! `nn`: inspect, convert and diff every file nn writes (native state dicts v1 and v2,
//! training checkpoints, tensor files), safetensors and PyTorch's `torch.save`
//! archives, told apart by their first bytes.
//!
//! Exit codes:
//! - 0: success (`diff`: the files are equal within `--atol`);
//! - 1: `diff` found differences;
//! - 2: bad command line (clap's usage errors);
//! - 3: a file could not be read, parsed or written (the error is one line on stderr).

#![deny(missing_docs)]

/// Appends one line to the output buffer (printed at the end, so a closed pipe
/// such as `nn inspect x.pt | head` is not a panic).
macro_rules! say {
    ($o:expr, $($t:tt)*) => {{
        $o.push_str(&format!($($t)*));
        $o.push('\n');
    }};
}

mod convert;
mod describe;
mod diff;
mod error;
mod inspect;

use clap::{Parser, Subcommand};
use describe::Described;
use error::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Inspect, convert and diff checkpoints (nn, safetensors, PyTorch .pt/.pth/.bin).
#[derive(Parser)]
#[command(name = "nn", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const EXIT_CODES: &str =
    "Exit codes: 0 success (diff: equal), 1 diff found differences, 2 usage error, 3 file error.";

#[derive(Subcommand)]
enum Cmd {
    /// What kind of file it is, and every key (as `load` addresses it) with dtype, shape
    /// and size; tied tensors marked and counted once.
    Inspect {
        /// A native .nn file (state dict, training checkpoint, tensors), a .safetensors
        /// or a .pt/.pth/.bin file.
        file: PathBuf,
        /// Print the keys as a tree of their dotted parts.
        #[arg(long, conflicts_with = "json")]
        tree: bool,
        /// Print JSON instead (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Convert the tensors of a file between formats (chosen by OUT's extension), dtypes
    /// and key layouts.
    Convert {
        /// The file to read (any file `inspect` reads).
        input: PathBuf,
        /// The file to write: .safetensors, .pt/.pth/.bin, anything else nn's format.
        output: PathBuf,
        /// Convert floating-point tensors to this dtype.
        #[arg(long, value_parser = ["f16", "bf16", "f32"])]
        dtype: Option<String>,
        /// Remove this prefix from the keys that have it (`module.` from DataParallel).
        #[arg(long)]
        strip_prefix: Option<String>,
        /// Keep only the sub-dict under this dotted key (`model` of a training
        /// checkpoint), with the key removed.
        #[arg(long)]
        key: Option<String>,
    },
    /// Keys only in A, only in B, shape or dtype changes, the largest absolute
    /// difference per tensor and changed values (epoch, metadata); exit code 0 when
    /// equal within --atol.
    Diff {
        /// The first file.
        a: PathBuf,
        /// The second file.
        b: PathBuf,
        /// Largest absolute difference still counted as equal.
        #[arg(long, default_value_t = 0.0)]
        atol: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = String::new();
    let o = &mut out;
    let r = match cli.cmd {
        Cmd::Inspect { file, tree, json } => inspect(o, &file, json, tree),
        Cmd::Convert {
            input,
            output,
            dtype,
            strip_prefix,
            key,
        } => convert::run(
            o,
            &input,
            &output,
            dtype.as_deref(),
            strip_prefix.as_deref(),
            key.as_deref(),
        ),
        Cmd::Diff { a, b, atol } => diff::run(o, &a, &b, atol),
    };
    {
        use std::io::Write;
        // a reader that went away (a closed pipe) is not an error of ours
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
    match r {
        Ok(code) => code,
        Err(e) => {
            // one line, whatever the error's layout
            let msg = e.to_string();
            let one: Vec<&str> = msg
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("nn: error: {}", one.join("; "));
            ExitCode::from(3)
        }
    }
}

fn inspect(o: &mut String, file: &Path, json: bool, as_tree: bool) -> Result<ExitCode> {
    let d = Described::open(file)?;
    if json {
        say!(o, "{}", inspect::to_json(&d));
    } else if as_tree {
        inspect::tree(o, &d);
    } else {
        inspect::flat(o, &d);
    }
    Ok(ExitCode::SUCCESS)
}

/// A size in bytes for people: `820 B`, `32.0 KiB`.
fn human(bytes: u128) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A shape as `[8, 4]`.
fn shape(s: &[usize]) -> String {
    let d: Vec<String> = s.iter().map(usize::to_string).collect();
    format!("[{}]", d.join(", "))
}
