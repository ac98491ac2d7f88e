//! Procedural macros for `nn`: `#[derive(Module)]` and `sequential!`.
//!
//! Use them through the facade (`use nn::{Module, sequential};`): generated code names
//! `::nn::...` paths. Each macro parses its input into our own model (`ast.rs`,
//! `attr.rs`, `sequential.rs`), checks the rules that span several parts (`valid.rs`),
//! then generates code (`expand.rs`). Every problem is a `syn::Error` on the offending
//! tokens, all reported at once; invalid input still gets a stub impl so that one
//! mistake does not cascade into unrelated errors.

mod ast;
mod attr;
mod expand;
mod sequential;
mod valid;

use proc_macro::TokenStream;

/// Implements `nn::Module` (and `Display`, printing the PyTorch-style tree) for a
/// struct or an enum whose fields are modules, parameters or buffers.
///
/// Every field is a child, registered in declaration order under its name (tuple
/// fields under `0`, `1`, ...), so `named_parameters()` of
/// `struct Mlp { hidden: Linear, out: Linear }` gives `hidden.weight`, `hidden.bias`,
/// `out.weight`, `out.bias` with no registration code. A field's type must implement
/// `nn::Module`: layers, `Param`, `Buffer` (saved, not trained), `Option`, `Box`,
/// `Vec`, arrays and tuples of those, and other derived modules.
///
/// ```ignore
/// use nn::{Module, Linear, Tensor};
///
/// #[derive(Module)]
/// struct FixedHiddenMlp {
///     linear: Linear,
///     #[module(constant)]
///     rand_weight: Tensor, // moved with the model, neither trained nor saved
///     #[module(skip)]
///     steps: usize,        // plain data, not visited
/// }
/// ```
///
/// Field attributes, `#[module(...)]`:
/// - `skip`: plain data (config, closures, counters); not visited at all.
/// - `constant`: a `Tensor` or `Option<Tensor>` reported through
///   `Visitor::constant`: moved by `to_device`, absent from `parameters()` and
///   `state_dict()`.
/// - `rename = "name"`: the child's name (non-empty, without `.`).
///
/// Container attributes: `name = "Printed"` (what `module_name` returns and `Display`
/// prints; default: the type's name), `no_display` (do not generate `Display`).
///
/// Generic structs get a `FieldType: nn::Module` bound for each registered field whose
/// type mentions a type parameter. Enums visit the active variant; a variant with a
/// single unnamed, unrenamed module field is transparent: it registers exactly as its
/// inner value (name, parameters, printing), like `Box` or `Option`.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}

/// Builds an `nn::Sequential` from a list of layers, checking sizes at compile time
/// where they are literals.
///
/// ```ignore
/// use nn::{sequential, Linear, ReLU};
/// let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
/// // = nn::Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)))
/// let named = sequential!["hidden" => Linear::new(4, 8), ReLU, "out" => Linear::lazy(1)];
/// // children named `hidden`, `1`, `out`
/// ```
///
/// Entries are expressions, optionally named (`"name" => expr`), plus the shape form
/// `Linear(in => out)` / `Linear(_ => out, bias = false)`, whose `_` is filled with the
/// output size of the previous layer when the macro knows it (else the layer is
/// `Linear::lazy(out)`, sized at the first forward). A literal input size that differs
/// from the previous literal output size is a compile error. The full grammar and the
/// size-tracking rule are documented on the input type in `sequential.rs`; at most 16
/// entries (nest a `sequential!` for more).
#[proc_macro]
pub fn sequential(input: TokenStream) -> TokenStream {
    sequential::expand(input.into()).into()
}
