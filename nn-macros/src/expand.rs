//! Code generation for `#[derive(Module)]`: `impl Module` (visit, visit_mut,
//! module_name, and for enums with transparent variants register/extra_repr/
//! set_training) and `impl Display`; a stub of both on invalid input.

use crate::ast::{Data, Field, Input, Role, Variant};
use crate::errors::Errors;
use crate::valid;
use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::{DeriveInput, WherePredicate};

/// The whole derive: parse, validate, expand (or errors plus a stub).
pub fn derive(node: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let input = Input::from_syn(node, &mut errors);
    valid::check(&input, &mut errors);
    match errors.into_error() {
        None => expand(&input),
        Some(e) => {
            let mut out = e.to_compile_error();
            out.extend(fallback(&input));
            out
        }
    }
}

fn krate(input: &Input) -> TokenStream {
    match &input.attrs.krate {
        Some(p) => p.to_token_stream(),
        None => quote!(::nn),
    }
}

fn printed_name(input: &Input) -> String {
    match &input.attrs.name {
        Some(s) => s.value(),
        None => input.original.ident.unraw().to_string(),
    }
}

/// Whether the tokens of `ty` mention one of the generic parameters (so a bound on it
/// is meaningful; a bound on a concrete type would only duplicate the error that the
/// field's own code already reports).
fn mentions(ty: TokenStream, params: &[Ident]) -> bool {
    ty.into_iter().any(|t| match t {
        TokenTree::Ident(i) => params.contains(&i),
        TokenTree::Group(g) => mentions(g.stream(), params),
        _ => false,
    })
}

