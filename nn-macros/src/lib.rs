//! Procedural macros for `nn`: `#[derive(Module)]` and `sequential!`.
