//! `sequential!` carries the feature size through the size-preserving sequence-era
//! activations (the passing twin of tests/ui/sequential-size-through-activations.rs).

use nn::layers::{Identity, LeakyReLU, SiLU, Softmax, GELU};
use nn::{sequential, Forward, Linear, ModuleExt, Result, Tensor};

#[test]
fn sizes_flow_through_activations() -> Result<()> {
    let net = sequential![
        Linear(4 => 8),
        GELU::new(),
        SiLU,
        LeakyReLU::new(0.1),
        Identity,
        Softmax::new(-1),
        Linear(_ => 3),
    ];
    // the last Linear got its input size from the first one's output, through every
    // activation: it is built eagerly, not lazily
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "6.weight", "6.bias"]);
    assert_eq!(net.parameters()[2].shape(), Some(vec![3, 8]));
    assert_eq!(net.forward(&Tensor::randn(&[2, 4]))?.shape(), &[2, 3]);
    Ok(())
}
