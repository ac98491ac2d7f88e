//! Errors name where in the model they happened: a layer's dotted path with its
//! description, a deferred parameter's full path, `Param::name()` inside `apply`; for
//! `sequential!`, a derived struct and one nested in another, and for shared layers.

use nn::optim::{Optimizer, Sgd};
use nn::{sequential, Error, Forward, Linear, Module, ModuleExt, ReLU, Result, Sequential, Tensor};

fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => format!("unexpectedly Ok: {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sequential_errors_name_the_layer_from_the_start() {
    let net = sequential![Linear(4 => 8), ReLU, Linear(8 => 2)];
    assert_eq!(
        err(net.forward(&Tensor::rand(&[2, 5]))),
        "0 (Linear(in_features=4, out_features=8, bias=True)): expected input with last dim 4, got shape [2, 5]"
    );
    // a deferred parameter says its full path, before any traversal
    let lazy = sequential![Linear::lazy(3), ReLU, Linear::lazy(1)];
    let m = err(lazy.2.weight.data());
    assert!(m.contains("parameter `2.weight`"), "{m}");
}

#[derive(Module)]
struct Net {
    layers: Sequential<(Linear, ReLU, Linear)>,
    head: Linear,
}

impl Forward for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.layers.forward(x)?)
    }
}

fn net() -> Net {
    Net {
        // layer 2 expects 4 features but gets 8: every forward fails there
        layers: Sequential::new((Linear::new(4, 8), ReLU, Linear::new(4, 8))),
        head: Linear::lazy(1),
    }
}

#[derive(Module)]
struct Outer {
    inner: Net,
}

#[test]
fn a_derived_model_names_the_full_path_once_placed() -> Result<()> {
    let net = net();
    let _opt = Sgd::with_lr(net.parameters(), 0.1)?;
    let r = net.forward(&Tensor::rand(&[2, 4]));
    assert_eq!(
        err(r),
        "layers.2 (Linear(in_features=4, out_features=8, bias=True)): expected input with last dim 4, got shape [2, 8]"
    );
    let m = err(net.head.weight.data());
    assert!(m.contains("parameter `head.weight`"), "{m}");
    match net.head.bias.as_ref().map(|b| b.tensor()) {
        Some(Err(Error::Uninitialized { param })) => assert_eq!(param, "head.bias"),
        other => panic!("expected Uninitialized, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_nested_model_names_the_path_from_its_root() -> Result<()> {
    let outer = Outer { inner: net() };
    // any traversal places the parameters: here a failed state_dict (lazy head)
    let m = err(outer.state_dict());
    assert!(m.contains("`inner.head.weight`"), "{m}");
    let m = err(outer.forward_inner(&Tensor::rand(&[3, 4])));
    assert!(
        m.starts_with("inner.layers.2 (Linear(in_features=4, out_features=8, bias=True)): expected input with last dim 4"),
        "{m}"
    );
    // a traversal of a sub-module does not shorten what the parameters know
    let _ = outer.inner.layers.named_parameters();
    assert_eq!(outer.inner.layers.0.weight.name(), "inner.layers.0.weight");
    let m = err(outer.inner.head.weight.data());
    assert!(m.contains("`inner.head.weight`"), "{m}");
    Ok(())
}

impl Outer {
    fn forward_inner(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.forward(x)
    }
}

#[test]
fn param_names_inside_apply_are_paths() -> Result<()> {
    // never traversed before: apply's own walk places the parameters
    let outer = Outer { inner: net() };
    let mut names = Vec::new();
    outer.apply(|l: &Linear| {
        names.push(l.weight.name());
        Ok(())
    })?;
    assert_eq!(
        names,
        [
            "inner.layers.0.weight",
            "inner.layers.2.weight",
            "inner.head.weight"
        ]
    );
    Ok(())
}

#[derive(Module)]
struct Tied {
    a: Linear,
    b: Linear,
}

#[test]
fn shared_layers_keep_the_path_of_their_first_placement() -> Result<()> {
    let shared = Linear::new(4, 4);
    let chain = sequential![shared.clone(), ReLU, shared.clone()];
    let names: Vec<String> = chain
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["0.weight", "0.bias"]);
    assert_eq!(shared.weight.name(), "0.weight");
    // the same name an error through either use reports
    let m = err(chain.forward(&Tensor::rand(&[1, 3])));
    assert!(m.starts_with("0 (Linear(in_features=4"), "{m}");

    let fc = Linear::lazy(2);
    let tied = Tied {
        a: fc.clone(),
        b: fc,
    };
    let mut opt = Sgd::with_lr(tied.parameters(), 0.1)?;
    assert_eq!(
        opt.params().len(),
        2,
        "a tied layer's parameters counted once"
    );
    assert_eq!(tied.b.weight.name(), "a.weight");
    let m = err(tied.b.weight.data());
    assert!(m.contains("`a.weight`"), "{m}");
    opt.set_lr(0.2)?;
    Ok(())
}

#[test]
fn layers_without_parameters_are_located_by_their_container() -> Result<()> {
    use nn::layers::{DynSequential, Flatten};
    let net = sequential![Flatten::range(0, 5), ReLU];
    let m = err(net.forward(&Tensor::rand(&[2, 3])));
    assert!(
        m.starts_with("0 (Flatten(start_dim=0, end_dim=5)): expected"),
        "{m}"
    );
    let mut dynamic = DynSequential::new();
    dynamic.push(ReLU);
    dynamic.push_named("flat", Flatten::range(3, 4))?;
    let m = err(dynamic.forward(&Tensor::rand(&[2, 3])));
    assert!(
        m.starts_with("flat (Flatten(start_dim=3, end_dim=4)): expected"),
        "{m}"
    );
    // a Linear inside says its own path once, not twice
    let mut with_linear = DynSequential::new();
    with_linear.push(Linear::new(4, 2));
    let m = err(with_linear.forward(&Tensor::rand(&[1, 3])));
    assert!(m.starts_with("0 (Linear(in_features=4"), "{m}");
    Ok(())
}
