//! `nn convert`: the tensors of any file nn reads, written in the format OUT's
//! extension names, optionally a sub-dict, without a key prefix, in another dtype.

use crate::describe::Described;
use crate::error::{CliError, Result};
use crate::human;
use nn_core::io::{self, FileFormat};
use nn_core::DType;
use std::path::Path;
use std::process::ExitCode;

/// Extensions that write nn's native format without surprise.
const NATIVE_NAMES: [&str; 2] = ["nn", "ckpt"];

/// A warning for OUT when its name promises something other than nn's binary format
/// (`weights.txt`, `model.json`); `None` for `.nn`, `.ckpt`, no extension, and the
/// extensions that choose safetensors or PyTorch.
pub fn name_warning(output: &Path) -> Option<String> {
    if FileFormat::from_extension(output) != FileFormat::Native {
        return None;
    }
    let ext = output.extension()?.to_string_lossy();
    if NATIVE_NAMES.contains(&ext.as_ref()) {
        return None;
    }
    Some(format!(
        "{}: writing nn's binary native format to a `.{ext}` name; use `.nn` (or \
         `.safetensors`, `.pt` to write those formats)",
        output.display()
    ))
}

/// Runs `nn convert`.
pub fn run(
    o: &mut String,
    input: &Path,
    output: &Path,
    dtype: Option<&str>,
    strip: Option<&str>,
    key: Option<&str>,
) -> Result<ExitCode> {
    let d = Described::open(input)?;
    let dropped: Vec<String> = d
        .values()
        .map(|(k, _)| k.to_string())
        .filter(|k| key.is_none_or(|p| k.starts_with(&format!("{p}."))))
        .collect();
    let all = d.into_state_dict()?;
    let mut sd = io::select(&all, key.unwrap_or(""), strip.unwrap_or(""));
    if sd.is_empty() {
        let mut tops: Vec<&str> = all.keys().filter_map(|k| k.split('.').next()).collect();
        tops.dedup();
        return Err(CliError::NoTensorsUnderKey {
            path: input.display().to_string(),
            key: key.unwrap_or("").to_string(),
            tops: tops.join(", "),
        });
    }
    if let Some(d) = dtype {
        let d = DType::from_name(d).ok_or_else(|| CliError::UnknownDType(d.to_string()))?;
        sd = io::to_float_dtype(&sd, d)?;
    }
    if let Some(w) = name_warning(output) {
        eprintln!("nn: warning: {w}");
    }
    if !dropped.is_empty() {
        eprintln!(
            "nn: note: {} non-tensor values not written (only tensors convert): {}",
            dropped.len(),
            dropped.join(", ")
        );
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
        FileFormat::from_extension(output).name(),
        sd.len(),
        human(bytes as u128)
    );
    Ok(ExitCode::SUCCESS)
}
