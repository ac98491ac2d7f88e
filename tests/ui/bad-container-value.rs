use nn::{Linear, Module};

#[derive(Module)]
#[module(name = "")]
struct Empty {
    hidden: Linear,
}

#[derive(Module)]
#[module(name = Printed, no_display = false)]
struct NotAString {
    hidden: Linear,
}

fn main() {}
