//! `sequential![...]`: parses [`SequentialInput`], tracks layer sizes through the
//! chain, and expands to `::nn::Sequential::new((...))` / `Sequential::named`.

use crate::attr::check_child_name;
use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitInt, LitStr, Token};

/// Most entries one `sequential!` takes: the arity of the tuple `Module`/`Chain` impls.
const MAX_ENTRIES: usize = 16;

/// Layers whose output has the size of their input (bare `X`, `X(..)`, `X::new(..)`,
/// `X::default()`): the known size flows through them.
const SIZE_PRESERVING: &[&str] = &[
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Dropout",
    "GELU",
    "SiLU",
    "LeakyReLU",
    "Softmax",
    "LogSoftmax",
    "Identity",
    "LayerNorm",
    "RMSNorm",
];

/// Layers that keep the channel count (and any known size) of their input, tracked
/// like [`SIZE_PRESERVING`] ones: pools and normalizations written as expressions.
const CHANNEL_PRESERVING: &[&str] = &[
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "GroupNorm",
];

/// The convolutions with a shape form, `Conv2d(3 => 64, 3, stride = 2)`.
const CONVS: &[&str] = &["Conv1d", "Conv2d"];

/// The batch norms with a shape form, `BatchNorm2d(_)`.
const NORMS: &[&str] = &["BatchNorm1d", "BatchNorm2d"];

/// The input of `sequential!`.
///
/// ```text
/// input   := ("input" "=" "[" int ("," int)* ","? "]" ";")?   (one sample's shape, 1 to 3
///            entry ("," entry)* ","?                          dims, no batch dim; 1 to 16 entries)
/// entry   := (name "=>")? layer
/// name    := string literal, non-empty, without "." (unnamed entries are named by
///            their position; all names must differ)
/// layer   := "Linear" "(" size "=>" size ("," "bias" "=" bool)? ","? ")"   (shape form)
///          | conv "(" size "=>" size "," expression ("," option)* ","? ")"  (shape form)
///          | norm "(" size ")"                                             (shape form)
///          | expression                        (anything else: a value implementing
///                                               nn::Module + nn::Forward)
/// conv    := "Conv1d" | "Conv2d"               (kernel size after the channels)
/// option  := ("stride" | "dilation" | "groups") "=" expression
///          | "padding" "=" (expression | "same") | "bias" "=" bool
/// norm    := "BatchNorm1d" | "BatchNorm2d"
/// size    := "_" | integer literal | expression   ("_" only as the input size)
/// ```
///
/// The shape form expands to `Linear::new(in, out)`, `Linear::no_bias(in, out)` or
/// `Linear::lazy(out)` with the caller's `Linear` token, so `nn::Linear` must be in
/// scope, as for any expression.
///
/// Size tracking, entry by entry, of the last known output size (the size of the
/// features dimension flowing out of the previous entry):
/// - the shape form `Linear(a => b)`, and `Linear::new(a, b)` / `Linear::no_bias(a, b)`
///   with literal sizes: a literal `a` must equal the known size (else a compile error
///   on `a`: "expected 256 (output of entry 0), found 128"); `_` takes the known size,
///   or, when it is unknown, the layer is `Linear::lazy(b)` (sized at the first
///   forward). Afterwards the known size is `b` if it is a literal, else unknown.
///   `Linear::lazy(b)` sets it to `b`.
/// - size-preserving layers (`ReLU`, `Sigmoid`, `Tanh`, `Dropout`, `GELU`, `SiLU`,
///   `LeakyReLU`, `Softmax`, `LogSoftmax`, `Identity`, `LayerNorm`, `RMSNorm`, written
///   bare or as `X(..)`, `X::new(..)`, `X::default()`) keep it.
/// - channels follow the same way: `Conv2d(a => b, k, ..)` checks a literal `a` against
///   the known channel count (error on `a`: "channel mismatch: expected 64 channels
///   (output of entry 0), found 32"), fills `_` from it or becomes `Conv2d::lazy(b, k)`,
///   and makes `b` the known channel count; `Conv2d::new(a, b, k)` (with builder calls
///   after it) checks and sets alike. `BatchNorm2d(_)` / `BatchNorm1d(_)` take the known
///   size (`BatchNorm2d::lazy()` when unknown), a literal is checked, and they keep it;
///   pools and normalizations written as expressions keep it too. A known channel
///   count is not a feature size: `Linear(_ => 10)` after `Conv2d` is lazy (unless a
///   `Flatten` with known spatial sizes comes between, below), and a `Conv2d` after a
///   `Linear` does not check against it.
/// - spatial sizes follow too, once known: from a declared input shape (`input = [c, h,
///   w];`, or `[c, l]` for 1-d layers; `[f]` declares features) or from
///   `AdaptiveAvgPool2d::new(..)`. Convolutions (both forms) and `MaxPool2d::new(k)` /
///   `AvgPool2d::new(k)` with literal kernel, stride, padding, dilation (and
///   `ceil_mode`) compute them by PyTorch's rule (a window larger than the padded input
///   is an error at the layer); `padding = same` keeps them; a non-literal argument makes
///   them unknown. `Flatten::new()` (or `Flatten::default()`) turns
///   known channels and spatial sizes into the feature count `c * h * w`, which the next
///   `Linear` checks or fills like any known size ("expected 144 (output of entry 3: 16
///   x 3 x 3 flattened), found 100").
/// - anything else (`Flatten` without known spatial sizes, a nested `sequential!`, a
///   variable, a function call) makes it unknown.
pub struct SequentialInput {
    /// `input = [c, h, w];`: one sample's shape, without the batch dim.
    input: Option<Vec<LitInt>>,
    entries: Vec<Entry>,
}

