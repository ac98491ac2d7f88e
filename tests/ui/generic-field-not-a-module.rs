use nn::Module;

#[derive(Module)]
struct Wrap<M> {
    inner: M,
}

fn train(_model: &impl Module) {}

fn main() {
    train(&Wrap { inner: 3usize });
}
