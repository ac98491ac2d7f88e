//! Parsing `sequential![...]` into [`SequentialInput`]: the optional declared input
//! shape, then the entries, each an optional child name and a layer in one of the shape
//! forms (`Linear(20 => 256)`, `Conv2d(_ => 16, 3, padding = 1)`, `BatchNorm2d(_)`) or
//! any expression. Only syntax is checked here; sizes are checked in `shapes.rs`.

use super::layers::int_lit;
use super::layers::{last_span, path_name, CONVS, CONV_OPTIONS, NORMS};
use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitInt, LitStr, Token};

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
/// The shape forms expand to the layer's constructors (`Linear::new(in, out)`,
/// `Linear::no_bias(in, out)`, `Linear::lazy(out)`, `Conv2d::new(in, out, k).stride(2)`,
/// `BatchNorm2d::lazy()`, ...) with the caller's `Linear` / `Conv2d` / `BatchNorm2d`
/// token, so the layer must be in scope, as for any expression. How sizes are tracked
/// through the entries is described in `shapes.rs`.
pub struct SequentialInput {
    /// `input = [c, h, w];`: one sample's shape, without the batch dim.
    pub(super) input: Option<Vec<LitInt>>,
    pub(super) entries: Vec<Entry>,
}

/// One layer of the chain and the child name it was given, if any.
pub(super) struct Entry {
    pub(super) name: Option<LitStr>,
    pub(super) layer: Layer,
}

/// A layer as written.
pub(super) enum Layer {
    /// `Linear(in => out, bias = false)`.
    Linear(Box<ShapeLinear>),
    /// `Conv2d(in => out, kernel, stride = 2)`.
    Conv(Box<ShapeConv>),
    /// `BatchNorm2d(_)`.
    Norm(Box<ShapeNorm>),
    /// Any other layer.
    Expr(Expr),
}

/// `Linear(in => out, bias = false)`.
pub(super) struct ShapeLinear {
    /// `Linear` as written (a path), reused as the constructor's type.
    pub(super) linear: syn::Path,
    pub(super) input: Size,
    pub(super) output: Size,
    pub(super) bias: Option<LitBool>,
}

/// `Conv2d(in => out, kernel, key = value, ..)`.
pub(super) struct ShapeConv {
    /// `Conv2d` as written, reused as the constructor's type.
    pub(super) conv: syn::Path,
    pub(super) input: Size,
    pub(super) output: Size,
    pub(super) kernel: Expr,
    /// Builder calls in the order written: `(method, argument)`; `padding = same`
    /// becomes `padding_same()` and `bias = false` becomes `no_bias()`.
    pub(super) options: Vec<(Ident, Option<Expr>)>,
}

/// `BatchNorm2d(size)`.
pub(super) struct ShapeNorm {
    pub(super) norm: syn::Path,
    pub(super) size: Size,
}

/// A size in a shape form: `_`, an integer literal, or any expression.
pub(super) enum Size {
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
    /// Parses `(in => out, bias = false)` after the `Linear` path.
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

    /// The `Linear` token, where problems with the layer are shown.
    pub(super) fn span(&self) -> Span {
        last_span(&self.linear)
    }
}

impl ShapeConv {
    /// Parses `(in => out, kernel, key = value, ..)` after the `Conv2d` path.
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
            if !CONV_OPTIONS.contains(&k.as_str()) {
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

    /// The `Conv2d` token, where problems with the layer are shown.
    pub(super) fn span(&self) -> Span {
        last_span(&self.conv)
    }
}

impl ShapeNorm {
    /// Parses `(size)` after the `BatchNorm2d` path.
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

impl Entry {
    /// Where a problem with the entry as a whole is shown: its name, else its layer.
    pub(super) fn span(&self) -> Span {
        match (&self.name, &self.layer) {
            (Some(n), _) => n.span(),
            (None, Layer::Linear(l)) => l.span(),
            (None, Layer::Conv(c)) => c.span(),
            (None, Layer::Norm(n)) => last_span(&n.norm),
            (None, Layer::Expr(e)) => e.span(),
        }
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