struct Entry {
    name: Option<LitStr>,
    layer: Layer,
}

enum Layer {
    /// `Linear(in => out, bias = false)`.
    Linear(Box<ShapeLinear>),
    /// `Conv2d(in => out, kernel, stride = 2)`.
    Conv(Box<ShapeConv>),
    /// `BatchNorm2d(_)`.
    Norm(Box<ShapeNorm>),
    /// Any other layer.
    Expr(Expr),
}

struct ShapeLinear {
    /// `Linear` as written (a path), reused as the constructor's type.
    linear: syn::Path,
    input: Size,
    output: Size,
    bias: Option<LitBool>,
}

/// `Conv2d(in => out, kernel, key = value, ..)`.
struct ShapeConv {
    /// `Conv2d` as written, reused as the constructor's type.
    conv: syn::Path,
    input: Size,
    output: Size,
    kernel: Expr,
    /// Builder calls in the order written: `(method, argument)`; `padding = same`
    /// becomes `padding_same()` and `bias = false` becomes `no_bias()`.
    options: Vec<(Ident, Option<Expr>)>,
}

/// `BatchNorm2d(size)`.
struct ShapeNorm {
    norm: syn::Path,
    size: Size,
}

enum Size {
    Infer(Token![_]),
    Lit(LitInt),
    Expr(Expr),
}

impl Parse for Size {
    fn parse(input: ParseStream) -> syn::Result<Size> {
        if input.peek(Token![_]) {
            return Ok(Size::Infer(input.parse()?));
        }
        Ok(match input.parse::<Expr>()? {
            Expr::Lit(ExprLit {
                lit: Lit::Int(i), ..
            }) => Size::Lit(i),
            e => Size::Expr(e),
        })
    }
}

/// Finds the top-level `=>` of `Linear(in => out)` before parsing the sizes, so a
/// `->` (or a missing arrow) is reported as such rather than as a bad expression.
fn find_size_arrow(content: ParseStream) -> syn::Result<()> {
    let ahead = content.fork();
    let mut wrong = None;
    while !ahead.is_empty() && !ahead.peek(Token![,]) {
        if ahead.peek(Token![=>]) {
            return Ok(());
        }
        if wrong.is_none()
            && (ahead.peek(Token![->]) || ahead.peek(Token![>=]) || ahead.peek(Token![=]))
        {
            wrong = Some(ahead.cursor().span());
        }
        ahead.parse::<proc_macro2::TokenTree>()?;
    }
    let msg = "expected `=>` between the input and output sizes: `Linear(20 => 256)`";
    Err(match wrong {
        Some(span) => syn::Error::new(span, msg),
        None => ahead.error(msg),
    })
}

impl ShapeLinear {
    fn parse_body(linear: syn::Path, input: ParseStream) -> syn::Result<ShapeLinear> {
        let content;
        syn::parenthesized!(content in input);
        if content.is_empty() {
            return Err(content.error("expected `in => out` sizes: `Linear(20 => 256)`"));
        }
        find_size_arrow(&content)?;
        let size_in: Size = content.parse()?;
        content.parse::<Token![=>]>()?;
        if content.is_empty() {
            return Err(content.error("expected the output size after `=>`"));
        }
        let size_out: Size = content.parse()?;
        let mut bias = None;
        while !content.is_empty() {
            content.parse::<Token![,]>()?;
            if content.is_empty() {
                break;
            }
            let key: Ident = content.parse()?;
            if key != "bias" {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown `Linear` option `{key}`: expected `bias = true|false`"),
                ));
            }
            if bias.is_some() {
                return Err(syn::Error::new(
                    key.span(),
                    "duplicate `Linear` option `bias`",
                ));
            }
            content.parse::<Token![=]>()?;
            if !content.peek(LitBool) {
                return Err(content.error("expected `true` or `false`"));
            }
            bias = Some(content.parse::<LitBool>()?);
        }
        Ok(ShapeLinear {
            linear,
            input: size_in,
            output: size_out,
            bias,
        })
    }
}

