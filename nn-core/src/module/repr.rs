//! PyTorch-style printing of a module tree.

use super::{Buffer, Module, Param, Visitor};

struct Children<'a>(Vec<(String, &'a dyn Module)>);

impl<'a> Visitor<'a> for Children<'a> {
    fn param(&mut self, _: &str, _: &'a Param) {}
    fn buffer(&mut self, _: &str, _: &'a Buffer) {}
    fn module(&mut self, name: &str, m: &'a dyn Module) {
        self.0.push((name.to_string(), m));
    }
}

/// The module's tree as PyTorch prints it:
///
/// ```text
/// Sequential(
///   (0): Linear(in_features=4, out_features=8, bias=true)
///   (1): ReLU()
/// )
/// ```
pub fn repr(m: &dyn Module) -> String {
    let mut out = String::new();
    write_node(m, 0, &mut out);
    out
}

fn write_node(m: &dyn Module, indent: usize, out: &mut String) {
    let mut kids = Children(Vec::new());
    m.visit(&mut kids);
    out.push_str(&m.module_name());
    out.push('(');
    let extra = m.extra_repr();
    if kids.0.is_empty() {
        out.push_str(&extra);
        out.push(')');
        return;
    }
    let pad = " ".repeat(indent + 2);
    if !extra.is_empty() {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(&extra);
    }
    for (name, child) in kids.0 {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(&format!("({name}): "));
        write_node(child, indent + 2, out);
    }
    out.push('\n');
    out.push_str(&" ".repeat(indent));
    out.push(')');
}

/// Formats a partial shape with `?` for unknown dims.
pub fn fmt_partial(shape: &[Option<usize>]) -> String {
    let parts: Vec<String> = shape
        .iter()
        .map(|d| d.map(|d| d.to_string()).unwrap_or_else(|| "?".into()))
        .collect();
    format!("[{}]", parts.join(", "))
}

impl std::fmt::Debug for crate::Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Param({}, shape={}, requires_grad={})",
            self.name(),
            fmt_partial(&self.partial_shape()),
            self.requires_grad()
        )
    }
}

impl std::fmt::Display for crate::Param {
    /// PyTorch-style: `Parameter containing:\ntensor(...)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.data() {
            Ok(t) => write!(
                f,
                "Parameter containing:\n{}",
                t.with_requires_grad(self.requires_grad())
            ),
            Err(_) => write!(
                f,
                "<UninitializedParameter {}>",
                fmt_partial(&self.partial_shape())
            ),
        }
    }
}
