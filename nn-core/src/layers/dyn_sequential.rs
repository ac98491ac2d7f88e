//! `DynSequential`: a chain built at run time (the book's `MySequential`, `block2()`),
//! fully visible to the traversal. forward(x) runs the blocks in insertion order.

use crate::module::{Forward, Layer, Module, Visitor, VisitorMut};
use crate::{Error, Result, Tensor};

/// A runtime-built chain of boxed layers, optionally named.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::layers::{DynSequential, Linear, ReLU};
/// use nn::module::{Forward, ModuleExt};
/// let mut net = DynSequential::new();
/// for i in 0..2 {
///     net.push_named(format!("block {i}"), Linear::new(4, 4))?;
///     net.push(ReLU);
/// }
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names[0], "block 0.weight");
/// assert_eq!(net.forward(&nn::Tensor::rand(&[1, 4]))?.shape(), &[1, 4]);
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Default)]
pub struct DynSequential {
    layers: Vec<(String, Box<dyn Layer>)>,
}

impl DynSequential {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer named by its position.
    pub fn push(&mut self, layer: impl Layer) -> &mut Self {
        let name = self.layers.len().to_string();
        self.push_boxed_as(name, Box::new(layer));
        self
    }

    /// Appends a boxed layer named by its position.
    pub fn push_boxed(&mut self, layer: Box<dyn Layer>) -> &mut Self {
        let name = self.layers.len().to_string();
        self.push_boxed_as(name, layer);
        self
    }

    /// Places `layer` under `name`: its parameters learn their paths (`3.weight`).
    fn push_boxed_as(&mut self, name: String, layer: Box<dyn Layer>) {
        crate::module::learn_paths(&name, layer.as_module());
        self.layers.push((name, layer));
    }

    /// Appends a named layer; a name already present is an error.
    pub fn push_named(&mut self, name: impl Into<String>, layer: impl Layer) -> Result<&mut Self> {
        let name = name.into();
        if name.is_empty() || name.contains('.') {
            return Err(Error::invalid_config(
                "DynSequential::push_named",
                "child name",
                format!("`{name}`"),
                "must be non-empty and contain no '.'",
            ));
        }
        if self.layers.iter().any(|(n, _)| *n == name) {
            return Err(Error::invalid_config(
                "DynSequential::push_named",
                "child name",
                format!("`{name}`"),
                "a child of that name exists already",
            ));
        }
        self.push_boxed_as(name, Box::new(layer));
        Ok(self)
    }

    /// Builder form of [`DynSequential::push`].
    pub fn with(mut self, layer: impl Layer) -> Self {
        self.push(layer);
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether it has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Layer `i`, or an error naming the index and the length.
    pub fn get(&self, i: usize) -> Result<&dyn Layer> {
        self.layers
            .get(i)
            .map(|(_, l)| l.as_ref())
            .ok_or(Error::IndexOutOfRange {
                op: "DynSequential::get",
                index: i as i64,
                size: self.layers.len(),
            })
    }

    /// Layer `i` as a concrete type (the book's `net[0]` then `.weight`), or an error.
    pub fn layer<T: Module>(&self, i: usize) -> Result<&T> {
        let l = self.get(i)?;
        l.downcast_ref::<T>().ok_or_else(|| Error::WrongType {
            what: format!("DynSequential layer {i}"),
            expected: crate::module::short_type_name(std::any::type_name::<T>()),
            found: l.module_name(),
        })
    }

    /// The layer named `name`.
    pub fn by_name(&self, name: &str) -> Option<&dyn Layer> {
        self.layers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.as_ref())
    }

    /// Names and layers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &dyn Layer)> {
        self.layers.iter().map(|(n, l)| (n.as_str(), l.as_ref()))
    }
}

impl std::ops::Index<usize> for DynSequential {
    type Output = dyn Layer;
    /// Like `Vec` indexing, panics when out of range; use [`DynSequential::get`] for a `Result`.
    fn index(&self, i: usize) -> &dyn Layer {
        self.layers[i].1.as_ref()
    }
}

impl Module for DynSequential {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        for (n, l) in &self.layers {
            l.register(n, v);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        for (n, l) in &mut self.layers {
            l.register_mut(n, v);
        }
    }
    fn module_name(&self) -> String {
        "Sequential".into()
    }
}

impl Forward for DynSequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // a Linear followed by a ReLU runs fused, as in Sequential
        let mut run = super::sequential::ChainRunner::new(x);
        for (name, l) in &self.layers {
            run.push(name, l.as_ref())?;
        }
        run.finish()
    }
}

impl std::fmt::Display for DynSequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::module::repr(self))
    }
}

impl std::fmt::Debug for DynSequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::module::repr(self))
    }
}
