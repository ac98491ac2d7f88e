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
///
/// A forward with several inputs (tokens and a padding mask, query/key/value) implements
/// `Forward` for a tuple: the model is then called, boxed and composed like any layer.
///
/// ```
/// use nn::{Forward, Layer, Linear, Module, ModuleExt, Result, Tensor};
///
/// /// Mean of the projected tokens, padding (mask 1) left out.
/// #[derive(Module)]
/// struct MaskedMean {
///     proj: Linear,
/// }
///
/// impl Forward<(Tensor, Tensor)> for MaskedMean {
///     /// tokens `[B, T, 4]`, padding mask `[B, T]` (1 = padding) -> `[B, 2]`
///     fn forward(&self, (tokens, mask): &(Tensor, Tensor)) -> Result<Tensor> {
///         let keep = mask.mul_scalar(-1.0)?.add_scalar(1.0)?.unsqueeze(-1)?;
///         let sum = self.proj.forward(tokens)?.mul(&keep)?.sum_dim(1, false)?;
///         sum.div(&keep.sum_dim(1, false)?)
///     }
/// }
///
/// let pool = MaskedMean { proj: Linear::new(4, 2) };
/// let (tokens, mask) = (Tensor::randn(&[3, 5, 4]), Tensor::zeros(&[3, 5]));
/// assert_eq!(pool.forward(&(tokens.clone(), mask.clone()))?.shape(), &[3, 2]);
/// // boxed: still a module (parameters, printing) and still callable
/// let boxed: Box<dyn Layer<(Tensor, Tensor)>> = Box::new(pool);
/// assert_eq!(boxed.named_parameters()[0].0, "proj.weight");
/// assert_eq!(boxed.forward(&(tokens, mask))?.shape(), &[3, 2]);
/// # Ok::<(), nn::Error>(())
/// ```
///
/// `sequential!` chains single-input layers only (`Forward<Tensor>`, the default).
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}