impl ShapeConv {
    fn parse_body(conv: syn::Path, input: ParseStream) -> syn::Result<ShapeConv> {
        let name = path_name(&conv);
        let content;
        syn::parenthesized!(content in input);
        if content.is_empty() {
            return Err(content.error(format!(
                "expected `in => out, kernel`: `{name}(3 => 64, 3)`"
            )));
        }
        find_size_arrow(&content)?;
        let size_in: Size = content.parse()?;
        content.parse::<Token![=>]>()?;
        if content.is_empty() {
            return Err(content.error("expected the output channels after `=>`"));
        }
        let size_out: Size = content.parse()?;
        if content.is_empty() {
            return Err(content.error(format!(
                "expected `, kernel` after the channels: `{name}(3 => 64, 3)`"
            )));
        }
        content.parse::<Token![,]>()?;
        if content.is_empty() {
            return Err(content.error(format!("expected the kernel size: `{name}(3 => 64, 3)`")));
        }
        let kernel: Expr = content.parse()?;
        let mut options: Vec<(Ident, Option<Expr>)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        while !content.is_empty() {
            content.parse::<Token![,]>()?;
            if content.is_empty() {
                break;
            }
            let key: Ident = content.parse()?;
            let k = key.to_string();
            if !["stride", "padding", "dilation", "groups", "bias"].contains(&k.as_str()) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown `{name}` option `{key}`: expected `stride`, `padding`, `dilation`, `groups` or `bias`"),
                ));
            }
            if seen.contains(&k) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("duplicate `{name}` option `{key}`"),
                ));
            }
            seen.push(k.clone());
            content.parse::<Token![=]>()?;
            if k == "bias" {
                if !content.peek(LitBool) {
                    return Err(content.error("expected `true` or `false`"));
                }
                let b = content.parse::<LitBool>()?;
                if !b.value {
                    options.push((Ident::new("no_bias", key.span()), None));
                }
                continue;
            }
            if k == "padding" && content.peek(Ident) && content.fork().parse::<Ident>()? == "same" {
                content.parse::<Ident>()?;
                options.push((Ident::new("padding_same", key.span()), None));
                continue;
            }
            options.push((key, Some(content.parse()?)));
        }
        Ok(ShapeConv {
            conv,
            input: size_in,
            output: size_out,
            kernel,
            options,
        })
    }

    fn span(&self) -> Span {
        last_span(&self.conv)
    }
}

impl ShapeNorm {
    fn parse_body(norm: syn::Path, input: ParseStream) -> syn::Result<ShapeNorm> {
        let content;
        syn::parenthesized!(content in input);
        if content.is_empty() {
            let name = path_name(&norm);
            return Err(content.error(format!(
                "expected the number of channels or `_`: `{name}(64)`, `{name}(_)`"
            )));
        }
        let size: Size = content.parse()?;
        if !content.is_empty() {
            let _ = content.parse::<Option<Token![,]>>()?;
            if !content.is_empty() {
                return Err(content.error(
                    "expected only the number of channels (configure other options with an expression: `BatchNorm2d::new(64).eps(1e-3)`)",
                ));
            }
        }
        Ok(ShapeNorm { norm, size })
    }
}

/// The last identifier of a path (`Conv2d` in `nn::layers::Conv2d`).
fn path_name(p: &syn::Path) -> String {
    p.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

fn last_span(p: &syn::Path) -> Span {
    p.segments
        .last()
        .map_or_else(|| p.span(), |s| s.ident.span())
}

impl ShapeLinear {
    /// The `Linear` token, where problems with the layer are shown.
    fn span(&self) -> Span {
        self.linear
            .segments
            .last()
            .map_or_else(|| self.linear.span(), |s| s.ident.span())
    }
}

impl Parse for Layer {
    fn parse(input: ParseStream) -> syn::Result<Layer> {
        // `Linear(..)`, `nn::Linear(..)`: a tuple-call of the (named-field) `Linear` struct
        // is not valid Rust, so this form cannot shadow an ordinary expression
        let ahead = input.fork();
        if let Ok(path) = ahead.call(syn::Path::parse_mod_style) {
            let is_linear = path.segments.last().is_some_and(|s| s.ident == "Linear");
            if is_linear && ahead.peek(syn::token::Paren) {
                input.call(syn::Path::parse_mod_style)?;
                return Ok(Layer::Linear(Box::new(ShapeLinear::parse_body(
                    path, input,
                )?)));
            }
            // the same holds for the convolution and batch-norm structs
            let name = path_name(&path);
            if ahead.peek(syn::token::Paren) && CONVS.contains(&name.as_str()) {
                input.call(syn::Path::parse_mod_style)?;
                return Ok(Layer::Conv(Box::new(ShapeConv::parse_body(path, input)?)));
            }
            if ahead.peek(syn::token::Paren) && NORMS.contains(&name.as_str()) {
                input.call(syn::Path::parse_mod_style)?;
                return Ok(Layer::Norm(Box::new(ShapeNorm::parse_body(path, input)?)));
            }
        }
        Ok(Layer::Expr(input.parse()?))
    }
}

impl Parse for Entry {
    fn parse(input: ParseStream) -> syn::Result<Entry> {
        let mut name = None;
        if input.peek(LitStr) {
            let ahead = input.fork();
            ahead.parse::<LitStr>()?;
            if ahead.peek(Token![=>]) {
                name = Some(input.parse::<LitStr>()?);
                input.parse::<Token![=>]>()?;
            } else if !ahead.is_empty() && !ahead.peek(Token![,]) {
                return Err(ahead.error(
                    "expected `=>` between the child name and the layer: `\"name\" => layer`",
                ));
            }
        }
        Ok(Entry {
            name,
            layer: input.parse()?,
        })
    }
}

/// Parses `input = [dims];` when the macro opens with it.
fn parse_input_shape(input: ParseStream) -> syn::Result<Option<Vec<LitInt>>> {
    let ahead = input.fork();
    let is_header = ahead.parse::<Ident>().is_ok_and(|i| i == "input")
        && ahead.peek(Token![=])
        && !ahead.peek(Token![=>])
        && !ahead.peek(Token![==]);
    if !is_header {
        return Ok(None);
    }
    input.parse::<Ident>()?;
    input.parse::<Token![=]>()?;
    let msg = "expected the shape of one sample, without the batch dim, as integer literals: `input = [3, 32, 32];`";
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(msg));
    }
    let content;
    let bracket = syn::bracketed!(content in input);
    let dims = content.parse_terminated(Expr::parse, Token![,])?;
    let mut lits = Vec::new();
    for d in &dims {
        match int_lit(d) {
            Some(l) => lits.push(l.clone()),
            None => return Err(syn::Error::new(d.span(), msg)),
        }
    }
    if lits.is_empty() || lits.len() > 3 {
        return Err(syn::Error::new(
            bracket.span.join(),
            "the input shape has 1 to 3 dims: `[features]`, `[channels, length]` or `[channels, height, width]` (without the batch dim)",
        ));
    }
    if !input.peek(Token![;]) {
        return Err(input.error(
            "expected `;` between the input shape and the layers: `input = [1, 8, 8]; Conv2d(1 => 16, 3), ...`",
        ));
    }
    input.parse::<Token![;]>()?;
    Ok(Some(lits))
}

