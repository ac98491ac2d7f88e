//! Loading a state dict into a model: match names, check shapes and dtypes, report every
//! problem at once, and change nothing unless the load goes ahead.

use super::report::{LoadReport, Mismatch};
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
    pub prefix: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            strict: true,
            prefix: String::new(),
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
        Target::Buffer(b) => {
            let v = b.get();
            (v.shape().iter().map(|&d| Some(d)).collect(), v.dtype())
        }
    }
}

fn fits(expected: &[Option<usize>], found: &[usize]) -> bool {
    expected.len() == found.len()
        && expected
            .iter()
            .zip(found)
            .all(|(e, f)| e.is_none_or(|e| e == *f))
}

fn same_values(a: &Tensor, b: &Tensor) -> Result<bool> {
    if a.same_storage(b) {
        return Ok(true);
    }
    Ok(a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && super::tensor_serde::le_bytes(a)? == super::tensor_serde::le_bytes(b)?)
}

/// Loads `sd` into `model` (see [`crate::ModuleExt::load_state_dict`]).
pub(crate) fn load_into(
    model: &dyn Module,
    sd: &StateDict,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    let prefix = match opts.prefix.as_str() {
        "" => String::new(),
        p if p.ends_with('.') => p.to_string(),
        p => format!("{p}."),
    };
    let index: HashMap<&str, &Tensor> = sd
        .iter()
        .filter_map(|(k, t)| k.strip_prefix(prefix.as_str()).map(|k| (k, t)))
        .collect();

    let mut targets: Vec<(String, Target)> = Vec::new();
    walk(model, |it| match it {
        Item::Param(name, p) => targets.push((name, Target::Param(p.clone()))),
        Item::Buffer(name, b) => targets.push((name, Target::Buffer(b.clone()))),
        _ => {}
    });

    let mut report = LoadReport::default();
    let mut used: HashSet<&str> = HashSet::new();
    // a tied parameter is visited under each of its names: load it once
    let mut first_of: HashMap<u64, (String, Tensor)> = HashMap::new();
    let mut plan: Vec<(Target, Tensor)> = Vec::new();
    for (name, target) in targets {
        let key = format!("{prefix}{name}");
        let Some((&k, &t)) = index.get_key_value(name.as_str()) else {
            report.missing.push(key);
            continue;
        };
        used.insert(k);
        let (shape, dtype) = expectation(&target);
        if t.dtype() != dtype {
            report.mismatched.push(Mismatch::DType {
                key,
                expected: dtype,
                found: t.dtype(),
            });
            continue;
        }
        if !fits(&shape, t.shape()) {
            report.mismatched.push(Mismatch::Shape {
                key,
                expected: shape,
                found: t.shape().to_vec(),
            });
            continue;
        }
        if let Target::Param(p) = &target {
            if let Some((first, v)) = first_of.get(&p.id()) {
                if !same_values(v, t)? {
                    report.mismatched.push(Mismatch::Tied {
                        key,
                        first: first.clone(),
                    });
                } else {
                    report.loaded.push(key);
                }
                continue;
            }
            first_of.insert(p.id(), (key.clone(), t.clone()));
        }
        report.loaded.push(key);
        plan.push((target, t.clone()));
    }
    report.unexpected = index
        .keys()
        .filter(|k| !used.contains(*k))
        .map(|k| format!("{prefix}{k}"))
        .collect();
    // index is a hash map: list unexpected keys in file order
    let order: HashMap<&str, usize> = sd.keys().enumerate().map(|(i, k)| (k, i)).collect();
    report
        .unexpected
        .sort_by_key(|k| order.get(k.as_str()).copied().unwrap_or(usize::MAX));

    if opts.strict && !report.is_clean() {
        return Err(Error::StateDict(report));
    }
    for (target, t) in plan {
        match target {
            Target::Param(p) => p.set_data(&t.to_device(&p.device())?)?,
            Target::Buffer(b) => {
                let dev = b.get().device();
                b.set(&t.to_device(&dev)?)
            }
        }
    }
    Ok(report)
}
