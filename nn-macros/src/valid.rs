//! Rules that span several keys or fields, checked after parsing.

use crate::ast::{Data, Field, Input, Role};
use crate::attr::{CONSTANT, RENAME, SKIP};
use crate::errors::Errors;

/// Checks the rules below, pushing every violation.
pub fn check(input: &Input, errors: &mut Errors) {
    for f in input.all_fields() {
        exclusive_roles(f, errors);
        rename_needs_child(f, errors);
    }
    match &input.data {
        Data::Struct(fields) => unique_names(fields, errors),
        Data::Enum(variants) => {
            for v in variants {
                unique_names(&v.fields, errors);
            }
        }
    }
}

// Rule: `skip` and `constant` exclude each other (a skipped field is not visited at
// all, a constant is); the later key is underlined.
fn exclusive_roles(f: &Field, errors: &mut Errors) {
    if f.attrs.skip.is_none() || f.attrs.constant.is_none() {
        return;
    }
    if let Some(later) = f
        .attrs
        .order
        .iter()
        .filter(|k| k.name == SKIP || k.name == CONSTANT)
        .nth(1)
    {
        errors.push(syn::Error::new(
            later.span,
            format!("`{SKIP}` and `{CONSTANT}` cannot be combined: a skipped field is not visited at all, a constant is visited as a tensor"),
        ));
    }
}

// Rule: `rename` names a child; on a skipped field there is no child to name.
fn rename_needs_child(f: &Field, errors: &mut Errors) {
    if f.role() != Role::Skip {
        return;
    }
    if let Some(k) = f.attrs.order.iter().find(|k| k.name == RENAME) {
        errors.push(syn::Error::new(
            k.span,
            format!("`{RENAME}` has no effect on a `{SKIP}` field: it is not visited"),
        ));
    }
}

// Rule: within one struct (or one enum variant) child names are unique, after
// `rename`; the later field is underlined (at its `rename` value if it has one).
fn unique_names(fields: &[Field], errors: &mut Errors) {
    let visited: Vec<&Field> = fields.iter().filter(|f| f.role() != Role::Skip).collect();
    for (i, f) in visited.iter().enumerate() {
        let name = f.child_name();
        if let Some(first) = visited[..i].iter().find(|g| g.child_name() == name) {
            errors.push(syn::Error::new(
                f.name_span(),
                format!(
                    "duplicate child name `{name}`: field `{}` already registers under it",
                    member_text(first)
                ),
            ));
        }
    }
}

fn member_text(f: &Field) -> String {
    match &f.member {
        syn::Member::Named(i) => i.to_string(),
        syn::Member::Unnamed(i) => i.index.to_string(),
    }
}