impl Parse for SequentialInput {
    fn parse(input: ParseStream) -> syn::Result<SequentialInput> {
        let declared = parse_input_shape(input)?;
        let mut entries = Vec::new();
        while !input.is_empty() {
            entries.push(input.parse::<Entry>()?);
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error("expected `,` between layers"));
            }
            input.parse::<Token![,]>()?;
        }
        Ok(SequentialInput {
            input: declared,
            entries,
        })
    }
}

/// What a known size counts: the last dim (`Linear`) or the channels, dim 1 (`Conv2d`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Features,
    Channels,
}

/// Where a known size comes from: the declared input shape or an entry's output.
#[derive(Clone, Copy)]
enum Origin {
    Declared,
    Entry(usize),
    /// A `Flatten` at entry `.0` of `.1` channels of spatial sizes `.2`.
    Flattened(usize, u64, Spatial),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Declared => f.write_str("the declared input"),
            Origin::Entry(i) => write!(f, "output of entry {i}"),
            Origin::Flattened(i, c, s) => {
                write!(f, "output of entry {i}: {c}")?;
                for d in &s.dims[..s.rank] {
                    write!(f, " x {d}")?;
                }
                f.write_str(" flattened")
            }
        }
    }
}

/// A size known at compile time, what it counts, and where it comes from.
#[derive(Clone, Copy)]
struct Known {
    size: u64,
    entry: Origin,
    kind: Kind,
    /// With channels: the spatial sizes after them (`[h, w]`, or `[l]` for 1-d
    /// layers) when those are known too, so that `Flatten` gives a feature count.
    spatial: Option<Spatial>,
}

/// Spatial sizes of a channels-first sample: `dims[..rank]`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Spatial {
    dims: [u64; 2],
    rank: usize,
}

impl Known {
    /// `size` counting `kind`, made by entry `entry`, spatial sizes unknown.
    fn new(size: u64, entry: usize, kind: Kind) -> Known {
        Known {
            size,
            entry: Origin::Entry(entry),
            kind,
            spatial: None,
        }
    }

    /// The known size when it counts `kind`.
    fn of(known: Option<Known>, kind: Kind) -> Option<Known> {
        known.filter(|k| k.kind == kind)
    }
}

fn lit_value(l: &LitInt, errors: &mut Errors) -> Option<u64> {
    match l.base10_parse::<u64>() {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// A literal input size must equal the known size.
fn check_input(l: &LitInt, known: Option<Known>, errors: &mut Errors) {
    if let (Some(k), Some(v)) = (known, lit_value(l, errors)) {
        if k.size != v {
            let msg = match k.kind {
                Kind::Features => format!(
                    "size mismatch: expected {} ({}), found {v}",
                    k.size, k.entry
                ),
                Kind::Channels => format!(
                    "channel mismatch: expected {} channels ({}), found {v}",
                    k.size, k.entry
                ),
            };
            errors.push(syn::Error::new(l.span(), msg));
        }
    }
}

fn int_lit(e: &Expr) -> Option<&LitInt> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => Some(i),
        _ => None,
    }
}

/// The last two segments of a path expression (`Linear::new` -> (Some("Linear"), "new")).
fn path_tail(e: &Expr) -> Option<(Option<String>, String)> {
    let Expr::Path(p) = e else { return None };
    let mut segs = p.path.segments.iter().rev();
    let last = segs.next()?.ident.to_string();
    let prev = segs.next().map(|s| s.ident.to_string());
    Some((prev, last))
}

