//! `nn diff`: keys only in one file, shape, dtype and value changes per tensor, and
//! changed non-tensor values (a checkpoint's epoch, metadata).

use crate::describe::Described;
use crate::error::{CliError, Result};
use crate::shape;
use nn_core::{DType, HostData, StateDict};
use std::path::Path;
use std::process::ExitCode;

fn values(sd: &StateDict, path: &Path, k: &str) -> Result<Vec<f64>> {
    let t = sd
        .get(k)
        .ok_or_else(|| CliError::vanished(path, k))?
        .to_dtype(DType::F64)?;
    match t.to_host()? {
        HostData::F64(v) => Ok(v),
        other => Err(CliError::Widen {
            path: path.display().to_string(),
            key: k.to_string(),
            dtype: other.dtype().to_string(),
        }),
    }
}

/// The largest absolute difference; NaN on one side only counts as infinity.
fn max_abs_diff(va: &[f64], vb: &[f64]) -> f64 {
    let mut max = 0.0f64;
    for (x, y) in va.iter().zip(vb) {
        let d = if x == y { 0.0 } else { (x - y).abs() };
        let d = if d.is_nan() && !(x.is_nan() && y.is_nan()) {
            f64::INFINITY
        } else if d.is_nan() {
            0.0
        } else {
            d
        };
        max = max.max(d);
    }
    max
}

/// Runs `nn diff`.
pub fn run(o: &mut String, a: &Path, b: &Path, atol: f64) -> Result<ExitCode> {
    let (da, db) = (Described::open(a)?, Described::open(b)?);
    let mut differ = false;
    if da.kind != db.kind {
        say!(o, "kind: {} -> {}", da.kind_text(), db.kind_text());
    }
    let va: Vec<(String, String)> = da
        .values()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let vb: Vec<(String, String)> = db
        .values()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (sa, sb) = (da.into_state_dict()?, db.into_state_dict()?);
    for k in sa.keys().filter(|k| sb.get(k).is_none()) {
        say!(o, "only in A: {k}");
        differ = true;
    }
    for k in sb.keys().filter(|k| sa.get(k).is_none()) {
        say!(o, "only in B: {k}");
        differ = true;
    }
    for (k, x) in &va {
        match vb.iter().find(|(kb, _)| kb == k) {
            None => {
                say!(o, "only in A: {k} = {x}");
                differ = true;
            }
            Some((_, y)) if x != y => {
                say!(o, "value {k}: {x} -> {y}");
                differ = true;
            }
            Some(_) => {}
        }
    }
    for (k, y) in vb.iter().filter(|(k, _)| !va.iter().any(|(ka, _)| ka == k)) {
        say!(o, "only in B: {k} = {y}");
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
        let max = max_abs_diff(&values(&sa, a, k)?, &values(&sb, b, k)?);
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
