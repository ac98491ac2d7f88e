use nn::{Linear, Module, ModuleExt};

#[derive(Module)]
struct Net {
    hidden: Linear,
    #[module(skp)]
    steps: usize,
}

fn main() {
    // no cascade: the invalid derive still provides `Module` and `Display`
    let net = Net {
        hidden: Linear::new(2, 3),
        steps: 0,
    };
    let _ = (net.named_parameters(), net.to_string(), net.steps);
}
