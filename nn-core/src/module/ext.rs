//! Everything a model can do, written once on top of [`Module::visit`]: named
//! traversal, state dicts, selection by regex, init, freezing, train/eval, device moves.

use super::{Buffer, Module, Param, Visitor, VisitorMut};
use crate::init::Init;
use crate::{Device, Error, Result, Tensor};
use std::collections::HashSet;

/// One item met by a named walk.
#[allow(dead_code)]
pub(crate) enum Item<'a> {
    Param(String, &'a Param),
    Buffer(String, &'a Buffer),
    Constant(String, &'a Tensor),
    Module(String, &'a dyn Module),
}

fn join(path: &str, name: &str) -> String {
    match (path.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => path.to_string(),
        _ => format!("{path}.{name}"),
    }
}

struct Walk<F> {
    path: String,
    f: F,
}

impl<'a, F: FnMut(Item<'a>)> Visitor<'a> for Walk<F> {
    fn param(&mut self, name: &str, p: &'a Param) {
        let full = join(&self.path, name);
        p.learn_path(&full);
        (self.f)(Item::Param(full, p))
    }
    fn buffer(&mut self, name: &str, b: &'a Buffer) {
        (self.f)(Item::Buffer(join(&self.path, name), b))
    }
    fn constant(&mut self, name: &str, t: &'a Tensor) {
        (self.f)(Item::Constant(join(&self.path, name), t))
    }
    fn module(&mut self, name: &str, m: &'a dyn Module) {
        let full = join(&self.path, name);
        (self.f)(Item::Module(full.clone(), m));
        let saved = std::mem::replace(&mut self.path, full);
        m.visit(self);
        self.path = saved;
    }
}

/// Walks `root` depth-first in registration order, calling `f` on every item with its
/// full dotted name (the root itself is not reported). Every parameter met learns its
/// path ([`Param::name`]).
pub(crate) fn walk<'a>(root: &'a (impl Module + ?Sized), f: impl FnMut(Item<'a>)) {
    let mut w = Walk {
        path: String::new(),
        f,
    };
    root.visit(&mut w);
}

/// The parameters of a tree, each once, in registration order, without building a name
/// string per item: the dotted path lives in one buffer, extended and cut back as the walk
/// descends (as [`walk`] does, every parameter met learns its path). `parameters()` and
/// `zero_grad()` run every training step, so they cost no allocation per parameter.
struct ParamWalk<F> {
    path: String,
    seen: HashSet<u64, IdHash>,
    f: F,
}

impl<F> ParamWalk<F> {
    /// Appends `.name` (or `name` at the root) to the path; returns the length to cut
    /// back to.
    fn enter(&mut self, name: &str) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() && !name.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
        len
    }
}

impl<'a, F: FnMut(&'a Param)> Visitor<'a> for ParamWalk<F> {
    fn param(&mut self, name: &str, p: &'a Param) {
        let len = self.enter(name);
        p.learn_path(&self.path);
        self.path.truncate(len);
        if self.seen.insert(p.id()) {
            (self.f)(p)
        }
    }
    fn module(&mut self, name: &str, m: &'a dyn Module) {
        let len = self.enter(name);
        m.visit(self);
        self.path.truncate(len);
    }
}

/// Hashes parameter identities (process-unique counters, no attacker chooses them) with
/// one multiply instead of SipHash: the set of seen parameters is filled every step.
#[derive(Clone, Copy, Default)]
struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing: the high bits (which hashbrown uses) depend on every bit of v
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Calls `f` once on every distinct parameter of `root`, in registration order.
pub(crate) fn each_param<'a>(root: &'a (impl Module + ?Sized), f: impl FnMut(&'a Param)) {
    let mut w = ParamWalk {
        path: String::new(),
        seen: HashSet::with_hasher(IdHash),
        f,
    };
    root.visit(&mut w);
}

/// Teaches the parameters of `child`, about to be placed under `name` in a container,
/// their paths relative to that container (an outer model's traversal extends them).
pub(crate) fn learn_paths(name: &str, child: &dyn Module) {
    let mut w = Walk {
        path: String::new(),
        f: |_: Item<'_>| {},
    };
    child.register(name, &mut w);
}

/// One item met by a mutable walk.
#[allow(dead_code)] // names are read by the state-dict loader
pub(crate) enum ItemMut<'a> {
    Param(&'a str, &'a mut Param),
    Buffer(&'a str, &'a mut Buffer),
    Constant(&'a str, &'a mut Tensor),
    Module(&'a str, &'a mut dyn Module),
}

struct WalkMut<F> {
    path: String,
    f: F,
}

