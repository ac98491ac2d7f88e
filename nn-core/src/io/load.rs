//! Loading a state dict into a model: match names, check shapes and dtypes, report every
//! problem at once, and change nothing unless the load goes ahead.

use super::tensor_file::TensorFile;
use crate::error::load_report::{LoadReport, Mismatch};
use crate::module::{walk, Buffer, Item, Module, Param, StateDict};
use crate::{DType, Error, Result, Tensor};
use std::collections::{HashMap, HashSet};

/// How [`crate::ModuleExt::load_state_dict`] matches a state dict to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Strict (the default): any missing, unexpected or mismatched key fails the load
    /// and nothing is changed. Non-strict: what fits is loaded, the rest is reported.
    pub strict: bool,
    /// Only state-dict keys under this dotted prefix are considered, with the prefix
    /// removed: `prefix = "encoder"` loads `encoder.0.weight` into the model's `0.weight`
    /// (how a sub-module is loaded from a whole model's file). Keys outside the prefix
    /// are ignored, not unexpected. Empty: every key.
    ///
    /// This also selects a sub-dict of a whole training checkpoint: nested dicts of a
    /// `.pt` file are read as dotted keys, so `prefix = "model"` loads the state dict
    /// saved as `torch.save({"model": net.state_dict(), "optimizer": ...})`.
    pub prefix: String,
    /// After `prefix` is applied, this is removed from the keys that start with it;
    /// keys without it are kept as they are (`"module."`, which `DataParallel` and
    /// `DistributedDataParallel` add to every name). Empty: nothing is stripped.
    pub strip_prefix: String,
    /// Whether a tensor whose dtype differs from the model's (an f16, bf16 or f64 file
    /// loaded into an f32 model) is converted (each conversion is listed in
    /// [`LoadReport::converted`]) or refused as a [`Mismatch::DType`] (the default).
    pub convert_dtypes: bool,
    /// Whether the CPU tensors of a memory-mapped file are borrowed from the mapping
    /// instead of copied into the model (like `torch.load(mmap=True)`, without its copy
    /// into the parameters): the load then costs the file's verification (a native
    /// file's checksums are all verified first, as always) and no memory of its own; the
    /// pages are read from the page cache as the model first uses them, and a tensor is
    /// copied out of the mapping the first time it is written (an optimizer step,
    /// [`Param::with_data_mut`]): copy-on-write. Only f32 and i64 tensors stored
    /// contiguously at aligned offsets are borrowed (nn's native files and safetensors
    /// and `.pt` files as their writers lay them out); the others are copied as usual.
    ///
    /// The file must then not be truncated or rewritten in place while the model holds
    /// it: nn's writers replace a file by renaming a new one over it, which leaves the
    /// mapping intact, but another program writing into the same file changes the
    /// parameters, and one truncating it makes the next read of a lost page kill the
    /// process (SIGBUS), as with any memory-mapped file. Off by default.
    pub mmap: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            strict: true,
            prefix: String::new(),
            strip_prefix: String::new(),
            convert_dtypes: false,
            mmap: false,
        }
    }
}

impl LoadOptions {
    /// Strict, no prefix (the default).
    pub fn strict() -> Self {
        Self::default()
    }
    /// Non-strict: load what fits, report the rest.
    pub fn non_strict() -> Self {
        LoadOptions {
            strict: false,
            ..Self::default()
        }
    }
    /// The same options with a key prefix (`"encoder"` or `"encoder."`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// The same options, stripping `prefix` (`"module."`) from the keys that have it.
    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.strip_prefix = prefix.into();
        self
    }
    /// The same options, converting tensors to the model's dtypes (`true`) or refusing
    /// other dtypes (`false`, the default).
    pub fn convert_dtypes(mut self, convert: bool) -> Self {
        self.convert_dtypes = convert;
        self
    }
    /// The same options, borrowing tensors from the file's memory mapping (`true`) or
    /// copying them into the model (`false`, the default); see [`LoadOptions::mmap`].
    pub fn mmap(mut self, mmap: bool) -> Self {
        self.mmap = mmap;
        self
    }
}

enum Target {
    Param(Param),
    Buffer(Buffer),
}

/// What the model expects under one key.
fn expectation(t: &Target) -> (Vec<Option<usize>>, DType) {
    match t {
        Target::Param(p) => {
            let dtype = p.data().map(|d| d.dtype()).unwrap_or(DType::F32);
            (p.partial_shape(), dtype)
        }
        Target::Buffer(b) => (b.partial_shape(), b.get().dtype()),
    }
}

