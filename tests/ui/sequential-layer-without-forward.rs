// A module that is not a layer (no `Forward`) cannot be chained. The layer is a type
// parameter here so that rustc suggests the missing bound instead of listing the types
// that implement `Forward` (a list that changes with the crate's features).
use nn::{sequential, Module, ReLU};

fn with_relu<B: Module>(block: B) -> impl Module {
    sequential![block, ReLU]
}

fn main() {}
