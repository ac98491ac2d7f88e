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

/// The module's tree exactly as PyTorch's `repr()` prints it:
///
/// ```text
/// Sequential(
///   (0): Linear(in_features=4, out_features=8, bias=True)
///   (1): ReLU()
/// )
/// ```
///
/// A module prints `Name(extra_repr)` on one line when it has no children and a
/// one-line [`Module::extra_repr`]; otherwise the extra lines and then `(name): child`
/// lines, indented by two spaces per level (`torch.nn.Module.__repr__`). A module named
/// `ModuleList` (a `Vec` or array of modules) collapses runs of consecutive children that
/// print identically into one `(0-1): 2 x Child(..)` entry and prints no extra text, as
/// `torch.nn.ModuleList.__repr__` does; `Sequential` and other modules list every child.
pub fn repr(m: &dyn Module) -> String {
    let mut kids = Children(Vec::new());
    m.visit(&mut kids);
    let name = m.module_name();
    if name == "ModuleList" {
        return module_list_repr(&name, &kids.0);
    }
    let extra = m.extra_repr();
    let extra_lines: Vec<&str> = if extra.is_empty() {
        Vec::new()
    } else {
        extra.split('\n').collect()
    };
    if kids.0.is_empty() && extra_lines.len() == 1 {
        return format!("{name}({extra})");
    }
    let lines: Vec<String> = extra_lines
        .iter()
        .map(|l| l.to_string())
        .chain(
            kids.0
                .iter()
                .map(|(key, child)| format!("({key}): {}", add_indent(&repr(*child), 2))),
        )
        .collect();
    wrap(&name, &lines)
}

/// `Name(` + the lines, each on its own line indented by two spaces + `)`; `Name()`
/// without lines.
fn wrap(name: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("{name}()");
    }
    format!("{name}(\n  {}\n)", lines.join("\n  "))
}

/// PyTorch's `_addindent`: every line but the first indented by `spaces`.
fn add_indent(s: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut lines = s.split('\n');
    let mut out = lines.next().unwrap_or_default().to_string();
    for l in lines {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(l);
    }
    out
}

/// `torch.nn.ModuleList.__repr__`: consecutive children with equal reprs print once as
/// `(first-last): n x Child(..)`; the keys are the positions.
fn module_list_repr(name: &str, kids: &[(String, &dyn Module)]) -> String {
    let mut runs: Vec<(usize, usize, String)> = Vec::new();
    for (i, (_, child)) in kids.iter().enumerate() {
        let r = repr(*child);
        match runs.last_mut() {
            Some((_, end, last)) if *last == r => *end = i,
            _ => runs.push((i, i, r)),
        }
    }
    let lines: Vec<String> = runs
        .iter()
        .map(|(start, end, r)| {
            let entry = if start == end {
                format!("({start}): {r}")
            } else {
                format!("({start}-{end}): {} x {r}", end - start + 1)
            };
            add_indent(&entry, 2)
        })
        .collect();
    wrap(name, &lines)
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

#[cfg(test)]
mod tests {
    use super::repr;
    use crate::layers::{Linear, ReLU, Sequential, Tanh};

    #[test]
    fn module_lists_collapse_runs_of_equal_children_as_pytorch() {
        // repr(nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.Tanh(), nn.ReLU()])) in PyTorch 2.15
        let list: Vec<Box<dyn crate::module::Module>> = vec![
            Box::new(ReLU),
            Box::new(ReLU),
            Box::new(Tanh),
            Box::new(ReLU),
        ];
        assert_eq!(
            repr(&list),
            "ModuleList(\n  (0-1): 2 x ReLU()\n  (2): Tanh()\n  (3): ReLU()\n)"
        );
        let empty: Vec<ReLU> = Vec::new();
        assert_eq!(repr(&empty), "ModuleList()");
        // multi-line children are indented under the collapsed entry
        let nested = [
            Sequential::new((Linear::new(2, 2), ReLU)),
            Sequential::new((Linear::new(2, 2), ReLU)),
        ];
        assert_eq!(
            repr(&nested),
            "ModuleList(\n  (0-1): 2 x Sequential(\n    (0): Linear(in_features=2, out_features=2, bias=True)\n    (1): ReLU()\n  )\n)"
        );
    }

    #[test]
    fn sequential_lists_every_child() {
        let s = Sequential::new((ReLU, ReLU));
        assert_eq!(repr(&s), "Sequential(\n  (0): ReLU()\n  (1): ReLU()\n)");
    }
}
