// A layer whose forward takes several inputs cannot be chained: `sequential!` passes one
// tensor from layer to layer. Call it on its own, before or after the chain.
use nn::{sequential, Forward, Linear, Module, Result, Tensor};

#[derive(Module)]
struct MaskedMean {
    proj: Linear,
}

impl Forward<(Tensor, Tensor)> for MaskedMean {
    fn forward(&self, (tokens, _mask): &(Tensor, Tensor)) -> Result<Tensor> {
        self.proj.forward(tokens)
    }
}

fn main() {
    let _net = sequential![Linear(4 => 4), MaskedMean { proj: Linear::new(4, 2) }];
}