/// Tracks the size through an ordinary expression entry (see the rule on
/// [`SequentialInput`]).
fn track_expr(e: &Expr, entry: usize, known: Option<Known>, errors: &mut Errors) -> Option<Known> {
    let keeps = |name: &str| SIZE_PRESERVING.contains(&name) || CHANNEL_PRESERVING.contains(&name);
    match e {
        // builder calls (`Conv2d::new(3, 8, 3).stride(2)`) keep the base's sizes
        Expr::MethodCall(m) => track_expr(&m.receiver, entry, known, errors),
        Expr::Path(_) => match path_tail(e) {
            Some((_, last)) if keeps(&last) => known,
            _ => None,
        },
        Expr::Call(call) => {
            let args: Vec<&Expr> = call.args.iter().collect();
            match path_tail(&call.func) {
                Some((Some(ty), f)) if ty == "Linear" => match (f.as_str(), args.as_slice()) {
                    ("new" | "no_bias", [a, b]) => {
                        if let Some(l) = int_lit(a) {
                            check_input(l, Known::of(known, Kind::Features), errors);
                        }
                        let size = int_lit(b).and_then(|l| lit_value(l, errors))?;
                        Some(Known::new(size, entry, Kind::Features))
                    }
                    ("lazy", [b]) => {
                        let size = int_lit(b).and_then(|l| lit_value(l, errors))?;
                        Some(Known::new(size, entry, Kind::Features))
                    }
                    _ => None,
                },
                Some((Some(ty), f)) if CONVS.contains(&ty.as_str()) => {
                    match (f.as_str(), args.as_slice()) {
                        ("new", [a, b, _]) => {
                            if let Some(l) = int_lit(a) {
                                check_input(l, Known::of(known, Kind::Channels), errors);
                            }
                            let size = int_lit(b).and_then(|l| lit_value(l, errors))?;
                            Some(Known::new(size, entry, Kind::Channels))
                        }
                        ("lazy", [b, _]) => {
                            let size = int_lit(b).and_then(|l| lit_value(l, errors))?;
                            Some(Known::new(size, entry, Kind::Channels))
                        }
                        _ => None,
                    }
                }
                Some((Some(ty), f)) if keeps(&ty) && (f == "new" || f == "default") => known,
                Some((_, last)) if keeps(&last) => known,
                _ => None,
            }
        }
        Expr::Paren(p) => track_expr(&p.expr, entry, known, errors),
        _ => None,
    }
}

/// The known size a declared input shape starts with: features for `[f]`, channels
/// and spatial sizes for `[c, l]` and `[c, h, w]`.
fn declared_known(dims: &[LitInt], errors: &mut Errors) -> Option<Known> {
    let v: Vec<u64> = dims
        .iter()
        .map(|d| lit_value(d, errors))
        .collect::<Option<_>>()?;
    let (kind, spatial) = match v.as_slice() {
        [_] => (Kind::Features, None),
        [_, l] => (
            Kind::Channels,
            Some(Spatial {
                dims: [*l, 1],
                rank: 1,
            }),
        ),
        [_, h, w] => (
            Kind::Channels,
            Some(Spatial {
                dims: [*h, *w],
                rank: 2,
            }),
        ),
        _ => return None,
    };
    Some(Known {
        size: v[0],
        entry: Origin::Declared,
        kind,
        spatial,
    })
}

/// Per-dim literal sizes of a layer argument: `3` (every dim) or `[3, 2]` (`rank` entries).
fn lit_dims(e: &Expr, rank: usize) -> Option<[u64; 2]> {
    match e {
        Expr::Paren(p) => lit_dims(&p.expr, rank),
        Expr::Group(g) => lit_dims(&g.expr, rank),
        Expr::Array(a) if a.elems.len() == rank => {
            let mut d = [1; 2];
            for (i, x) in a.elems.iter().enumerate() {
                d[i] = int_lit(x)?.base10_parse().ok()?;
            }
            Some(d)
        }
        _ => {
            let v: u64 = int_lit(e)?.base10_parse().ok()?;
            Some([v; 2])
        }
    }
}

/// The sliding-window hyper-parameters of a convolution or pool, as literals.
struct Geometry {
    kernel: [u64; 2],
    stride: [u64; 2],
    padding: [u64; 2],
    dilation: [u64; 2],
    ceil_mode: bool,
    /// `padding = same`: the output keeps the input's size.
    same: bool,
}

impl Geometry {
    /// `kernel` with PyTorch's defaults: stride `stride` (1 for convolutions, the kernel
    /// for pools), no padding, dilation 1, floor rounding.
    fn new(kernel: [u64; 2], stride: [u64; 2]) -> Geometry {
        Geometry {
            kernel,
            stride,
            padding: [0; 2],
            dilation: [1; 2],
            ceil_mode: false,
            same: false,
        }
    }

