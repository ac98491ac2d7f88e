//! What `sequential!` knows about nn's layers by name: the tables of layers that keep
//! their input's size or channels, the layers with a shape form, and the syntactic
//! helpers that recognise a layer in an expression (`Conv2d::new(3, 8, 3).stride(2)`).

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitInt};

/// Layers whose output has the size of their input (bare `X`, `X(..)`, `X::new(..)`,
/// `X::default()`): the known size flows through them.
pub(super) const SIZE_PRESERVING: &[&str] = &[
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
pub(super) const CHANNEL_PRESERVING: &[&str] = &[
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "GroupNorm",
];

/// The convolutions with a shape form, `Conv2d(3 => 64, 3, stride = 2)`.
pub(super) const CONVS: &[&str] = &["Conv1d", "Conv2d"];

/// The batch norms with a shape form, `BatchNorm2d(_)`.
pub(super) const NORMS: &[&str] = &["BatchNorm1d", "BatchNorm2d"];

/// The options of a convolution's shape form, each a builder method of the layer.
pub(super) const CONV_OPTIONS: &[&str] = &["stride", "padding", "dilation", "groups", "bias"];

/// Whether the layer named `name` keeps its input's size (or channels).
pub(super) fn keeps_size(name: &str) -> bool {
    SIZE_PRESERVING.contains(&name) || CHANNEL_PRESERVING.contains(&name)
}

/// The last identifier of a path (`Conv2d` in `nn::layers::Conv2d`).
pub(super) fn path_name(p: &syn::Path) -> String {
    p.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// The span of the last identifier of a path, where problems with the layer are shown.
pub(super) fn last_span(p: &syn::Path) -> Span {
    p.segments
        .last()
        .map_or_else(|| p.span(), |s| s.ident.span())
}

/// The last two segments of a path expression (`Linear::new` -> (Some("Linear"), "new")).
pub(super) fn path_tail(e: &Expr) -> Option<(Option<String>, String)> {
    let Expr::Path(p) = e else { return None };
    let mut segs = p.path.segments.iter().rev();
    let last = segs.next()?.ident.to_string();
    let prev = segs.next().map(|s| s.ident.to_string());
    Some((prev, last))
}

/// The integer literal an expression is, if it is one.
pub(super) fn int_lit(e: &Expr) -> Option<&LitInt> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => Some(i),
        _ => None,
    }
}

/// Per-dim literal sizes of a layer argument: `3` (every dim) or `[3, 2]` (`rank` entries).
pub(super) fn lit_dims(e: &Expr, rank: usize) -> Option<[u64; 2]> {
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

/// `A::f(args).m(x).n(y)` split into the base `A::f(args)` and the calls `[(m, [x]), (n, [y])]`.
pub(super) fn split_chain(e: &Expr) -> (&Expr, Vec<(String, Vec<&Expr>)>) {
    let mut calls = Vec::new();
    let mut e = e;
    while let Expr::MethodCall(m) = e {
        calls.push((m.method.to_string(), m.args.iter().collect()));
        e = &m.receiver;
    }
    calls.reverse();
    (e, calls)
}

/// `Flatten::new()` or `Flatten::default()` (from dim 1 to the end).
pub(super) fn is_flatten(e: &Expr) -> bool {
    match e {
        Expr::Call(c) if c.args.is_empty() => matches!(
            path_tail(&c.func),
            Some((Some(ty), f)) if ty == "Flatten" && (f == "new" || f == "default")
        ),
        _ => false,
    }
}