/// Builds an `nn::Sequential` from a list of layers, checking sizes at compile time
/// where they are literals (PyTorch's `nn.Sequential(...)`, with the shape checks that
/// PyTorch only makes at the first forward).
///
/// ```
/// use nn::{sequential, Forward, Linear, ModuleExt, ReLU, Tensor};
///
/// let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
/// // = Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)))
/// assert_eq!(net.2.in_features(), Some(256));
/// assert_eq!(net.forward(&Tensor::rand(&[2, 20]))?.shape(), &[2, 10]);
/// # Ok::<(), nn::Error>(())
/// ```
///
/// Each entry is a layer, optionally named; the entries are the fields `.0`, `.1`, ...
/// of the result, with their own types. A layer is written in one of these forms:
///
/// | form | example | expands to |
/// |------|---------|------------|
/// | `Linear` shape form | `Linear(20 => 256)`, `Linear(_ => 10, bias = false)` | `Linear::new(20, 256)`, `Linear::no_bias(256, 10)` |
/// | convolution shape form | `Conv2d(_ => 16, 3, padding = 1)`, `Conv1d(4 => 8, 5, stride = 2)` | `Conv2d::new(c, 16, 3).padding(1)` |
/// | batch-norm shape form | `BatchNorm2d(_)`, `BatchNorm1d(64)` | `BatchNorm2d::new(c)` |
/// | any expression | `ReLU`, `Dropout::new(0.5)`, `MaxPool2d::new(2)`, `Flatten::new()`, `MyBlock::new()`, `block`, `sequential![...]` | itself |
///
/// # The shape forms
///
/// `Linear(in => out)` names the sizes as PyTorch's `nn.Linear(in, out)` does, with
/// `bias = false` as the only option. A size is an integer literal, `_` (input sizes
/// only: the output size of the entry before, or a lazy layer sized at the first
/// forward when that is unknown, like PyTorch's `nn.LazyLinear`) or any expression.
///
/// ```
/// use nn::{sequential, Forward, Linear, ModuleExt, ReLU, Tensor};
///
/// let hidden = 32;
/// let net = sequential![
///     Linear(_ => hidden),              // unknown input: Linear::lazy(hidden)
///     ReLU,
///     Linear(hidden => 64),             // sizes may be expressions
///     ReLU,
///     Linear(_ => 1, bias = false,),    // Linear::no_bias(64, 1); a trailing comma is fine
/// ];
/// assert_eq!(net.0.in_features(), None); // sized at the first forward
/// assert_eq!(net.4.in_features(), Some(64));
/// assert!(net.4.bias.is_none());
/// assert_eq!(net.forward(&Tensor::rand(&[2, 7]))?.shape(), &[2, 1]);
/// assert_eq!(net.0.in_features(), Some(7));
/// # Ok::<(), nn::Error>(())
/// ```
///
/// `Conv1d(in => out, kernel, options)` and `Conv2d(..)` are PyTorch's
/// `nn.Conv2d(in, out, kernel, ...)`: the kernel size (an integer, or `[h, w]` for
/// `Conv2d`) follows the channels, then the named options `stride`, `padding`
/// (a size, or `same`), `dilation`, `groups` (each an expression, in any order, at
/// most once) and `bias = false`. Each option becomes the layer's builder call of the
/// same name. `BatchNorm1d(size)` and `BatchNorm2d(size)` take the number of features
/// or channels, or `_`: the entry before's (`BatchNorm2d::lazy()` when unknown);
/// configure other options with an expression (`BatchNorm2d::new(64).eps(1e-3)`).
///
/// ```
/// use nn::layers::{AdaptiveAvgPool2d, BatchNorm2d, Conv1d, Conv2d, MaxPool2d};
/// use nn::{sequential, Flatten, Forward, Linear, ReLU, Tensor};
///
/// let net = sequential![
///     Conv2d(3 => 16, 3, padding = 1, bias = false), // Conv2d::new(3, 16, 3).padding(1).no_bias()
///     BatchNorm2d(_),                                // BatchNorm2d::new(16)
///     ReLU,
///     MaxPool2d::new(2),                             // keeps the channels: 16
///     Conv2d(_ => 32, [3, 1], stride = 2, padding = [1, 0], groups = 16),
///     BatchNorm2d(32),                               // checked: 32 channels come in
///     AdaptiveAvgPool2d::new([1, 1]),
///     Flatten::new(),
///     Linear(_ => 10),                               // 32 x 1 x 1 features: Linear::new(32, 10)
/// ];
/// assert_eq!(net.4.in_channels(), Some(16));
/// assert_eq!(net.8.in_features(), Some(32));
/// assert_eq!(net.forward(&Tensor::rand(&[2, 3, 16, 16]))?.shape(), &[2, 10]);
///
/// // unknown input channels: Conv1d::lazy(8, 5).padding_same().dilation(2)
/// let signal = sequential![Conv1d(_ => 8, 5, padding = same, dilation = 2), ReLU];
/// assert_eq!(signal.forward(&Tensor::rand(&[1, 2, 20]))?.shape(), &[1, 8, 20]);
/// # Ok::<(), nn::Error>(())
/// ```
///
/// # Declaring the input shape
///
/// `input = [c, h, w];` before the layers declares one sample's shape, without the
/// batch dim: `[features]`, `[channels, length]` (1-d layers) or `[channels, height,
/// width]`, as integer literals. The macro then follows the spatial sizes through
/// convolutions and pools with literal arguments (PyTorch's output-size rule), so a
/// `Flatten::new()` gives a known feature count and the `Linear` after it is sized now,
/// not lazily; a kernel larger than the padded input is a compile error.
///
/// ```
/// use nn::layers::{Conv2d, MaxPool2d};
/// use nn::{sequential, Flatten, Forward, Linear, ReLU, Tensor};
///
/// let net = sequential![
///     input = [1, 8, 8];
///     Conv2d(_ => 16, 3, padding = 1),   // Conv2d::new(1, 16, 3): 16 x 8 x 8
///     ReLU,
///     MaxPool2d::new(2),                 // 16 x 4 x 4
///     Flatten::new(),                    // 256 features
///     Linear(_ => 10),                   // Linear::new(256, 10)
/// ];
/// assert_eq!(net.0.in_channels(), Some(1));
/// assert_eq!(net.4.in_features(), Some(256));
/// assert_eq!(net.forward(&Tensor::rand(&[3, 1, 8, 8]))?.shape(), &[3, 10]);
///
/// let mlp = sequential![input = [20]; Linear(_ => 8), ReLU];
/// assert_eq!(mlp.0.in_features(), Some(20));
/// # Ok::<(), nn::Error>(())
/// ```
///
/// # Any other layer, names, nesting
///
/// Every other entry is an expression whose value implements `nn::Module` and
/// `nn::Forward`: a layer written bare (`ReLU`, `Sigmoid`, `Tanh`, `SiLU`, `Identity`)
/// or built (`GELU::new()`, `LeakyReLU::new(0.01)`, `Dropout::new(0.1)`,
/// `ReLU.inplace(true)` (PyTorch's `inplace=True`: it changes only the print, and sizes
/// flow through it as through `ReLU`),
/// `Softmax::new(-1)`, `Conv2d::new(3, 8, 3).stride(2)`, `Linear::new(4, 8)`), your own
/// layer (`#[derive(Module)]` and `impl Forward`), a variable, a function call, or a
/// nested `sequential!` (one takes at most 16 entries: nest for more). A string literal
/// and `=>` before a layer name it, as PyTorch's `OrderedDict` does; unnamed entries are
/// named by their position, and all names must differ.
///
/// ```
/// use nn::layers::{LeakyReLU, GELU};
/// use nn::{sequential, Dropout, Forward, Linear, Module, ModuleExt, ReLU, Result, Tensor};
///
/// /// A layer of your own: the derive registers its parameters, `Forward` runs it.
/// #[derive(Module)]
/// struct Residual {
///     fc: Linear,
/// }
///
/// impl Forward for Residual {
///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
///         x.add(&self.fc.forward(x)?)
///     }
/// }
///
/// let head = Linear::new(8, 2);
/// let net = sequential![
///     "embed" => Linear(4 => 8),
///     GELU::new(),
///     "res" => Residual { fc: Linear::new(8, 8) },
///     LeakyReLU::new(0.01).inplace(true), // prints LeakyReLU(negative_slope=0.01, inplace=True)
///     Dropout::new(0.1),
///     sequential![Linear(8 => 8), ReLU],   // nested: its layers are "5.0", "5.1"
///     "head" => head,                      // a variable
/// ];
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(
///     names,
///     ["embed.weight", "embed.bias", "res.fc.weight", "res.fc.bias",
///      "5.0.weight", "5.0.bias", "head.weight", "head.bias"]
/// );
/// assert_eq!(net.forward(&Tensor::rand(&[3, 4]))?.shape(), &[3, 2]);
/// # Ok::<(), nn::Error>(())
/// ```
///
/// # Compile-time errors
///
/// A literal size that cannot match the size flowing in is an error on that literal,
/// naming where the size comes from:
///
/// ```compile_fail
/// use nn::{sequential, Linear, ReLU};
/// // error: size mismatch: expected 256 (output of entry 0), found 128
/// let net = sequential![Linear(20 => 256), ReLU, Linear(128 => 10)];
/// ```
///
/// So are a channel mismatch (`Conv2d(3 => 64, 3), Conv2d(32 => 8, 3)`), an output
/// size written `_`, an unknown or repeated option, a layer that does not implement
/// `Forward`, a repeated or invalid name, an empty list and a 17th entry.
///
/// # Grammar
///
/// ```text
/// input   := ("input" "=" "[" int ("," int)* ","? "]" ";")?   (one sample's shape, 1 to 3
///            entry ("," entry)* ","?                          dims, no batch dim; 1 to 16 entries)
/// entry   := (name "=>")? layer
/// name    := string literal, non-empty, without "." (unnamed entries are named by
///            their position; all names must differ)
/// layer   := "Linear" "(" size "=>" size ("," "bias" "=" bool)? ","? ")"   (shape form)
///          | conv "(" size "=>" size "," expression ("," option)* ","? ")"  (shape form)
///          | norm "(" size ","? ")"                                        (shape form)
///          | expression                        (anything else: a value implementing
///                                               nn::Module + nn::Forward)
/// conv    := "Conv1d" | "Conv2d"               (kernel size after the channels)
/// option  := ("stride" | "dilation" | "groups") "=" expression
///          | "padding" "=" (expression | "same") | "bias" "=" bool
/// norm    := "BatchNorm1d" | "BatchNorm2d"
/// size    := "_" | integer literal | expression   ("_" only as the input size)
/// ```
///
/// `Linear`, `Conv1d`, `Conv2d`, `BatchNorm1d` and `BatchNorm2d` may be written as paths
/// (`nn::Linear(4 => 8)`, `nn::layers::Conv2d(..)`). The shape forms expand to the
/// layer's constructors with the path as written, so the layer must be in scope, as for
/// any expression.
///
/// # Size tracking
///
/// The macro follows the last known output size, entry by entry: features after a
/// `Linear`, channels after a convolution (and spatial sizes, once an input shape is
/// declared or an `AdaptiveAvgPool2d::new(..)` fixes them). A literal input size
/// (in a shape form, or in `Linear::new(a, b)`, `Linear::no_bias(a, b)`,
/// `Conv2d::new(a, b, k)`) is checked against it; `_` takes it. Layers that keep their
/// input's size (`ReLU`, `Sigmoid`, `Tanh`, `Dropout`, `GELU`, `SiLU`, `LeakyReLU`,
/// `Softmax`, `LogSoftmax`, `Identity`, `LayerNorm`, `RMSNorm`, written bare or as
/// `X(..)`, `X::new(..)`, `X::default()`), pools and normalizations keep it;
/// `Flatten::new()` turns known channels and spatial sizes into a feature count.
/// Anything else (`Flatten` without known spatial sizes, a nested `sequential!`, a
/// variable, a function call, your own layer) makes it unknown, and a `_` after it
/// becomes the lazy layer (`Linear::lazy(out)`, `Conv2d::lazy(out, k)`,
/// `BatchNorm2d::lazy()`). A known channel count is not a feature size: a
/// `Linear(_ => 10)` right after a `Conv2d` is lazy.
#[proc_macro]
pub fn sequential(input: TokenStream) -> TokenStream {
    sequential::expand(input.into()).into()
}
