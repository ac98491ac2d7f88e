use nn::{Linear, Module};

#[derive(Module)]
enum Head {
    Plain(Linear),
    Label(String),
    Pair { fc: Linear, name: String },
}

fn main() {}
