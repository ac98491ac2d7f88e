//! `nn inspect`: what a file is and holds, as full keys (the default), a tree of the
//! dotted keys (`--tree`) or JSON (`--json`).

use crate::describe::{Described, Item, TensorItem};
use crate::{human, shape};
use serde_json::json;

/// The widest key column of the flat listing (longer keys push their line's columns).
const KEY_WIDTH: usize = 48;

/// The first line: file, kind, totals (ties counted once).
fn headline(d: &Described) -> String {
    let (n, elems, bytes, tied) = d.totals();
    let tied = match tied {
        0 => String::new(),
        t => format!(" (+{t} tied, counted once)"),
    };
    format!(
        "{}: {}, {n} tensors{tied}, {elems} elements, {}",
        d.path.display(),
        d.kind_text(),
        human(bytes)
    )
}

/// The description of a tensor after its key.
fn what(t: &TensorItem) -> String {
    let tie = match &t.tied_to {
        Some(first) => format!("  tied to {first}"),
        None => String::new(),
    };
    format!(
        "{:9} {:14} {}{tie}",
        t.dtype.as_str(),
        shape(&t.shape),
        human(t.bytes as u128)
    )
}

fn row(item: &Item) -> String {
    match item {
        Item::Tensor(t) => what(t),
        Item::Value { text, .. } => format!("= {text}"),
    }
}

/// Text: the headline, then one line per entry with its full key.
pub fn flat(o: &mut String, d: &Described) {
    say!(o, "{}", headline(d));
    let width = d
        .items
        .iter()
        .map(|i| i.name().len())
        .max()
        .unwrap_or(0)
        .min(KEY_WIDTH);
    for item in &d.items {
        say!(o, "  {:width$} {}", item.name(), row(item));
    }
}

/// Text: the headline, then the keys as a tree, a group line for each dotted prefix
/// where it first appears.
pub fn tree(o: &mut String, d: &Described) {
    say!(o, "{}", headline(d));
    let mut open: Vec<String> = Vec::new();
    for item in &d.items {
        let parts: Vec<&str> = item.name().split('.').collect();
        let (groups, leaf) = parts.split_at(parts.len().saturating_sub(1));
        let common = open.iter().zip(groups).take_while(|(a, b)| a == b).count();
        open.truncate(common);
        for g in &groups[common..] {
            say!(o, "{}{g}/", "  ".repeat(open.len() + 1));
            open.push((*g).to_string());
        }
        let leaf = leaf.first().copied().unwrap_or("");
        let indent = 2 * (open.len() + 1);
        let width = 32usize.saturating_sub(indent);
        say!(o, "{}{leaf:width$} {}", " ".repeat(indent), row(item));
    }
}

/// JSON for scripts: kind, format, every tensor (with `tied_to`), the values, totals.
pub fn to_json(d: &Described) -> serde_json::Value {
    let (n, elems, bytes, tied) = d.totals();
    json!({
        "file": d.path.display().to_string(),
        "format": d.format.name(),
        "version": d.version,
        "kind": d.kind.id(),
        "description": d.kind_text(),
        "tensors": d.tensors().map(|t| json!({
            "name": t.name,
            "dtype": t.dtype.as_str(),
            "shape": t.shape,
            "bytes": t.bytes,
            "tied_to": t.tied_to,
        })).collect::<Vec<_>>(),
        "others": d.values().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "distinct_tensors": n,
        "tied_tensors": tied,
        "total_elements": elems as u64,
        "total_bytes": bytes as u64,
    })
}
