//! `LoadReport`: what loading a state dict into a model did, and what did not fit.

use crate::DType;
use std::fmt;

/// One entry of a state dict that names a model tensor but cannot be loaded into it.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// The file's shape differs from the model's (`?` dims of a deferred parameter
    /// accept any size).
    Shape {
        /// The key in the state dict.
        key: String,
        /// The model's shape, `None` for a dim still deferred.
        expected: Vec<Option<usize>>,
        /// The file's shape.
        found: Vec<usize>,
    },
    /// The file's element type differs from the model's.
    DType {
        /// The key in the state dict.
        key: String,
        /// The model's dtype.
        expected: DType,
        /// The file's dtype.
        found: DType,
    },
    /// A tied parameter appears under several keys whose values differ.
    Tied {
        /// The key whose value disagrees.
        key: String,
        /// The key of the same parameter that was loaded first.
        first: String,
    },
    /// A lazy layer's tensors give its one unknown size (in_channels, num_features)
    /// different values.
    Deferred {
        /// The key whose shape disagrees.
        key: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The key of the same layer that gave the size first.
        first: String,
        /// The size `first` gave.
        size: usize,
    },
}

impl Mismatch {
    /// The state-dict key concerned.
    pub fn key(&self) -> &str {
        match self {
            Mismatch::Shape { key, .. }
            | Mismatch::DType { key, .. }
            | Mismatch::Tied { key, .. }
            | Mismatch::Deferred { key, .. } => key,
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Shape {
                key,
                expected,
                found,
            } => write!(
                f,
                "shape mismatch for `{key}`: the model has {}, the file has {found:?}",
                crate::module::fmt_partial(expected)
            ),
            Mismatch::DType {
                key,
                expected,
                found,
            } => write!(
                f,
                "dtype mismatch for `{key}`: the model has {expected}, the file has {found} (LoadOptions::convert_dtypes(true) converts it)"
            ),
            Mismatch::Tied { key, first } => write!(
                f,
                "`{key}` is tied to `{first}` (one parameter) but the file gives them different values"
            ),
            Mismatch::Deferred {
                key,
                found,
                first,
                size,
            } => write!(
                f,
                "shape mismatch for `{key}`: the file has {found:?}, but `{first}` sized this lazy layer's unknown dim to {size}"
            ),
        }
    }
}

/// The outcome of loading a state dict: the keys loaded, and every problem found
/// (missing keys, unexpected keys, mismatches), all at once.
///
/// A strict load that finds any problem changes nothing and returns this report inside
/// [`crate::Error::StateDict`]; a non-strict load applies what fits and returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Model keys whose values were loaded, in model order (in the report of a failed
    /// strict load: the keys that fit, although nothing was loaded).
    pub loaded: Vec<String>,
    /// Model keys that the state dict lacks.
    pub missing: Vec<String>,
    /// State-dict keys that match nothing in the model.
    pub unexpected: Vec<String>,
    /// Keys present on both sides whose shape, dtype or tie does not fit.
    pub mismatched: Vec<Mismatch>,
    /// Loaded keys whose data was converted (with [`crate::io::LoadOptions::convert_dtypes`]):
    /// the key, the file's dtype, the model's dtype. (A boxed slice, not a `Vec`, keeps
    /// [`crate::Error`], which carries this report, small.)
    pub converted: Box<[(String, DType, DType)]>,
}

impl LoadReport {
    /// Whether nothing is missing, unexpected or mismatched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// Number of problems listed.
    pub fn num_problems(&self) -> usize {
        self.missing.len() + self.unexpected.len() + self.mismatched.len()
    }
}

fn keys(f: &mut fmt::Formatter<'_>, what: &str, ks: &[String]) -> fmt::Result {
    if ks.is_empty() {
        return Ok(());
    }
    let quoted: Vec<String> = ks.iter().map(|k| format!("`{k}`")).collect();
    write!(f, "\n  {what} ({}): {}", ks.len(), quoted.join(", "))
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            write!(f, "loaded all {} keys", self.loaded.len())?;
            if !self.converted.is_empty() {
                write!(f, " ({} converted", self.converted.len())?;
                if let Some((_, from, to)) = self.converted.first() {
                    write!(f, ", e.g. {from} to {to}")?;
                }
                f.write_str(")")?;
            }
            return Ok(());
        }
        write!(
            f,
            "state dict does not fit the model ({} problem{}; {} key{} matched):",
            self.num_problems(),
            if self.num_problems() == 1 { "" } else { "s" },
            self.loaded.len(),
            if self.loaded.len() == 1 { "" } else { "s" },
        )?;
        keys(f, "missing keys", &self.missing)?;
        keys(f, "unexpected keys", &self.unexpected)?;
        for m in &self.mismatched {
            write!(f, "\n  {m}")?;
        }
        Ok(())
    }
}
