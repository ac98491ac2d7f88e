//! Code generation for `sequential!`: each entry's constructor (the shape forms become
//! `Linear::new(..)`, `Conv2d::lazy(..).stride(..)`, `BatchNorm2d::new(..)`, with sizes
//! filled in and checked by `shapes.rs` on the way), then `::nn::Sequential::new((...))`
//! or `Sequential::named`.

use super::layers::{last_span, lit_dims, path_name};
use super::parse::{Entry, Layer, ShapeConv, ShapeLinear, ShapeNorm, Size};
use super::shapes::{
    after_expr, after_norm, check_input, lit_value, windowed, Geometry, Kind, Known,
};
use crate::errors::Errors;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::LitInt;

/// The `Sequential` of `entries` (named `names`), each layer's size checked against the
/// known size flowing out of the one before (`known`: the declared input's, at first).
pub(super) fn sequential(
    entries: &[Entry],
    names: &[String],
    mut known: Option<Known>,
    errors: &mut Errors,
) -> TokenStream {
    let layers: Vec<TokenStream> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| match &e.layer {
            Layer::Linear(l) => expand_linear(l, i, &mut known, errors),
            Layer::Conv(c) => expand_conv(c, i, &mut known, errors),
            Layer::Norm(n) => {
                let norm = expand_norm(n, known, errors);
                known = after_norm(n, i, known, errors);
                norm
            }
            Layer::Expr(x) => {
                known = after_expr(x, i, known, errors);
                // the bound names what a layer must be, at the layer
                quote_spanned!(x.span()=> __nn_layer(#x))
            }
        })
        .collect();
    if entries.iter().any(|e| e.name.is_some()) {
        quote!(::nn::Sequential::named((#(#layers,)*), &[#(#names),*]))
    } else {
        quote!(::nn::Sequential::new((#(#layers,)*)))
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