fn fits(expected: &[Option<usize>], found: &[usize]) -> bool {
    expected.len() == found.len()
        && expected
            .iter()
            .zip(found)
            .all(|(e, f)| e.is_none_or(|e| e == *f))
}

/// Where the loader takes tensors from: an in-memory state dict, or a native file read
/// lazily (metadata first, data straight into the model's memory).
pub(crate) trait Source {
    /// Keys in source order.
    fn keys(&self) -> Vec<&str>;
    /// Dtype and shape under `key`.
    fn meta(&self, key: &str) -> Option<(DType, &[usize])>;
    /// The tensor under `key`, as a new tensor.
    fn tensor(&self, key: &str) -> Result<Tensor>;
    /// Writes the data under `key` into `dst` (same byte length), or returns Ok(false)
    /// when this source prefers handing out whole tensors ([`Source::tensor`]).
    fn fill(&self, key: &str, dst: &mut [u8]) -> Result<bool>;
    /// The tensor under `key` borrowing the source's memory (a file mapping), or
    /// Ok(None) when this source has none to lend.
    fn borrowed(&self, key: &str) -> Result<Option<Tensor>> {
        let _ = key;
        Ok(None)
    }
}

impl Source for StateDict {
    fn keys(&self) -> Vec<&str> {
        StateDict::keys(self).collect()
    }
    fn meta(&self, key: &str) -> Option<(DType, &[usize])> {
        self.get(key).map(|t| (t.dtype(), t.shape()))
    }
    fn tensor(&self, key: &str) -> Result<Tensor> {
        self.get(key).cloned().ok_or_else(|| Error::MissingKey {
            container: "state dict".into(),
            key: key.to_string(),
        })
    }
    // sharing the storage (set_data) beats copying it
    fn fill(&self, _key: &str, _dst: &mut [u8]) -> Result<bool> {
        Ok(false)
    }
}

fn same_values(src: &dyn Source, a: &str, b: &str) -> Result<bool> {
    let (ta, tb) = (src.tensor(a)?, src.tensor(b)?);
    if ta.same_storage(&tb) {
        return Ok(true);
    }
    Ok(ta.shape() == tb.shape()
        && ta.dtype() == tb.dtype()
        && super::bytes::le_bytes(&ta)? == super::bytes::le_bytes(&tb)?)
}

/// Loads `sd` into `model` (see [`crate::ModuleExt::load_state_dict`]).
pub(crate) fn load_into(
    model: &dyn Module,
    sd: &StateDict,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    load_from(model, sd, opts)
}