    /// Applies one builder call or shape-form option; `None` when its argument is not
    /// a literal (the output size is then unknown).
    fn apply(mut self, method: &str, arg: Option<&Expr>, rank: usize) -> Option<Geometry> {
        let dims = || arg.and_then(|a| lit_dims(a, rank));
        match method {
            "stride" => self.stride = dims()?,
            "padding" => self.padding = dims()?,
            "dilation" => self.dilation = dims()?,
            "padding_same" => self.same = true,
            "ceil_mode" => match arg? {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                }) => self.ceil_mode = b.value,
                _ => return None,
            },
            // groups, bias, count_include_pad: no effect on the size
            _ => {}
        }
        Some(self)
    }

    /// The output's spatial sizes for `input` (PyTorch's rule, as `Windows::new` in
    /// nn-core), or the reason there is none.
    fn output(&self, input: Spatial, origin: Origin) -> Result<Spatial, String> {
        if self.same {
            return Ok(input);
        }
        let mut dims = [1; 2];
        for (i, out) in dims.iter_mut().enumerate().take(input.rank) {
            let (k, s, p, d) = (
                self.kernel[i],
                self.stride[i],
                self.padding[i],
                self.dilation[i],
            );
            if k == 0 || s == 0 || d == 0 {
                return Err("kernel size, stride and dilation must be positive".into());
            }
            let span = d.saturating_mul(k - 1).saturating_add(1);
            let padded = input.dims[i].saturating_add(p.saturating_mul(2));
            if span > padded {
                let shape = &input.dims[..input.rank];
                return Err(format!(
                    "kernel size {k} (dilation {d}) is larger than the padded input size {padded} (spatial dim {i} of {shape:?}, {origin})"
                ));
            }
            let room = padded - span;
            let mut o = if self.ceil_mode {
                room.div_ceil(s) + 1
            } else {
                room / s + 1
            };
            if self.ceil_mode && (o - 1) * s >= input.dims[i] + p {
                o -= 1;
            }
            *out = o;
        }
        Ok(Spatial {
            dims,
            rank: input.rank,
        })
    }
}

/// The spatial sizes after a window layer with geometry `g` (when it and the input's are
/// known); a window that cannot fit is an error at `span`.
fn windowed(
    g: Option<Geometry>,
    rank: usize,
    before: Option<Known>,
    span: Span,
    errors: &mut Errors,
) -> Option<Spatial> {
    let k = Known::of(before, Kind::Channels)?;
    let input = k.spatial.filter(|s| s.rank == rank)?;
    match g?.output(input, k.entry) {
        Ok(out) => Some(out),
        Err(msg) => {
            errors.push(syn::Error::new(span, msg));
            None
        }
    }
}

/// `A::f(args).m(x).n(y)` split into the base `A::f(args)` and the calls `[(m, [x]), (n, [y])]`.
fn split_chain(e: &Expr) -> (&Expr, Vec<(String, Vec<&Expr>)>) {
    let mut calls = Vec::new();
    let mut e = e;
    while let Expr::MethodCall(m) = e {
        calls.push((m.method.to_string(), m.args.iter().collect()));
        e = &m.receiver;
    }
    calls.reverse();
    (e, calls)
}

/// The spatial sizes after an expression entry, given the known size before it: window
/// layers (`Conv2d::new(..)`, `MaxPool2d::new(3).stride(2)`, ..) compute them,
/// `AdaptiveAvgPool2d::new(..)` sets them, size- and channel-preserving layers keep them.
fn track_spatial(e: &Expr, before: Option<Known>, errors: &mut Errors) -> Option<Spatial> {
    let keeps = |name: &str| SIZE_PRESERVING.contains(&name) || CHANNEL_PRESERVING.contains(&name);
    let (base, calls) = split_chain(e);
    let Expr::Call(call) = base else {
        return match path_tail(base) {
            Some((_, last)) if keeps(&last) && calls.is_empty() => before.and_then(|k| k.spatial),
            _ => None,
        };
    };
    let args: Vec<&Expr> = call.args.iter().collect();
    let (ty, f) = match path_tail(&call.func)? {
        (Some(ty), f) => (ty, f),
        (None, last) => return before.and_then(|k| k.spatial).filter(|_| keeps(&last)),
    };
    let apply = |g: Geometry, rank: usize| {
        calls
            .iter()
            .try_fold(g, |g, (m, a)| g.apply(m, a.first().copied(), rank))
    };
    match (ty.as_str(), f.as_str(), args.as_slice()) {
        ("Conv1d" | "Conv2d", "new" | "lazy", [.., kernel]) => {
            let rank = if ty == "Conv1d" { 1 } else { 2 };
            let g = lit_dims(kernel, rank).and_then(|k| apply(Geometry::new(k, [1; 2]), rank));
            windowed(g, rank, before, e.span(), errors)
        }
        ("MaxPool2d" | "AvgPool2d", "new", [kernel]) => {
            let g = lit_dims(kernel, 2).and_then(|k| apply(Geometry::new(k, k), 2));
            windowed(g, 2, before, e.span(), errors)
        }
        ("AdaptiveAvgPool2d", "new", [size]) => {
            lit_dims(size, 2).map(|dims| Spatial { dims, rank: 2 })
        }
        (ty, "new" | "default", _) if keeps(ty) && ty != "AdaptiveAvgPool2d" => {
            before.and_then(|k| k.spatial)
        }
        _ => None,
    }
}

