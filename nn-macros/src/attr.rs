//! `#[module(...)]` keys: parsed into [`FieldAttrs`] / [`ContainerAttrs`]; unknown,
//! duplicate and malformed keys are errors naming the key.

use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Path, Token};

/// The attribute's name: `#[module(...)]`.
pub const MODULE: &str = "module";
/// Field key: plain data, not visited.
pub const SKIP: &str = "skip";
/// Field key: a tensor reported through `Visitor::constant`.
pub const CONSTANT: &str = "constant";
/// Field key: the child's name.
pub const RENAME: &str = "rename";
/// Container key: the printed module name.
pub const NAME: &str = "name";
/// Container key: do not generate `Display`.
pub const NO_DISPLAY: &str = "no_display";
/// Hidden container key: the path of the `nn` crate (`crate` inside nn-core itself).
pub const CRATE: &str = "crate";

const FIELD_KEYS: &str = "`skip`, `constant` or `rename`";
const CONTAINER_KEYS: &str = "`name` or `no_display`";

/// A key as written, for ordering and spans.
#[derive(Clone)]
pub struct Key {
    pub name: &'static str,
    pub span: Span,
}

/// Keys found on one field.
#[derive(Default)]
pub struct FieldAttrs {
    pub skip: Option<Key>,
    pub constant: Option<Key>,
    pub rename: Option<LitStr>,
    /// Every accepted key, in source order (conflict rules report the later one).
    pub order: Vec<Key>,
}

/// Keys found on the struct or enum itself.
#[derive(Default)]
pub struct ContainerAttrs {
    pub name: Option<LitStr>,
    pub no_display: Option<Key>,
    pub krate: Option<Path>,
}

fn key_text(meta: &ParseNestedMeta) -> String {
    meta.path
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_else(|| {
            let p = &meta.path;
            quote::quote!(#p).to_string().replace(' ', "")
        })
}

/// Consumes whatever value follows a rejected key (`= expr` or `(...)`), so parsing
/// can go on and report the next problem too.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// A key that takes no value (`skip`, `constant`, `no_display`).
fn flag(meta: &ParseNestedMeta, name: &'static str, errors: &mut Errors) -> syn::Result<Key> {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        errors.push(syn::Error::new(
            meta.path.span(),
            format!("`{name}` takes no value: write `#[{MODULE}({name})]`"),
        ));
        skip_value(meta)?;
    }
    Ok(Key {
        name,
        span: meta.path.span(),
    })
}

/// A `key = "string"` value; `None` (with an error pushed) when it is not a string.
fn string_value(
    meta: &ParseNestedMeta,
    name: &'static str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    if !meta.input.peek(Token![=]) {
        errors.push(syn::Error::new(
            meta.path.span(),
            format!("`{name}` needs a value: write `#[{MODULE}({name} = \"...\")]`"),
        ));
        skip_value(meta)?;
        return Ok(None);
    }
    match meta.value()?.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(Some(s)),
        other => {
            errors.push(syn::Error::new(
                other.span(),
                format!("expected a string literal: `{name} = \"...\"`"),
            ));
            Ok(None)
        }
    }
}

/// Whether `name` can be a child name: `.` separates path components.
pub fn check_child_name(lit: &LitStr, errors: &mut Errors) -> bool {
    let v = lit.value();
    let ok = !v.is_empty() && !v.contains('.');
    if !ok {
        errors.push(syn::Error::new(
            lit.span(),
            format!("invalid child name {v:?}: it must be non-empty and contain no `.`"),
        ));
    }
    ok
}

fn duplicate(meta: &ParseNestedMeta, name: &str, errors: &mut Errors) -> syn::Result<()> {
    errors.push(syn::Error::new(
        meta.path.span(),
        format!("duplicate `{MODULE}` attribute key `{name}`"),
    ));
    skip_value(meta)
}

fn module_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident(MODULE))
}

/// Parses the `#[module(...)]` keys of a field.
pub fn field_attrs(attrs: &[Attribute], errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in module_attrs(attrs) {
        let res = attr.parse_nested_meta(|meta| {
            let key = key_text(&meta);
            match key.as_str() {
                SKIP if out.skip.is_some() => duplicate(&meta, SKIP, errors),
                CONSTANT if out.constant.is_some() => duplicate(&meta, CONSTANT, errors),
                RENAME if out.rename.is_some() => duplicate(&meta, RENAME, errors),
                SKIP => {
                    let k = flag(&meta, SKIP, errors)?;
                    out.order.push(k.clone());
                    out.skip = Some(k);
                    Ok(())
                }
                CONSTANT => {
                    let k = flag(&meta, CONSTANT, errors)?;
                    out.order.push(k.clone());
                    out.constant = Some(k);
                    Ok(())
                }
                RENAME => {
                    if let Some(s) = string_value(&meta, RENAME, errors)? {
                        if check_child_name(&s, errors) {
                            out.order.push(Key {
                                name: RENAME,
                                span: meta.path.span(),
                            });
                            out.rename = Some(s);
                        }
                    }
                    Ok(())
                }
                _ => {
                    errors.push(syn::Error::new(
                        meta.path.span(),
                        format!("unknown `{MODULE}` attribute key `{key}`: expected {FIELD_KEYS}"),
                    ));
                    skip_value(&meta)
                }
            }
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    out
}

/// Parses the `#[module(...)]` keys of the struct or enum.
pub fn container_attrs(attrs: &[Attribute], errors: &mut Errors) -> ContainerAttrs {
    let mut out = ContainerAttrs::default();
    for attr in module_attrs(attrs) {
        let res = attr.parse_nested_meta(|meta| {
            let key = key_text(&meta);
            match key.as_str() {
                NAME if out.name.is_some() => duplicate(&meta, NAME, errors),
                NO_DISPLAY if out.no_display.is_some() => duplicate(&meta, NO_DISPLAY, errors),
                CRATE if out.krate.is_some() => duplicate(&meta, CRATE, errors),
                NAME => {
                    if let Some(s) = string_value(&meta, NAME, errors)? {
                        if s.value().is_empty() {
                            errors.push(syn::Error::new(s.span(), "the module name is empty"));
                        } else {
                            out.name = Some(s);
                        }
                    }
                    Ok(())
                }
                NO_DISPLAY => {
                    out.no_display = Some(flag(&meta, NO_DISPLAY, errors)?);
                    Ok(())
                }
                CRATE => {
                    out.krate = Some(meta.value()?.parse::<Path>()?);
                    Ok(())
                }
                _ => {
                    errors.push(syn::Error::new(
                        meta.path.span(),
                        format!(
                            "unknown `{MODULE}` attribute key `{key}` on a type: expected {CONTAINER_KEYS} (field keys go on fields)"
                        ),
                    ));
                    skip_value(&meta)
                }
            }
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    out
}

/// Rejects `#[module(...)]` where it has no meaning (enum variants).
pub fn reject(attrs: &[Attribute], what: &str, errors: &mut Errors) {
    for attr in module_attrs(attrs) {
        errors.push(syn::Error::new(
            attr.path().span(),
            format!("`#[{MODULE}(...)]` is not supported on {what}"),
        ));
    }
}