/// Matches `src` against the model, reports, and (unless a strict load found problems)
/// copies the data in.
pub(crate) fn load_from(
    model: &dyn Module,
    src: &dyn Source,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    let prefix = match opts.prefix.as_str() {
        "" => String::new(),
        p if p.ends_with('.') => p.to_string(),
        p => format!("{p}."),
    };
    let src_keys = src.keys();
    // model name -> full source key; when stripping makes two keys one name, the first
    // wins and the other is reported unexpected
    let mut index: HashMap<&str, &str> = HashMap::new();
    for k in &src_keys {
        if let Some(r) = k.strip_prefix(prefix.as_str()) {
            let r = match opts.strip_prefix.as_str() {
                "" => r,
                s => r.strip_prefix(s).unwrap_or(r),
            };
            index.entry(r).or_insert(*k);
        }
    }

    let mut targets: Vec<(String, Target)> = Vec::new();
    walk(model, |it| match it {
        Item::Param(name, p) => targets.push((name, Target::Param(p.clone()))),
        Item::Buffer(name, b) => targets.push((name, Target::Buffer(b.clone()))),
        _ => {}
    });

    let mut report = LoadReport::default();
    let mut converted = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    // a tied parameter is visited under each of its names: load it once
    let mut first_of: HashMap<u64, String> = HashMap::new();
    // (target, source key, dtype to convert to when the file's differs)
    let mut plan: Vec<(Target, &str, Option<DType>)> = Vec::new();
    // module path -> the size its deferred tensors' unknown dims take in this load, and
    // the key that gave it
    let mut learned: HashMap<String, (usize, String)> = HashMap::new();
    for (name, target) in targets {
        let key = format!("{prefix}{name}");
        let Some(&k) = index.get(name.as_str()) else {
            report.missing.push(key);
            continue;
        };
        used.insert(k);
        let Some((found_dtype, found_shape)) = src.meta(k) else {
            report.missing.push(key);
            continue;
        };
        let (shape, dtype) = expectation(&target);
        let mut convert = None;
        if found_dtype != dtype {
            if !opts.convert_dtypes {
                report.mismatched.push(Mismatch::DType {
                    key,
                    expected: dtype,
                    found: found_dtype,
                });
                continue;
            }
            convert = Some(dtype);
        }
        if !fits(&shape, found_shape) {
            report.mismatched.push(Mismatch::Shape {
                key,
                expected: shape,
                found: found_shape.to_vec(),
            });
            continue;
        }
        // Rule: the unknown dims of one module's deferred tensors stand for the one size
        // the lazy module learns (in_features, in_channels / groups, num_features), so
        // the file must give them one value: LazyBatchNorm's weight [4] with a
        // running_var [5] is refused, not loaded into a layer that cannot run.
        let unknown: Vec<usize> = shape
            .iter()
            .zip(found_shape)
            .filter_map(|(e, f)| e.is_none().then_some(*f))
            .collect();
        if let Some(&v) = unknown.first() {
            let owner = name.rsplit_once('.').map_or("", |(o, _)| o).to_string();
            let (size, first) = learned.entry(owner).or_insert((v, key.clone())).clone();
            if unknown.iter().any(|&u| u != size) {
                report.mismatched.push(Mismatch::Deferred {
                    key,
                    found: found_shape.to_vec(),
                    first,
                    size,
                });
                continue;
            }
        }
        if let Target::Param(p) = &target {
            if let Some(first) = first_of.get(&p.id()) {
                if same_values(src, first, k)? {
                    report.loaded.push(key);
                } else {
                    report.mismatched.push(Mismatch::Tied {
                        key,
                        first: first.clone(),
                    });
                }
                continue;
            }
            first_of.insert(p.id(), k.to_string());
        }
        if convert.is_some() {
            converted.push((key.clone(), found_dtype, dtype));
        }
        report.loaded.push(key);
        plan.push((target, k, convert));
    }
    report.converted = converted.into_boxed_slice();
    report.unexpected = src_keys
        .iter()
        .filter(|k| k.starts_with(prefix.as_str()) && !used.contains(*k))
        .map(|k| k.to_string())
        .collect();

    if opts.strict && !report.is_clean() {
        return Err(Error::StateDict(report));
    }
    for (target, k, convert) in plan {
        let read = |k: &str| match convert {
            Some(d) => src.tensor(k)?.to_dtype(d),
            None => src.tensor(k),
        };
        let borrow = |dev: &crate::Device| -> Result<Option<Tensor>> {
            match opts.mmap && convert.is_none() && dev.is_cpu() {
                true => src.borrowed(k),
                false => Ok(None),
            }
        };
        match target {
            Target::Param(p) => {
                if let Some(t) = borrow(&p.device())? {
                    p.set_data(&t)?;
                    continue;
                }
                let mut filled = false;
                if p.device().is_cpu() && convert.is_none() {
                    p.overwrite_in_place(|dst| {
                        filled = src.fill(k, dst)?;
                        Ok(())
                    })?;
                }
                if !filled {
                    p.set_data(&read(k)?.to_device(&p.device())?)?;
                }
            }
            Target::Buffer(b) => {
                let dev = b.get().device();
                match borrow(&dev)? {
                    Some(t) => b.set(&t),
                    None => b.set(&read(k)?.to_device(&dev)?),
                }
            }
        }
    }
    Ok(report)
}

impl Source for TensorFile<'_> {
    fn keys(&self) -> Vec<&str> {
        self.entries().iter().map(|e| e.name.as_str()).collect()
    }
    fn meta(&self, key: &str) -> Option<(DType, &[usize])> {
        let e = self.find(key)?;
        Some((e.dtype, &e.shape))
    }
    fn tensor(&self, key: &str) -> Result<Tensor> {
        self.read_tensor(self.entry(key)?)
    }
    fn fill(&self, key: &str, dst: &mut [u8]) -> Result<bool> {
        self.read_at(self.entry(key)?, dst)?;
        Ok(true)
    }
    fn borrowed(&self, key: &str) -> Result<Option<Tensor>> {
        self.borrow_tensor(self.entry(key)?)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_dtypes;
