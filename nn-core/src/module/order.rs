//! PyTorch's registration order for `#[derive(Module)]`: a module's own parameters,
//! then its own buffers (and constants), then its children, each group in field order.
//!
//! PyTorch keeps `_parameters`, `_buffers` and `_modules` in three dicts, so
//! `named_parameters()` lists `self`'s parameters before any child's and `state_dict()`
//! lists own parameters, own buffers, then each child: a struct `{ tok: Embedding,
//! pos: Param }` gives `pos, tok.weight`. The derive calls the field registrations
//! three times through a [`Phase`] filter instead of sorting fields by their type,
//! which a macro cannot see through aliases or wrappers like `Option<Param>`.

use super::{Buffer, Module, Param, Visitor, VisitorMut};
use crate::Tensor;

/// Which direct contents a pass lets through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Params,
    Buffers,
    Modules,
}

const PHASES: [Phase; 3] = [Phase::Params, Phase::Buffers, Phase::Modules];

struct Filter<'v, V: ?Sized> {
    inner: &'v mut V,
    phase: Phase,
}

impl<'a, V: Visitor<'a> + ?Sized> Visitor<'a> for Filter<'_, V> {
    fn param(&mut self, name: &str, param: &'a Param) {
        if self.phase == Phase::Params {
            self.inner.param(name, param)
        }
    }
    fn buffer(&mut self, name: &str, buffer: &'a Buffer) {
        if self.phase == Phase::Buffers {
            self.inner.buffer(name, buffer)
        }
    }
    fn constant(&mut self, name: &str, tensor: &'a Tensor) {
        if self.phase == Phase::Buffers {
            self.inner.constant(name, tensor)
        }
    }
    fn module(&mut self, name: &str, module: &'a dyn Module) {
        if self.phase == Phase::Modules {
            self.inner.module(name, module)
        }
    }
}

impl<V: VisitorMut + ?Sized> VisitorMut for Filter<'_, V> {
    fn param(&mut self, name: &str, param: &mut Param) {
        if self.phase == Phase::Params {
            self.inner.param(name, param)
        }
    }
    fn buffer(&mut self, name: &str, buffer: &mut Buffer) {
        if self.phase == Phase::Buffers {
            self.inner.buffer(name, buffer)
        }
    }
    fn constant(&mut self, name: &str, tensor: &mut Tensor) {
        if self.phase == Phase::Buffers {
            self.inner.constant(name, tensor)
        }
    }
    fn module(&mut self, name: &str, module: &mut dyn Module) {
        if self.phase == Phase::Modules {
            self.inner.module(name, module)
        }
    }
}

/// Runs `fields` (the registrations of a module's fields, in field order) once per
/// kind of content: parameters, then buffers and constants, then child modules.
/// Called by the code `#[derive(Module)]` generates for [`Module::visit`].
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::module::{visit_in_order, Visitor};
/// use nn::{Embedding, Module, ModuleExt, Param, Tensor};
/// struct Gpt { tok: Embedding, pos: Param }
/// impl Module for Gpt {
///     fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
///         visit_in_order(v, |v| {
///             self.tok.register("tok", v);
///             self.pos.register("pos", v);
///         })
///     }
///     fn visit_mut(&mut self, v: &mut dyn nn::module::VisitorMut) {
///         nn::module::visit_in_order_mut(v, |v| {
///             self.tok.register_mut("tok", v);
///             self.pos.register_mut("pos", v);
///         })
///     }
/// }
/// let m = Gpt { tok: Embedding::new(5, 2)?, pos: Param::new(Tensor::zeros(&[3, 2]))? };
/// let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["pos", "tok.weight"]);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn visit_in_order<'a>(v: &mut dyn Visitor<'a>, fields: impl Fn(&mut dyn Visitor<'a>)) {
    for phase in PHASES {
        fields(&mut Filter {
            inner: &mut *v,
            phase,
        });
    }
}

/// The [`VisitorMut`] twin of [`visit_in_order`], for [`Module::visit_mut`].
pub fn visit_in_order_mut(v: &mut dyn VisitorMut, mut fields: impl FnMut(&mut dyn VisitorMut)) {
    for phase in PHASES {
        fields(&mut Filter {
            inner: &mut *v,
            phase,
        });
    }
}
