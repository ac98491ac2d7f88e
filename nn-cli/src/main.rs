//! `nn`: inspect, convert and diff checkpoint files in every format nn reads (its own,
//! safetensors, PyTorch's `torch.save` archives), told apart by their first bytes.
//!
//! Exit codes:
//! - 0: success (`diff`: the files are equal within `--atol`);
//! - 1: `diff` found differences;
//! - 2: bad command line (clap's usage errors);
//! - 3: a file could not be read, parsed or written (the error is one line on stderr).

#![deny(missing_docs)]

use clap::{Parser, Subcommand};
use nn_core::io::{self, FileSummary};
use nn_core::{DType, Error, StateDict};
use std::path::PathBuf;
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
    /// The tree of keys with dtypes, shapes and sizes, and totals.
    Inspect {
        /// A .nn, .safetensors or .pt/.pth/.bin file.
        file: PathBuf,
        /// Print JSON instead (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Convert a state dict between formats (chosen by OUT's extension), dtypes and key
    /// layouts.
    Convert {
        /// The file to read.
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
    /// Keys only in A, only in B, shape or dtype changes, and the largest absolute
    /// difference per tensor; exit code 0 when equal within --atol.
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

/// Appends one line to the output buffer (printed at the end, so a closed pipe
/// such as `nn inspect x.pt | head` is not a panic).
macro_rules! say {
    ($o:expr, $($t:tt)*) => {{
        $o.push_str(&format!($($t)*));
        $o.push('\n');
    }};
}

/// A failure that ends the command with exit code 3.
struct Failure(String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = String::new();
    let o = &mut out;
    let r = match cli.cmd {
        Cmd::Inspect { file, json } => inspect(o, &file, json),
        Cmd::Convert {
            input,
            output,
            dtype,
            strip_prefix,
            key,
        } => convert(
            o,
            &input,
            &output,
            dtype.as_deref(),
            strip_prefix.as_deref(),
            key.as_deref(),
        ),
        Cmd::Diff { a, b, atol } => diff(o, &a, &b, atol),
    };
    {
        use std::io::Write;
        // a reader that went away (a closed pipe) is not an error of ours
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
    match r {
        Ok(code) => code,
        Err(Failure(msg)) => {
            // one line, whatever the error's layout
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

fn shape(s: &[usize]) -> String {
    let d: Vec<String> = s.iter().map(usize::to_string).collect();
    format!("[{}]", d.join(", "))
}

fn inspect(o: &mut String, file: &PathBuf, json: bool) -> Result<ExitCode, Failure> {
    let s = io::inspect(file)?;
    if json {
        say!(o, "{}", to_json(file, &s));
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        o,
        "{}: {} format, {} tensors, {} elements, {}",
        file.display(),
        s.format.name(),
        s.tensors.len(),
        s.total_elements(),
        human(s.total_bytes())
    );
    // a tree: a group line for each dotted prefix, when it first appears
    let mut rows: Vec<(String, String)> = s
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                format!(
                    "{:9} {:14} {}",
                    t.dtype.as_str(),
                    shape(&t.shape),
                    human(t.bytes as u128)
                ),
            )
        })
        .collect();
    rows.extend(s.others.iter().map(|(k, v)| (k.clone(), format!("= {v}"))));
    let mut open: Vec<String> = Vec::new();
    for (name, what) in rows {
        let parts: Vec<&str> = name.split('.').collect();
        let (groups, leaf) = parts.split_at(parts.len().saturating_sub(1));
        let common = open.iter().zip(groups).take_while(|(a, b)| a == b).count();
        open.truncate(common);
        for g in &groups[common..] {
            say!(o, "{}{g}/", "  ".repeat(open.len() + 1));
            open.push((*g).to_string());
        }
        let leaf = leaf.first().copied().unwrap_or("");
        let indent = 2 * (open.len() + 1);
        let width = 32usize.saturating_sub(indent);
        say!(o, "{}{leaf:width$} {what}", " ".repeat(indent));
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(file: &std::path::Path, s: &FileSummary) -> serde_json::Value {
    use serde_json::json;
    json!({
        "file": file.display().to_string(),
        "format": s.format.name(),
        "tensors": s.tensors.iter().map(|t| json!({
            "name": t.name,
            "dtype": t.dtype.as_str(),
            "shape": t.shape,
            "bytes": t.bytes,
        })).collect::<Vec<_>>(),
        "others": s.others.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "total_elements": s.total_elements() as u64,
        "total_bytes": s.total_bytes() as u64,
    })
}

fn convert(
    o: &mut String,
    input: &PathBuf,
    output: &PathBuf,
    dtype: Option<&str>,
    strip: Option<&str>,
    key: Option<&str>,
) -> Result<ExitCode, Failure> {
    let sd = io::load_state_dict_file(input)?;
    let mut sd = io::select(&sd, key.unwrap_or(""), strip.unwrap_or(""));
    if sd.is_empty() {
        return Err(Failure(format!(
            "{}: no tensors under key `{}`",
            input.display(),
            key.unwrap_or("")
        )));
    }
    if let Some(d) = dtype {
        let d = DType::from_name(d).ok_or_else(|| Failure(format!("unknown dtype `{d}`")))?;
        sd = io::to_float_dtype(&sd, d)?;
    }
    io::save_state_dict(&sd, output)?;
    let bytes: usize = sd
        .iter()
        .map(|(_, t)| t.numel() * t.dtype().size_in_bytes())
        .sum();
    say!(
        o,
        "wrote {} ({} format, {} tensors, {})",
        output.display(),
        io::FileFormat::from_extension(output).name(),
        sd.len(),
        human(bytes as u128)
    );
    Ok(ExitCode::SUCCESS)
}

fn values(sd: &StateDict, k: &str) -> Result<Vec<f64>, Failure> {
    let t = sd
        .get(k)
        .ok_or_else(|| Failure(format!("key `{k}` vanished")))?
        .to_dtype(DType::F64)?;
    match t.to_host()? {
        nn_core::HostData::F64(v) => Ok(v),
        other => Err(Failure(format!(
            "{k}: could not widen {} to float64",
            other.dtype()
        ))),
    }
}

fn diff(o: &mut String, a: &PathBuf, b: &PathBuf, atol: f64) -> Result<ExitCode, Failure> {
    let (sa, sb) = (io::load_state_dict_file(a)?, io::load_state_dict_file(b)?);
    let mut differ = false;
    for k in sa.keys().filter(|k| sb.get(k).is_none()) {
        say!(o, "only in A: {k}");
        differ = true;
    }
    for k in sb.keys().filter(|k| sa.get(k).is_none()) {
        say!(o, "only in B: {k}");
        differ = true;
    }
    for (k, ta) in sa.iter() {
        let Some(tb) = sb.get(k) else { continue };
        if ta.shape() != tb.shape() {
            say!(
                o,
                "shape {k}: {} -> {}",
                shape(ta.shape()),
                shape(tb.shape())
            );
            differ = true;
            continue;
        }
        if ta.dtype() != tb.dtype() {
            say!(o, "dtype {k}: {} -> {}", ta.dtype(), tb.dtype());
            differ = true;
        }
        let (va, vb) = (values(&sa, k)?, values(&sb, k)?);
        let mut max = 0.0f64;
        for (x, y) in va.iter().zip(&vb) {
            let d = if x == y { 0.0 } else { (x - y).abs() };
            // NaN on one side only is a difference of infinity
            let d = if d.is_nan() && !(x.is_nan() && y.is_nan()) {
                f64::INFINITY
            } else if d.is_nan() {
                0.0
            } else {
                d
            };
            max = max.max(d);
        }
        if max > atol {
            say!(o, "values {k}: max abs diff {max:e}");
            differ = true;
        } else if max > 0.0 {
            say!(o, "close {k}: max abs diff {max:e} <= atol {atol:e}");
        }
    }
    if differ {
        say!(o, "files differ");
        Ok(ExitCode::from(1))
    } else {
        say!(o, "files are equal (atol {atol:e}, {} tensors)", sa.len());
        Ok(ExitCode::SUCCESS)
    }
}
