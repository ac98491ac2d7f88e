//! `Constant`: what a `#[module(constant)]` field may hold (a tensor moved with the
//! model but neither trained nor saved, the book's `FixedHiddenMLP::rand_weight`).

use super::{Visitor, VisitorMut};
use crate::Tensor;

/// A field registered through [`Visitor::constant`] by `#[derive(Module)]`'s
/// `#[module(constant)]`: a [`Tensor`] or an `Option<Tensor>`.
#[diagnostic::on_unimplemented(
    message = "`#[module(constant)]` field of type `{Self}` is not a tensor",
    label = "expected `Tensor` or `Option<Tensor>`",
    note = "a constant is a `Tensor` moved with the model but neither trained nor saved; use `#[module(skip)]` for other plain data"
)]
pub trait Constant {
    /// Reports the tensor (if any) as the constant `name`.
    fn register_constant<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>);
    /// Mutable twin of [`Constant::register_constant`].
    fn register_constant_mut(&mut self, name: &str, v: &mut dyn VisitorMut);
}

impl Constant for Tensor {
    fn register_constant<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        v.constant(name, self)
    }
    fn register_constant_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        v.constant(name, self)
    }
}

impl Constant for Option<Tensor> {
    fn register_constant<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        if let Some(t) = self {
            v.constant(name, t)
        }
    }
    fn register_constant_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        if let Some(t) = self {
            v.constant(name, t)
        }
    }
}