/// `Flatten::new()` or `Flatten::default()` (from dim 1 to the end).
fn is_flatten(e: &Expr) -> bool {
    match e {
        Expr::Call(c) if c.args.is_empty() => matches!(
            path_tail(&c.func),
            Some((Some(ty), f)) if ty == "Flatten" && (f == "new" || f == "default")
        ),
        _ => false,
    }
}

/// The input size of a shape form: a literal (checked against the known size), `_` (the
/// known size, or `None` for the lazy form) or an expression.
fn input_size(size: &Size, known: Option<Known>, errors: &mut Errors) -> Option<TokenStream> {
    match size {
        Size::Lit(lit) => {
            check_input(lit, known, errors);
            Some(lit.to_token_stream())
        }
        Size::Infer(t) => known.map(|k| LitInt::new(&k.size.to_string(), t.span).to_token_stream()),
        Size::Expr(e) => Some(e.to_token_stream()),
    }
}

/// The output size of a shape form, which becomes the known size of kind `kind` after
/// entry `entry` (unknown for an expression); `_` is an error (`infer_msg`).
fn output_size(
    size: &Size,
    (entry, kind): (usize, Kind),
    known: &mut Option<Known>,
    errors: &mut Errors,
    infer_msg: impl FnOnce() -> String,
) -> TokenStream {
    match size {
        Size::Lit(lit) => {
            *known = lit_value(lit, errors).map(|size| Known::new(size, entry, kind));
            lit.to_token_stream()
        }
        Size::Expr(e) => {
            *known = None;
            e.to_token_stream()
        }
        Size::Infer(t) => {
            errors.push(syn::Error::new(t.span, infer_msg()));
            *known = None;
            // a placeholder the constructor accepts, so no second error follows
            let placeholder = if kind == Kind::Channels { 1 } else { 0 };
            let lit = LitInt::new(&placeholder.to_string(), t.span);
            quote_spanned!(t.span=> #lit)
        }
    }
}

/// The constructor call for a shape-form Linear, tracking the size.
fn expand_linear(
    l: &ShapeLinear,
    entry: usize,
    known: &mut Option<Known>,
    errors: &mut Errors,
) -> TokenStream {
    // the user's `Linear` token: it resolves in the user's scope (no unused import)
    let linear = &l.linear;
    let span = l.span();
    let input = input_size(&l.input, Known::of(*known, Kind::Features), errors);
    let output = output_size(&l.output, (entry, Kind::Features), known, errors, || {
        "the output size of a `Linear` cannot be inferred: write it (`Linear(_ => 10)`)".into()
    });
    let bias = l.bias.as_ref().is_none_or(|b| b.value);
    match (input, bias) {
        (Some(i), true) => quote_spanned!(span=> #linear::new(#i, #output)),
        (Some(i), false) => quote_spanned!(span=> #linear::no_bias(#i, #output)),
        (None, true) => quote_spanned!(span=> #linear::lazy(#output)),
        (None, false) => quote_spanned!(span=> {
            let mut __nn_lazy = #linear::lazy(#output);
            __nn_lazy.bias = ::core::option::Option::None;
            __nn_lazy
        }),
    }
}

/// The constructor call for a shape-form convolution, tracking the channels.
fn expand_conv(
    c: &ShapeConv,
    entry: usize,
    known: &mut Option<Known>,
    errors: &mut Errors,
) -> TokenStream {
    let conv = &c.conv;
    let span = c.span();
    let before = *known;
    let input = input_size(&c.input, Known::of(*known, Kind::Channels), errors);
    let output = output_size(&c.output, (entry, Kind::Channels), known, errors, || {
        format!(
            "the output channels of a `{}` cannot be inferred: write them (`{}(_ => 64, 3)`)",
            path_name(conv),
            path_name(conv)
        )
    });
    let kernel = &c.kernel;
    let rank = if path_name(conv) == "Conv1d" { 1 } else { 2 };
    let geometry = lit_dims(kernel, rank).and_then(|k| {
        c.options
            .iter()
            .try_fold(Geometry::new(k, [1; 2]), |g, (m, a)| {
                g.apply(&m.to_string(), a.as_ref(), rank)
            })
    });
    let spatial = windowed(geometry, rank, before, kernel.span(), errors);
    if let Some(k) = known.as_mut() {
        k.spatial = spatial;
    }
    let base = match input {
        Some(i) => quote_spanned!(span=> #conv::new(#i, #output, #kernel)),
        None => quote_spanned!(span=> #conv::lazy(#output, #kernel)),
    };
    let calls = c.options.iter().map(|(m, arg)| match arg {
        Some(a) => quote_spanned!(m.span()=> .#m(#a)),
        None => quote_spanned!(m.span()=> .#m()),
    });
    quote!(#base #(#calls)*)
}

/// The constructor call for a shape-form batch norm; the known size flows through.
fn expand_norm(n: &ShapeNorm, known: Option<Known>, errors: &mut Errors) -> TokenStream {
    let norm = &n.norm;
    let span = last_span(norm);
    // BatchNorm1d normalizes features ([n, c]) or channels ([n, c, l]); 2d channels only
    let relevant = match path_name(norm).as_str() {
        "BatchNorm2d" => Known::of(known, Kind::Channels),
        _ => known,
    };
    match &n.size {
        Size::Lit(lit) => {
            check_input(lit, relevant, errors);
            quote_spanned!(span=> #norm::new(#lit))
        }
        Size::Expr(e) => quote_spanned!(span=> #norm::new(#e)),
        Size::Infer(t) => match relevant {
            Some(k) => {
                let lit = LitInt::new(&k.size.to_string(), t.span);
                quote_spanned!(span=> #norm::new(#lit))
            }
            None => quote_spanned!(span=> #norm::lazy()),
        },
    }
}

/// Rule: child names are unique (given names and the positions of unnamed entries);
/// the given name involved is underlined.
fn check_names(entries: &[Entry], errors: &mut Errors) -> Vec<String> {
    let names: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| e.name.as_ref().map_or_else(|| i.to_string(), LitStr::value))
        .collect();
    for (i, e) in entries.iter().enumerate() {
        if let Some(lit) = &e.name {
            check_child_name(lit, errors);
        }
        let Some(j) = names[..i].iter().position(|n| *n == names[i]) else {
            continue;
        };
        let msg = match (&entries[j].name, &e.name) {
            (Some(_), Some(lit)) => (lit.span(), format!("duplicate child name `{}`: entry {j} already has it", names[i])),
            (None, Some(lit)) => (lit.span(), format!("child name `{}` is already the name of entry {j} (unnamed entries are named by position)", names[i])),
            (Some(lit), None) => (lit.span(), format!("child name `{}` is also the name of entry {i} (unnamed entries are named by position)", names[i])),
            (None, None) => continue,
        };
        errors.push(syn::Error::new(msg.0, msg.1));
    }
    names
}

/// The whole macro: parse, track sizes, expand; errors come with the expansion so the
/// binding keeps its type.
pub fn expand(tokens: TokenStream) -> TokenStream {
    let mut input: SequentialInput = match syn::parse2(tokens) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    if input.entries.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "sequential! needs at least one layer: `sequential![Linear(20 => 256), ReLU, Linear(_ => 10)]`",
        ));
        return errors
            .into_error()
            .map(|e| e.to_compile_error())
            .unwrap_or_default();
    }
    let mut entries = std::mem::take(&mut input.entries);
    if let Some(extra) = entries.get(MAX_ENTRIES) {
        let span = match (&extra.name, &extra.layer) {
            (Some(n), _) => n.span(),
            (None, Layer::Linear(l)) => l.span(),
            (None, Layer::Conv(c)) => c.span(),
            (None, Layer::Norm(n)) => last_span(&n.norm),
            (None, Layer::Expr(e)) => e.span(),
        };
        errors.push(syn::Error::new(
            span,
            format!(
                "sequential! takes at most {MAX_ENTRIES} layers and this is layer {}: group layers into a nested `sequential![...]`",
                MAX_ENTRIES + 1
            ),
        ));
        entries.truncate(MAX_ENTRIES);
    }
    let names = check_names(&entries, &mut errors);
    let mut known = input
        .input
        .as_deref()
        .and_then(|dims| declared_known(dims, &mut errors));
    let layers: Vec<TokenStream> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| match &e.layer {
            Layer::Linear(l) => expand_linear(l, i, &mut known, &mut errors),
            Layer::Conv(c) => expand_conv(c, i, &mut known, &mut errors),
            Layer::Norm(n) => {
                let norm = expand_norm(n, known, &mut errors);
                let kind = match path_name(&n.norm).as_str() {
                    "BatchNorm2d" => Kind::Channels,
                    _ => known.map_or(Kind::Channels, |k| k.kind),
                };
                known = match (&n.size, known) {
                    (Size::Lit(l), _) => lit_value(l, &mut errors).map(|size| Known {
                        spatial: known.and_then(|k| k.spatial),
                        ..Known::new(size, i, kind)
                    }),
                    (Size::Infer(_), k) => k,
                    (Size::Expr(_), _) => None,
                };
                norm
            }
            Layer::Expr(x) => {
                let before = known;
                known = if is_flatten(x) {
                    Known::of(before, Kind::Channels).and_then(|k| {
                        let s = k.spatial?;
                        let size = s.dims[..s.rank]
                            .iter()
                            .try_fold(k.size, |a, d| a.checked_mul(*d))?;
                        Some(Known {
                            entry: Origin::Flattened(i, k.size, s),
                            ..Known::new(size, i, Kind::Features)
                        })
                    })
                } else {
                    track_expr(x, i, known, &mut errors)
                };
                if let Some(k) = known.as_mut().filter(|k| k.kind == Kind::Channels) {
                    k.spatial = track_spatial(x, before, &mut errors);
                }
                quote_spanned!(x.span()=> __nn_layer(#x))
            }
        })
        .collect();
    let ctor = if entries.iter().any(|e| e.name.is_some()) {
        quote!(::nn::Sequential::named((#(#layers,)*), &[#(#names),*]))
    } else {
        quote!(::nn::Sequential::new((#(#layers,)*)))
    };
    let errs = errors.into_error().map(|e| e.to_compile_error());
    quote! {{
        #errs
        fn __nn_layer<L: ::nn::Module + ::nn::Forward>(layer: L) -> L {
            layer
        }
        #ctor
    }}
}