impl<F: FnMut(ItemMut<'_>)> VisitorMut for WalkMut<F> {
    fn param(&mut self, name: &str, p: &mut Param) {
        let n = join(&self.path, name);
        p.learn_path(&n);
        (self.f)(ItemMut::Param(&n, p))
    }
    fn buffer(&mut self, name: &str, b: &mut Buffer) {
        let n = join(&self.path, name);
        (self.f)(ItemMut::Buffer(&n, b))
    }
    fn constant(&mut self, name: &str, t: &mut Tensor) {
        let n = join(&self.path, name);
        (self.f)(ItemMut::Constant(&n, t))
    }
    fn module(&mut self, name: &str, m: &mut dyn Module) {
        let full = join(&self.path, name);
        (self.f)(ItemMut::Module(&full, m));
        let saved = std::mem::replace(&mut self.path, full);
        m.visit_mut(self);
        self.path = saved;
    }
}

pub(crate) fn walk_mut(root: &mut (impl Module + ?Sized), f: impl FnMut(ItemMut<'_>)) {
    let mut w = WalkMut {
        path: String::new(),
        f,
    };
    root.visit_mut(&mut w);
}

/// An ordered map from dotted names to tensors (PyTorch's `state_dict()`).
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends or replaces an entry (order of first insertion is kept).
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = t,
            None => self.entries.push((name, t)),
        }
    }
    /// The tensor under `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
    /// Names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }
    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// From entries whose names are known to be distinct (no quadratic duplicate check:
    /// deserializers check with a hash set).
    pub(crate) fn from_unique_entries(entries: Vec<(String, Tensor)>) -> Self {
        StateDict { entries }
    }
    /// Consumes into the ordered entries.
    pub fn into_entries(self) -> Vec<(String, Tensor)> {
        self.entries
    }
}

impl FromIterator<(String, Tensor)> for StateDict {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        let mut sd = StateDict::new();
        for (n, t) in iter {
            sd.insert(n, t);
        }
        sd
    }
}

