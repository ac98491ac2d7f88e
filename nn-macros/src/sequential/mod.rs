//! `sequential![...]`, the function-like macro, as a pipeline: `parse.rs` reads the
//! input into [`SequentialInput`], `valid.rs` checks the rules that span several
//! entries, `shapes.rs` tracks the size flowing from entry to entry (with the tables of
//! `layers.rs`), and `expand.rs` generates `::nn::Sequential::new((...))` /
//! `Sequential::named`. Errors come with the expansion, so the binding keeps its type.

mod expand;
mod layers;
mod parse;
mod shapes;
mod valid;

pub use parse::SequentialInput;

use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use quote::quote;

/// The whole macro: parse, check, track sizes, expand.
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
    valid::check_count(&mut entries, &mut errors);
    let names = valid::check_names(&entries, &mut errors);
    let known = input
        .input
        .as_deref()
        .and_then(|dims| shapes::declared_known(dims, &mut errors));
    let ctor = expand::sequential(&entries, &names, known, &mut errors);
    let errs = errors.into_error().map(|e| e.to_compile_error());
    quote! {{
        #errs
        fn __nn_layer<L: ::nn::Module + ::nn::Forward>(layer: L) -> L {
            layer
        }
        #ctor
    }}
}
