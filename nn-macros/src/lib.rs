//! Procedural macros for `nn`: `#[derive(Module)]` and `sequential!`.
//!
//! Use them through the facade (`use nn::{Module, sequential};`): generated code names
//! `::nn::...` paths. Each macro runs the same pipeline: parse the input into our own
//! model (`ast.rs` and `attr.rs` for the derive, `sequential/parse.rs`), check the rules
//! that span several parts (`valid.rs`, `sequential/valid.rs`, and the size tracking of
//! `sequential/shapes.rs`), then generate code (`expand.rs`, `sequential/expand.rs`).
//! Every problem is a `syn::Error` on the offending tokens, all reported at once;
//! invalid input still gets a stub impl so that one mistake does not cascade into
//! unrelated errors.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod ast;
mod attr;
mod errors;
mod expand;
mod sequential;
mod valid;

use proc_macro::TokenStream;

/// Implements `nn::Module` (and `Display`, printing the PyTorch-style tree) for a
/// struct or an enum whose fields are modules, parameters or buffers.
///
/// Every field is a child, registered under its name (tuple fields under `0`, `1`,
/// ...), so the parameters of `Mlp` below are named `hidden.weight`, `hidden.bias`,
/// `out.weight`, `out.bias` with no registration code. The order is PyTorch's: the
/// struct's own `Param` fields, then its own `Buffer`s, then its child modules, each in
/// declaration order (`{ tok: Embedding, pos: Param }` lists `pos`, then `tok.weight`).
/// A field's type must implement `nn::Module`: layers, `Param`, `Buffer` (saved, not
/// trained), `Option`, `Box`, `Vec`, arrays and tuples of those, and other derived
/// modules; anything else is an error at the field.
///
/// ```
/// use nn::{Forward, Linear, Module, ModuleExt, Result, Tensor};
///
/// #[derive(Module)]
/// struct Mlp {
///     hidden: Linear,
///     out: Linear,
///     #[module(constant)]
///     rand_weight: Tensor, // moved with the model, neither trained nor saved
///     #[module(skip)]
///     steps: usize, // plain data, not visited
/// }
///
/// impl Forward for Mlp {
///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
///         let h = self.hidden.forward(x)?.relu()?.matmul(&self.rand_weight)?;
///         self.out.forward(&h)
///     }
/// }
///
/// let net = Mlp {
///     hidden: Linear::new(20, 256),
///     out: Linear::new(256, 10),
///     rand_weight: Tensor::rand(&[256, 256]),
///     steps: 0,
/// };
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]);
/// assert!(net.to_string().starts_with("Mlp(\n  (hidden): Linear(in_features=20"));
/// assert_eq!(net.forward(&Tensor::rand(&[2, 20]))?.shape(), &[2, 10]);
/// # Ok::<(), nn::Error>(())
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
/// type mentions a type or const parameter. Enums visit the active variant; a variant
/// with a single unnamed, unrenamed module field is transparent: it registers exactly as
/// its inner value (name, parameters, printing), like `Box` or `Option`.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}

/// Builds an `nn::Sequential` from a list of layers, checking sizes at compile time
/// where they are literals.
///
/// ```
/// use nn::{sequential, Forward, Linear, ModuleExt, ReLU, Tensor};
///
/// let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
/// // = Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)))
/// assert_eq!(net.2.in_features(), Some(256));
/// assert_eq!(net.forward(&Tensor::rand(&[2, 20]))?.shape(), &[2, 10]);
///
/// let named = sequential!["hidden" => Linear::new(4, 8), ReLU, "out" => Linear(_ => 1)];
/// let names: Vec<String> = named.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]);
///
/// let lazy = sequential![Linear(_ => 8), ReLU, Linear(_ => 1, bias = false)];
/// assert_eq!(lazy.0.in_features(), None); // unknown until the first forward
/// # Ok::<(), nn::Error>(())
/// ```
///
/// Grammar:
///
/// ```text
/// input   := entry ("," entry)* ","?            (1 to 16 entries)
/// entry   := (name "=>")? layer
/// name    := string literal, non-empty, without "." (unnamed entries are named by
///            their position; all names must differ)
/// layer   := "Linear" "(" size "=>" size ("," "bias" "=" bool)? ","? ")"   (shape form)
///          | expression                        (a value implementing Module + Forward)
/// size    := "_" | integer literal | expression   ("_" only as the input size)
/// ```
///
/// Size tracking: the macro follows the last known output size. `Linear(a => b)`,
/// `Linear::new(a, b)` and `Linear::no_bias(a, b)` with a literal `a` that differs
/// from it are a compile error on `a` ("expected 256 (output of entry 0), found 128");
/// `_` takes it, or becomes `Linear::lazy(b)` (sized at the first forward) when it is
/// unknown. A literal `b` (or `Linear::lazy(b)`) sets it; size-preserving layers
/// (`ReLU`, `Sigmoid`, `Tanh`, `Dropout`, bare or as `X(..)`, `X::new(..)`,
/// `X::default()`) keep it; anything else (`Flatten`,
/// a nested `sequential!`, a variable) makes it unknown. The shape form uses the
/// caller's `Linear`, so `nn::Linear` must be in scope. At most 16 entries: nest a
/// `sequential!` for more.
#[proc_macro]
pub fn sequential(input: TokenStream) -> TokenStream {
    sequential::expand(input.into()).into()
}