/// One bound per distinct field type that mentions a type or const parameter, spanned
/// on the field so an unmet bound is reported there.
fn bounds(input: &Input, krate: &TokenStream) -> Vec<WherePredicate> {
    let generics = &input.original.generics;
    let params: Vec<Ident> = generics
        .type_params()
        .map(|p| p.ident.clone())
        .chain(generics.const_params().map(|p| p.ident.clone()))
        .collect();
    if params.is_empty() {
        return Vec::new();
    }
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for f in input.all_fields() {
        let ty = f.ty;
        if !mentions(ty.to_token_stream(), &params) {
            continue;
        }
        let key = format!("{:?}{}", f.role() as u8, ty.to_token_stream());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let pred = match f.role() {
            Role::Child => quote_spanned!(f.ty_span()=> #ty: #krate::Module),
            Role::Constant => quote_spanned!(f.ty_span()=> #ty: #krate::module::Constant),
            Role::Skip => quote_spanned!(f.ty_span()=>
                #ty: ::core::marker::Send + ::core::marker::Sync + 'static
            ),
        };
        if let Ok(p) = syn::parse2(pred) {
            out.push(p);
        }
    }
    out
}

/// `impl<...> Trait for Type<...> where ...` header parts.
struct Header {
    impl_generics: TokenStream,
    ty: TokenStream,
    where_clause: TokenStream,
}

fn header(input: &Input, krate: &TokenStream) -> Header {
    let (impl_generics, ty_generics, where_clause) = input.original.generics.split_for_impl();
    let ident = &input.original.ident;
    let mut preds: Vec<TokenStream> = where_clause
        .map(|w| w.predicates.iter().map(|p| p.to_token_stream()).collect())
        .unwrap_or_default();
    preds.extend(
        bounds(input, krate)
            .into_iter()
            .map(|p| p.to_token_stream()),
    );
    Header {
        impl_generics: impl_generics.to_token_stream(),
        ty: quote!(#ident #ty_generics),
        where_clause: if preds.is_empty() {
            TokenStream::new()
        } else {
            quote!(where #(#preds,)*)
        },
    }
}

/// How one field is visited; `access` is `&self.f` / a binding, `mutable` picks
/// `register_mut`.
fn visit_field(f: &Field, access: TokenStream, mutable: bool, krate: &TokenStream) -> TokenStream {
    let ty = f.ty;
    let name = f.child_name_lit();
    match (f.role(), mutable) {
        (Role::Skip, _) => TokenStream::new(),
        (Role::Child, false) => quote_spanned!(f.ty_span()=>
            <#ty as #krate::Module>::register(#access, #name, __v);
        ),
        (Role::Child, true) => quote_spanned!(f.ty_span()=>
            <#ty as #krate::Module>::register_mut(#access, #name, __v);
        ),
        (Role::Constant, false) => quote_spanned!(f.ty_span()=>
            <#ty as #krate::module::Constant>::register_constant(#access, #name, __v);
        ),
        (Role::Constant, true) => quote_spanned!(f.ty_span()=>
            <#ty as #krate::module::Constant>::register_constant_mut(#access, #name, __v);
        ),
    }
}

fn binding(i: usize) -> Ident {
    format_ident!("__nn_f{}", i)
}

/// `Self::V { a: __nn_f0, .. }` / `Self::V(__nn_f0, _)` / `Self::V`.
fn pattern(v: &Variant) -> TokenStream {
    let ident = v.ident;
    if v.named {
        let binds = v.fields.iter().enumerate().map(|(i, f)| {
            let m = &f.member;
            if f.role() == Role::Skip {
                quote!(#m: _)
            } else {
                let b = binding(i);
                quote!(#m: #b)
            }
        });
        quote!(Self::#ident { #(#binds),* })
    } else if v.fields.is_empty() {
        quote!(Self::#ident)
    } else {
        let binds = v.fields.iter().enumerate().map(|(i, f)| {
            if f.role() == Role::Skip {
                quote!(_)
            } else {
                binding(i).to_token_stream()
            }
        });
        quote!(Self::#ident(#(#binds),*))
    }
}

/// `stmts` (the field registrations) run in PyTorch's order: own parameters, then own
/// buffers, then children (`nn::module::visit_in_order`); as they are when at most one
/// field is visited, where the order cannot change.
fn in_order(
    fields: &[Field],
    stmts: TokenStream,
    mutable: bool,
    krate: &TokenStream,
) -> TokenStream {
    if fields.iter().filter(|f| f.role() != Role::Skip).count() < 2 {
        return stmts;
    }
    if mutable {
        quote!(#krate::module::visit_in_order_mut(__v, |__v| { #stmts });)
    } else {
        quote!(#krate::module::visit_in_order(__v, |__v| { #stmts });)
    }
}

/// The body of `visit` (or `visit_mut`).
fn visit_body(input: &Input, mutable: bool, krate: &TokenStream) -> TokenStream {
    match &input.data {
        Data::Struct(fields) => {
            let stmts = fields.iter().map(|f| {
                let m = &f.member;
                let access = if mutable {
                    quote_spanned!(f.ty_span()=> &mut self.#m)
                } else {
                    quote_spanned!(f.ty_span()=> &self.#m)
                };
                visit_field(f, access, mutable, krate)
            });
            in_order(fields, quote!(#(#stmts)*), mutable, krate)
        }
        Data::Enum(variants) => {
            let arms = variants.iter().map(|v| {
                let pat = pattern(v);
                if let Some(f) = v.transparent() {
                    let (ty, b) = (f.ty, binding(0));
                    let call = if mutable {
                        quote_spanned!(f.ty_span()=> <#ty as #krate::Module>::visit_mut(#b, __v))
                    } else {
                        quote_spanned!(f.ty_span()=> <#ty as #krate::Module>::visit(#b, __v))
                    };
                    return quote!(#pat => #call,);
                }
                let stmts = v
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| visit_field(f, binding(i).to_token_stream(), mutable, krate));
                let body = in_order(&v.fields, quote!(#(#stmts)*), mutable, krate);
                quote!(#pat => { #body })
            });
            if variants.is_empty() {
                // `&Never` is inhabited for the exhaustiveness check; `Never` is not
                return quote!(match *self {});
            }
            quote!(match self { #(#arms)* })
        }
    }
}

/// `match self { transparent arms => inner call, _ => default }` for the methods a
/// transparent variant delegates to its inner value; `None` when no variant is.
fn delegate(
    input: &Input,
    krate: &TokenStream,
    call: impl Fn(&Ident) -> TokenStream,
    default: TokenStream,
) -> Option<TokenStream> {
    let Data::Enum(variants) = &input.data else {
        return None;
    };
    let arms: Vec<TokenStream> = variants
        .iter()
        .filter_map(|v| v.transparent().map(|f| (v, f)))
        .map(|(v, f)| {
            let pat = pattern(v);
            let ty = f.ty;
            let c = call(&binding(0));
            let c = quote_spanned!(f.ty_span()=> <#ty as #krate::Module>::#c);
            quote!(#pat => #c,)
        })
        .collect();
    if arms.is_empty() {
        return None;
    }
    let rest = if arms.len() < variants.len() {
        quote!(_ => #default,)
    } else {
        TokenStream::new()
    };
    Some(quote!(match self { #(#arms)* #rest }))
}

fn display_impl(input: &Input, h: &Header, body: TokenStream) -> TokenStream {
    if input.attrs.no_display.is_some() {
        return TokenStream::new();
    }
    let Header {
        impl_generics,
        ty,
        where_clause,
    } = h;
    quote! {
        #[automatically_derived]
        impl #impl_generics ::core::fmt::Display for #ty #where_clause {
            fn fmt(&self, __f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #body
            }
        }
    }
}

fn expand(input: &Input) -> TokenStream {
    let krate = krate(input);
    let h = header(input, &krate);
    let visit = visit_body(input, false, &krate);
    let visit_mut = visit_body(input, true, &krate);
    let name = printed_name(input);
    let module_name = match &input.attrs.name {
        Some(_) => quote!(::std::string::String::from(#name)),
        None => delegate(
            input,
            &krate,
            |b| quote!(module_name(#b)),
            quote!(::std::string::String::from(#name)),
        )
        .unwrap_or_else(|| quote!(::std::string::String::from(#name))),
    };
    let extras = delegate(
        input,
        &krate,
        |b| quote!(register(#b, __name, __v)),
        quote!(__v.module(__name, self)),
    )
    .map(|register| {
        let register_mut = delegate(
            input,
            &krate,
            |b| quote!(register_mut(#b, __name, __v)),
            quote!(__v.module(__name, self)),
        );
        let extra_repr = delegate(
            input,
            &krate,
            |b| quote!(extra_repr(#b)),
            quote!(::std::string::String::new()),
        );
        let set_training = delegate(
            input,
            &krate,
            |b| quote!(set_training(#b, __training)),
            quote!({}),
        );
        quote! {
            fn register<'__nn_a>(&'__nn_a self, __name: &str, __v: &mut dyn #krate::module::Visitor<'__nn_a>) {
                #register
            }
            fn register_mut(&mut self, __name: &str, __v: &mut dyn #krate::module::VisitorMut) {
                #register_mut
            }
            fn extra_repr(&self) -> ::std::string::String {
                #extra_repr
            }
            fn set_training(&mut self, __training: bool) {
                #set_training
            }
        }
    });
    let Header {
        impl_generics,
        ty,
        where_clause,
    } = &h;
    let display = display_impl(
        input,
        &h,
        quote!(__f.write_str(&#krate::module::repr(self))),
    );
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Module for #ty #where_clause {
            fn visit<'__nn_a>(&'__nn_a self, __v: &mut dyn #krate::module::Visitor<'__nn_a>) {
                #visit
            }
            fn visit_mut(&mut self, __v: &mut dyn #krate::module::VisitorMut) {
                #visit_mut
            }
            fn module_name(&self) -> ::std::string::String {
                #module_name
            }
            #extras
        }
        #display
    }
}

/// What invalid input gets besides its errors: an empty traversal, so that uses of
/// the type elsewhere do not add unrelated "not a module" errors.
fn fallback(input: &Input) -> TokenStream {
    let krate = krate(input);
    let h = header(input, &krate);
    let name = printed_name(input);
    let Header {
        impl_generics,
        ty,
        where_clause,
    } = &h;
    let display = display_impl(input, &h, quote!(__f.write_str(#name)));
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Module for #ty #where_clause {
            fn visit<'__nn_a>(&'__nn_a self, _: &mut dyn #krate::module::Visitor<'__nn_a>) {}
            fn visit_mut(&mut self, _: &mut dyn #krate::module::VisitorMut) {}
        }
        #display
    }
}
