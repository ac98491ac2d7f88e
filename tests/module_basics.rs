//! Smoke tests of the module system without macros: names, ties, repr, lazy shapes.

use nn::{Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};

#[test]
fn tied_layer_names_and_grad_sum() -> Result<()> {
    nn::manual_seed(0);
    let shared = Linear::new(8, 8);
    let net = Sequential::new((
        Linear::new(4, 8),
        ReLU,
        shared.clone(),
        ReLU,
        shared.clone(),
        ReLU,
        Linear::new(8, 1),
    ));
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["0.weight", "0.bias", "2.weight", "2.bias", "6.weight", "6.bias"]
    );
    let keys: Vec<String> = net.state_dict()?.keys().map(String::from).collect();
    assert_eq!(keys.len(), 8);
    assert!(net.2.weight.ptr_eq(&net.4.weight));
    net.2.weight.set_item(&[0, 0], 42.0)?;
    assert_eq!(net.4.weight.data()?.to_vec::<f32>()?[0], 42.0);
    let y = net.forward(&Tensor::rand(&[2, 4]))?;
    y.sum()?.backward()?;
    assert!(net.2.weight.grad().is_some());
    assert!(net.repr().starts_with(
        "Sequential(\n  (0): Linear(in_features=4, out_features=8, bias=True)\n  (1): ReLU()"
    ));
    Ok(())
}

#[test]
fn lazy_equals_eager_under_one_seed() -> Result<()> {
    nn::manual_seed(7);
    let eager = Sequential::new((Linear::new(20, 16), ReLU, Linear::new(16, 3)));
    nn::manual_seed(7);
    let lazy = Sequential::new((Linear::lazy(16), ReLU, Linear::lazy(3)));
    let err = lazy
        .0
        .weight
        .data()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("not initialized"), "{err}");
    let x = Tensor::rand(&[2, 20]);
    let (a, b) = (eager.forward(&x)?, lazy.forward(&x)?);
    assert_eq!(a.to_vec::<f32>()?, b.to_vec::<f32>()?);
    let bad = lazy
        .forward(&Tensor::rand(&[2, 5]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        bad.contains("Linear(in_features=20") && bad.contains("[2, 5]"),
        "{bad}"
    );
    Ok(())
}
