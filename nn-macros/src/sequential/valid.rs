//! Rules of `sequential!` that span several entries, one comment per rule.

use super::parse::Entry;
use crate::attr::check_child_name;
use crate::errors::Errors;
use syn::LitStr;

/// Most entries one `sequential!` takes: the arity of the tuple `Module`/`Chain` impls.
pub(super) const MAX_ENTRIES: usize = 16;

/// Rule: at most [`MAX_ENTRIES`] entries; the first one too many is underlined and the
/// rest are dropped, so that the expansion still type-checks.
pub(super) fn check_count(entries: &mut Vec<Entry>, errors: &mut Errors) {
    if let Some(extra) = entries.get(MAX_ENTRIES) {
        errors.push(syn::Error::new(
            extra.span(),
            format!(
                "sequential! takes at most {MAX_ENTRIES} layers and this is layer {}: group layers into a nested `sequential![...]`",
                MAX_ENTRIES + 1
            ),
        ));
        entries.truncate(MAX_ENTRIES);
    }
}

/// Rule: child names are unique (given names and the positions of unnamed entries);
/// the given name involved is underlined. Returns every entry's name.
pub(super) fn check_names(entries: &[Entry], errors: &mut Errors) -> Vec<String> {
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
