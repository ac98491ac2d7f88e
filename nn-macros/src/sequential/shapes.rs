//! Size tracking: what `sequential!` knows, entry by entry, about the size flowing out
//! of the previous entry, so that a literal size that cannot match is a compile error on
//! that literal and a `_` can be filled in.
//!
//! The rules, entry by entry, for the last known output size (the size of the features
//! dimension, or the channels, flowing out of the previous entry):
//! - the shape form `Linear(a => b)`, and `Linear::new(a, b)` / `Linear::no_bias(a, b)`
//!   with literal sizes: a literal `a` must equal the known size (else a compile error
//!   on `a`: "expected 256 (output of entry 0), found 128"); `_` takes the known size,
//!   or, when it is unknown, the layer is `Linear::lazy(b)` (sized at the first
//!   forward). Afterwards the known size is `b` if it is a literal, else unknown.
//!   `Linear::lazy(b)` sets it to `b`.
//! - size-preserving layers (`ReLU`, `Sigmoid`, `Tanh`, `Dropout`, `GELU`, `SiLU`,
//!   `LeakyReLU`, `Softmax`, `LogSoftmax`, `Identity`, `LayerNorm`, `RMSNorm`, written
//!   bare or as `X(..)`, `X::new(..)`, `X::default()`) keep it.
//! - channels follow the same way: `Conv2d(a => b, k, ..)` checks a literal `a` against
//!   the known channel count (error on `a`: "channel mismatch: expected 64 channels
//!   (output of entry 0), found 32"), fills `_` from it or becomes `Conv2d::lazy(b, k)`,
//!   and makes `b` the known channel count; `Conv2d::new(a, b, k)` (with builder calls
//!   after it) checks and sets alike. `BatchNorm2d(_)` / `BatchNorm1d(_)` take the known
//!   size (`BatchNorm2d::lazy()` when unknown), a literal is checked, and they keep it;
//!   pools and normalizations written as expressions keep it too. A known channel
//!   count is not a feature size: `Linear(_ => 10)` after `Conv2d` is lazy (unless a
//!   `Flatten` with known spatial sizes comes between, below), and a `Conv2d` after a
//!   `Linear` does not check against it.
//! - spatial sizes follow too, once known: from a declared input shape (`input = [c, h,
//!   w];`, or `[c, l]` for 1-d layers; `[f]` declares features) or from
//!   `AdaptiveAvgPool2d::new(..)`. Convolutions (both forms) and `MaxPool2d::new(k)` /
//!   `AvgPool2d::new(k)` with literal kernel, stride, padding, dilation (and
//!   `ceil_mode`) compute them by PyTorch's rule (a window larger than the padded input
//!   is an error at the layer); `padding = same` keeps them; a non-literal argument makes
//!   them unknown. `Flatten::new()` (or `Flatten::default()`) turns
//!   known channels and spatial sizes into the feature count `c * h * w`, which the next
//!   `Linear` checks or fills like any known size ("expected 144 (output of entry 3: 16
//!   x 3 x 3 flattened), found 100").
//! - anything else (`Flatten` without known spatial sizes, a nested `sequential!`, a
//!   variable, a function call) makes it unknown.

use super::layers::{
    int_lit, is_flatten, keeps_size, lit_dims, path_name, path_tail, split_chain, CONVS,
};
use super::parse::{ShapeNorm, Size};
use crate::errors::Errors;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitInt};

/// What a known size counts: the last dim (`Linear`) or the channels, dim 1 (`Conv2d`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Features,
    Channels,
}

/// Where a known size comes from: the declared input shape or an entry's output.
#[derive(Clone, Copy)]
pub(super) enum Origin {
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
pub(super) struct Known {
    pub(super) size: u64,
    pub(super) entry: Origin,
    pub(super) kind: Kind,
    /// With channels: the spatial sizes after them (`[h, w]`, or `[l]` for 1-d
    /// layers) when those are known too, so that `Flatten` gives a feature count.
    pub(super) spatial: Option<Spatial>,
}

/// Spatial sizes of a channels-first sample: `dims[..rank]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Spatial {
    dims: [u64; 2],
    rank: usize,
}

impl Known {
    /// `size` counting `kind`, made by entry `entry`, spatial sizes unknown.
    pub(super) fn new(size: u64, entry: usize, kind: Kind) -> Known {
        Known {
            size,
            entry: Origin::Entry(entry),
            kind,
            spatial: None,
        }
    }

    /// The known size when it counts `kind`.
    pub(super) fn of(known: Option<Known>, kind: Kind) -> Option<Known> {
        known.filter(|k| k.kind == kind)
    }
}

