//! Our model of a `#[derive(Module)]` input: [`Input`], [`Variant`], [`Field`], each
//! keeping its syn node for spans.

use crate::attr::{self, ContainerAttrs, FieldAttrs};
use crate::errors::Errors;
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, Index, LitStr, Member, Type};

/// The derive input.
pub struct Input<'a> {
    pub original: &'a DeriveInput,
    pub attrs: ContainerAttrs,
    pub data: Data<'a>,
}

/// What the type holds.
pub enum Data<'a> {
    /// A struct (a union becomes an empty struct after its error is reported, so the
    /// stub impl still compiles).
    Struct(Vec<Field<'a>>),
    /// An enum; the active variant is visited.
    Enum(Vec<Variant<'a>>),
}

/// One enum variant.
pub struct Variant<'a> {
    pub ident: &'a Ident,
    /// `V { .. }` rather than `V(..)` or `V`.
    pub named: bool,
    pub fields: Vec<Field<'a>>,
}

/// How a field takes part in the traversal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A child module, parameter or buffer (`Module::register`).
    Child,
    /// A tensor moved with the model (`Visitor::constant`).
    Constant,
    /// Not visited.
    Skip,
}

/// One field of a struct or variant.
pub struct Field<'a> {
    pub original: &'a syn::Field,
    pub member: Member,
    pub ty: &'a Type,
    pub attrs: FieldAttrs,
}

impl Field<'_> {
    /// Its role, from its attributes.
    pub fn role(&self) -> Role {
        if self.attrs.skip.is_some() {
            Role::Skip
        } else if self.attrs.constant.is_some() {
            Role::Constant
        } else {
            Role::Child
        }
    }

    /// The child name: `rename`, else the field's name or position.
    pub fn child_name(&self) -> String {
        match (&self.attrs.rename, &self.member) {
            (Some(s), _) => s.value(),
            (None, Member::Named(i)) => i.unraw().to_string(),
            (None, Member::Unnamed(i)) => i.index.to_string(),
        }
    }

    /// The child name as a literal for generated code.
    pub fn child_name_lit(&self) -> LitStr {
        LitStr::new(&self.child_name(), self.name_span())
    }

    /// Where a problem with the name is shown: the `rename` value, else the field.
    pub fn name_span(&self) -> Span {
        match (&self.attrs.rename, &self.original.ident) {
            (Some(s), _) => s.span(),
            (None, Some(i)) => i.span(),
            (None, None) => self.ty.span(),
        }
    }

    /// Where type errors about the field are shown.
    pub fn ty_span(&self) -> Span {
        self.ty.span()
    }
}

fn fields<'a>(fields: &'a syn::Fields, errors: &mut Errors) -> Vec<Field<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| Field {
            original: f,
            member: match &f.ident {
                Some(id) => Member::Named(id.clone()),
                None => Member::Unnamed(Index {
                    index: i as u32,
                    span: f.ty.span(),
                }),
            },
            ty: &f.ty,
            attrs: attr::field_attrs(&f.attrs, errors),
        })
        .collect()
}

impl<'a> Input<'a> {
    /// Builds the model; problems go to `errors` and parsing goes on.
    pub fn from_syn(node: &'a DeriveInput, errors: &mut Errors) -> Input<'a> {
        let attrs = attr::container_attrs(&node.attrs, errors);
        let data = match &node.data {
            syn::Data::Struct(s) => Data::Struct(fields(&s.fields, errors)),
            syn::Data::Enum(e) => Data::Enum(
                e.variants
                    .iter()
                    .map(|v| {
                        attr::reject(&v.attrs, "enum variants", errors);
                        Variant {
                            ident: &v.ident,
                            named: matches!(v.fields, syn::Fields::Named(_)),
                            fields: fields(&v.fields, errors),
                        }
                    })
                    .collect(),
            ),
            syn::Data::Union(u) => {
                errors.push(syn::Error::new(
                    u.union_token.span,
                    "`#[derive(Module)]` does not support unions: only one field is valid at a time and nothing says which; use an enum",
                ));
                Data::Struct(Vec::new())
            }
        };
        Input {
            original: node,
            attrs,
            data,
        }
    }

    /// Every field, of every variant.
    pub fn all_fields(&self) -> Box<dyn Iterator<Item = &Field<'a>> + '_> {
        match &self.data {
            Data::Struct(f) => Box::new(f.iter()),
            Data::Enum(vs) => Box::new(vs.iter().flat_map(|v| v.fields.iter())),
        }
    }
}

impl Variant<'_> {
    /// The field of a single unnamed, unrenamed child: the variant is its inner value.
    pub fn transparent(&self) -> Option<&Field<'_>> {
        match self.fields.as_slice() {
            [f] if !self.named && f.role() == Role::Child && f.attrs.rename.is_none() => Some(f),
            _ => None,
        }
    }
}