/// The model API, available on every [`Module`] (including `dyn Module`).
pub trait ModuleExt: Module {
    /// Parameters with dotted names in registration order; a tied parameter is listed
    /// once, at its first name (PyTorch's `named_parameters()`).
    fn named_parameters(&self) -> Vec<(String, Param)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        walk(self, |it| {
            if let Item::Param(name, p) = it {
                if seen.insert(p.id()) {
                    out.push((name, p.clone()));
                }
            }
        });
        out
    }

    /// Parameter handles, each once.
    fn parameters(&self) -> Vec<Param> {
        let mut out = Vec::new();
        each_param(self, |p| out.push(p.clone()));
        out
    }

    /// Buffers with dotted names, each once.
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        let mut out: Vec<(String, Buffer)> = Vec::new();
        walk(self, |it| {
            if let Item::Buffer(name, b) = it {
                if !out.iter().any(|(_, o)| o.ptr_eq(b)) {
                    out.push((name, b.clone()));
                }
            }
        });
        out
    }

    /// Every sub-module with its dotted name, depth-first, parents before children
    /// (the root itself is not included).
    fn named_modules(&self) -> Vec<(String, &dyn Module)> {
        let mut out = Vec::new();
        walk(self, |it| {
            if let Item::Module(name, m) = it {
                out.push((name, m));
            }
        });
        out
    }

    /// Name -> tensor for every parameter and buffer, as PyTorch's `state_dict()`:
    /// a tied parameter appears under each of its names.
    fn state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        let mut err = None;
        walk(self, |it| match it {
            Item::Param(name, p) => match p.data() {
                Ok(t) => sd.insert(name, t),
                Err(_) => {
                    err.get_or_insert(Error::Uninitialized { param: name });
                }
            },
            Item::Buffer(name, b) => sd.insert(name, b.get()),
            _ => {}
        });
        match err {
            Some(e) => Err(e),
            None => Ok(sd),
        }
    }

    /// Parameters whose full name matches the regular expression `pattern` anywhere
    /// (Gluon's `collect_params('.*weight')`; anchor with `^...$` for whole names).
    fn parameters_matching(&self, pattern: &str) -> Result<Vec<(String, Param)>> {
        let re = regex_lite::Regex::new(pattern).map_err(|e| {
            Error::invalid_config(
                "parameters_matching",
                "parameter pattern",
                format!("`{pattern}`"),
                e.to_string(),
            )
        })?;
        Ok(self
            .named_parameters()
            .into_iter()
            .filter(|(n, _)| re.is_match(n))
            .collect())
    }

    /// Total number of scalar parameters (tied ones counted once; deferred ones as 0).
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Param::numel).sum()
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        each_param(self, Param::zero_grad);
    }

    /// Freezes (false) or unfreezes (true) every parameter.
    fn set_requires_grad(&self, on: bool) {
        for p in self.parameters() {
            p.set_requires_grad(on);
        }
    }

    /// Training mode for every module (dropout active).
    fn train(&mut self) {
        self.set_training(true);
        walk_mut(self, |it| {
            if let ItemMut::Module(_, m) = it {
                m.set_training(true)
            }
        });
    }

    /// Evaluation mode for every module (dropout off).
    fn eval(&mut self) {
        self.set_training(false);
        walk_mut(self, |it| {
            if let ItemMut::Module(_, m) = it {
                m.set_training(false)
            }
        });
    }

    /// Calls `f` on every sub-module of concrete type `T` (and on the root if it is one);
    /// returns how many were found (the book's `net.apply(init_normal)`).
    fn apply<T: Module>(&self, mut f: impl FnMut(&T) -> Result<()>) -> Result<usize> {
        let mut found: Vec<&T> = Vec::new();
        if let Some(t) = (self.as_module() as &dyn std::any::Any).downcast_ref::<T>() {
            found.push(t);
        }
        walk(self, |it| {
            if let Item::Module(_, m) = it {
                if let Some(t) = m.downcast_ref::<T>() {
                    found.push(t);
                }
            }
        });
        for t in &found {
            f(t)?;
        }
        Ok(found.len())
    }

    /// Re-initializes every parameter with `init` (Gluon's `initialize(force_reinit=True)`).
    fn init_parameters(&self, init: &Init) -> Result<()> {
        for p in self.parameters() {
            p.reinit(init)?;
        }
        Ok(())
    }

    /// Re-initializes the parameters whose names match `pattern`; returns how many.
    fn init_matching(&self, pattern: &str, init: &Init) -> Result<usize> {
        let ps = self.parameters_matching(pattern)?;
        for (_, p) in &ps {
            p.reinit(init)?;
        }
        Ok(ps.len())
    }

    /// Moves parameters, buffers and constants to `device`. Tied parameters stay tied
    /// (they are one object, moved once).
    fn to_device(&mut self, device: &Device) -> Result<()> {
        let mut err = None;
        let mut seen = HashSet::new();
        walk_mut(self, |it| {
            let r = match it {
                // NOTE: spelled out: `p.to_device(..)` on a `&mut Param` resolves to
                // `ModuleExt::to_device` (Param and Buffer are Modules, whose walks are
                // empty), which moved nothing (found by the host-run CUDA device tests)
                ItemMut::Param(_, p) if seen.insert(p.id()) => Param::to_device(p, device),
                ItemMut::Buffer(_, b) => Buffer::to_device(b, device),
                ItemMut::Constant(_, t) => t.to_device(device).map(|m| *t = m),
                _ => Ok(()),
            };
            if let Err(e) = r {
                err.get_or_insert(e);
            }
        });
        err.map_or(Ok(()), Err)
    }

    /// An independent copy: same architecture and values, new parameters (ties inside
    /// the copy are preserved).
    fn deep_copy(&self) -> Self
    where
        Self: Clone + Sized,
    {
        let mut c = self.clone();
        let mut map: std::collections::HashMap<u64, Param> = std::collections::HashMap::new();
        walk_mut(&mut c, |it| match it {
            ItemMut::Param(_, p) => {
                let fresh = map.entry(p.id()).or_insert_with(|| p.deep_copy()).clone();
                *p = fresh;
            }
            ItemMut::Buffer(_, b) => *b = Buffer::new(b.get()),
            _ => {}
        });
        c
    }

    /// Saves the state dict (parameters and buffers) to `path`: safetensors when the name
    /// ends in `.safetensors`, the native format otherwise (see [`crate::io`]). Atomic.
    fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::io::save_module(self.as_module(), path.as_ref())
    }

    /// Loads a state dict file (native or safetensors) strictly: every key must match
    /// a parameter or buffer with the same shape and dtype, or nothing is loaded and the
    /// error ([`Error::StateDict`]) lists every problem. Deferred (lazy) parameters take
    /// their shapes from the file.
    fn load(&self, path: impl AsRef<std::path::Path>) -> Result<crate::io::LoadReport> {
        crate::io::load_module(self.as_module(), path.as_ref(), &Default::default())
    }

    /// Loads a state dict file with options (non-strict, key prefix).
    fn load_with(
        &self,
        path: impl AsRef<std::path::Path>,
        opts: &crate::io::LoadOptions,
    ) -> Result<crate::io::LoadReport> {
        crate::io::load_module(self.as_module(), path.as_ref(), opts)
    }

    /// Copies `sd`'s tensors into the parameters and buffers of the same names (PyTorch's
    /// `load_state_dict`). A tied parameter is loaded once (its keys must agree).
    /// Strict mode fails with one [`Error::StateDict`] listing all missing, unexpected
    /// and mismatched keys and changes nothing; non-strict mode loads what fits and
    /// returns the same report.
    fn load_state_dict(
        &self,
        sd: &StateDict,
        opts: &crate::io::LoadOptions,
    ) -> Result<crate::io::LoadReport> {
        crate::io::load_state_dict(self.as_module(), sd, opts)
    }

    /// The PyTorch-style tree (what `Display` prints for derived modules).
    fn repr(&self) -> String {
        super::repr(self.as_module())
    }
}

impl<M: Module + ?Sized> ModuleExt for M {}