/// The value of a size literal; one too large for `u64` is an error at it.
pub(super) fn lit_value(l: &LitInt, errors: &mut Errors) -> Option<u64> {
    match l.base10_parse::<u64>() {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// A literal input size must equal the known size.
pub(super) fn check_input(l: &LitInt, known: Option<Known>, errors: &mut Errors) {
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

/// The known size a declared input shape starts with: features for `[f]`, channels
/// and spatial sizes for `[c, l]` and `[c, h, w]`.
pub(super) fn declared_known(dims: &[LitInt], errors: &mut Errors) -> Option<Known> {
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

/// The known size after the shape-form batch norm `n` at entry `entry` (its literal
/// size, else the known size before it, which `_` takes); call it after the norm's
/// size was checked.
pub(super) fn after_norm(
    n: &ShapeNorm,
    entry: usize,
    known: Option<Known>,
    errors: &mut Errors,
) -> Option<Known> {
    let kind = match path_name(&n.norm).as_str() {
        "BatchNorm2d" => Kind::Channels,
        _ => known.map_or(Kind::Channels, |k| k.kind),
    };
    match (&n.size, known) {
        (Size::Lit(l), _) => lit_value(l, errors).map(|size| Known {
            spatial: known.and_then(|k| k.spatial),
            ..Known::new(size, entry, kind)
        }),
        (Size::Infer(_), k) => k,
        (Size::Expr(_), _) => None,
    }
}

/// The known size after the expression entry `e` at entry `entry`, given the one
/// before it; a literal input size of a layer it recognises is checked.
pub(super) fn after_expr(
    e: &Expr,
    entry: usize,
    before: Option<Known>,
    errors: &mut Errors,
) -> Option<Known> {
    let mut known = if is_flatten(e) {
        Known::of(before, Kind::Channels).and_then(|k| {
            let s = k.spatial?;
            let size = s.dims[..s.rank]
                .iter()
                .try_fold(k.size, |a, d| a.checked_mul(*d))?;
            Some(Known {
                entry: Origin::Flattened(entry, k.size, s),
                ..Known::new(size, entry, Kind::Features)
            })
        })
    } else {
        track_expr(e, entry, before, errors)
    };
    if let Some(k) = known.as_mut().filter(|k| k.kind == Kind::Channels) {
        k.spatial = track_spatial(e, before, errors);
    }
    known
}

/// Tracks the size through an ordinary expression entry (the rules in this module's
/// documentation).
fn track_expr(e: &Expr, entry: usize, known: Option<Known>, errors: &mut Errors) -> Option<Known> {
    match e {
        // builder calls (`Conv2d::new(3, 8, 3).stride(2)`) keep the base's sizes
        Expr::MethodCall(m) => track_expr(&m.receiver, entry, known, errors),
        Expr::Path(_) => match path_tail(e) {
            Some((_, last)) if keeps_size(&last) => known,
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
                Some((Some(ty), f)) if keeps_size(&ty) && (f == "new" || f == "default") => known,
                Some((_, last)) if keeps_size(&last) => known,
                _ => None,
            }
        }
        Expr::Paren(p) => track_expr(&p.expr, entry, known, errors),
        _ => None,
    }
}

/// The sliding-window hyper-parameters of a convolution or pool, as literals.
pub(super) struct Geometry {
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
    pub(super) fn new(kernel: [u64; 2], stride: [u64; 2]) -> Geometry {
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
    pub(super) fn apply(
        mut self,
        method: &str,
        arg: Option<&Expr>,
        rank: usize,
    ) -> Option<Geometry> {
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
pub(super) fn windowed(
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

/// The spatial sizes after an expression entry, given the known size before it: window
/// layers (`Conv2d::new(..)`, `MaxPool2d::new(3).stride(2)`, ..) compute them,
/// `AdaptiveAvgPool2d::new(..)` sets them, size- and channel-preserving layers keep them.
fn track_spatial(e: &Expr, before: Option<Known>, errors: &mut Errors) -> Option<Spatial> {
    let (base, calls) = split_chain(e);
    let Expr::Call(call) = base else {
        return match path_tail(base) {
            // `ReLU`, and `ReLU.inplace(true)` (PyTorch's flag, which changes only the print)
            Some((_, last)) if keeps_size(&last) && calls.iter().all(|(m, _)| m == "inplace") => {
                before.and_then(|k| k.spatial)
            }
            _ => None,
        };
    };
    let args: Vec<&Expr> = call.args.iter().collect();
    let (ty, f) = match path_tail(&call.func)? {
        (Some(ty), f) => (ty, f),
        (None, last) => return before.and_then(|k| k.spatial).filter(|_| keeps_size(&last)),
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
        (ty, "new" | "default", _) if keeps_size(ty) && ty != "AdaptiveAvgPool2d" => {
            before.and_then(|k| k.spatial)
        }
        _ => None,
    }
}
