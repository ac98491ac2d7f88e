//! 5.3 Deferred initialization, cell by cell: shapes unknown until the first forward, clear
//! errors before it, materialization with the chosen initializer, mismatches as errors,
//! compile-time inference by `sequential!`, loading shapes from a state dict, and concurrent
//! first forwards.

use nn::init::Init;
use nn::{sequential, Error, Forward, Linear, Module, ModuleExt, ReLU, Result, Tensor};

fn partial_shapes(m: &dyn Module) -> Vec<(String, String)> {
    m.named_parameters()
        .into_iter()
        .map(|(n, p)| (n, nn::module::fmt_partial(&p.partial_shape())))
        .collect()
}

fn pair(n: &str, s: &str) -> (String, String) {
    (n.to_string(), s.to_string())
}

#[test]
fn parameters_exist_without_shapes_until_the_first_forward() -> Result<()> {
    let net = sequential![Linear::lazy(256), ReLU, Linear::lazy(10)];
    // Keras: [net.layers[i].get_weights() for i in ...] == [[], []]
    assert!(net
        .parameters()
        .iter()
        .all(|p| !p.is_initialized() && p.shape().is_none()));
    assert_eq!(net.num_parameters(), 0);
    assert_eq!(
        partial_shapes(&net),
        [
            pair("0.weight", "[256, ?]"),
            pair("0.bias", "[256]"),
            pair("2.weight", "[10, ?]"),
            pair("2.bias", "[10]")
        ]
    );
    assert_eq!(
        net.to_string(),
        "Sequential(\n  (0): Linear(in_features=?, out_features=256, bias=True)\n  (1): ReLU()\n  (2): Linear(in_features=?, out_features=10, bias=True)\n)"
    );
    // reading data is an error naming the parameter
    match net.2.weight.data() {
        Err(Error::Uninitialized { param }) => assert_eq!(param, "2.weight"),
        other => {
            panic!("expected an Uninitialized error, got {other:?}")
        }
    }
    let msg = net
        .0
        .weight
        .tensor()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("`0.weight`") && msg.contains("not initialized"),
        "{msg}"
    );
    assert!(matches!(net.state_dict(), Err(Error::Uninitialized { .. })));

    // the first forward infers every shape
    let y = net.forward(&Tensor::rand(&[2, 20]))?;
    assert_eq!(y.shape(), &[2, 10]);
    let shapes: Vec<Vec<usize>> = net.parameters().iter().filter_map(|p| p.shape()).collect();
    assert_eq!(shapes, [vec![256, 20], vec![256], vec![10, 256], vec![10]]);
    assert_eq!(net.0.in_features(), Some(20));
    assert_eq!(net.state_dict()?.len(), 4);
    Ok(())
}

#[test]
fn a_layer_never_named_by_a_model_still_names_its_parameter() -> Result<()> {
    let layer = Linear::lazy(3);
    let msg = layer
        .weight
        .data()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("parameter `weight`"), "{msg}");
    Ok(())
}

#[test]
fn mismatched_input_is_an_error_naming_layer_expected_and_actual() -> Result<()> {
    let net = sequential![Linear::lazy(8), ReLU, Linear::lazy(1)];
    net.forward(&Tensor::rand(&[2, 20]))?;
    net.named_parameters();
    match net.forward(&Tensor::rand(&[2, 5])) {
        Err(Error::InputMismatch {
            layer,
            expected,
            actual,
        }) => {
            assert!(
                layer.starts_with("0 (Linear(in_features=20, out_features=8"),
                "{layer}"
            );
            assert!(expected.contains("20"), "{expected}");
            assert_eq!(actual, [2, 5]);
        }
        other => {
            panic!("expected an InputMismatch error, got {other:?}")
        }
    }
    // eager layers report the same way
    let eager = sequential![Linear(4 => 8), ReLU, Linear(_ => 1)];
    let msg = eager
        .forward(&Tensor::rand(&[3, 7]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("in_features=4") && msg.contains("[3, 7]"),
        "{msg}"
    );
    // a scalar input has no feature dim
    assert!(eager.forward(&Tensor::scalar(1.0)).is_err());
    Ok(())
}

#[test]
fn sequential_infers_literal_sizes_at_compile_time() -> Result<()> {
    let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
    assert!(
        net.parameters().iter().all(|p| p.is_initialized()),
        "nothing deferred"
    );
    assert_eq!(net.2.in_features(), Some(256));
    // an unknown input size falls back to runtime deferral, later sizes are still inferred
    let net = sequential![Linear(_ => 256), ReLU, Linear(_ => 10)];
    assert_eq!(net.0.in_features(), None);
    assert_eq!(net.2.in_features(), Some(256));
    net.forward(&Tensor::rand(&[1, 3]))?;
    assert_eq!(net.0.in_features(), Some(3));
    Ok(())
}

#[test]
fn only_the_first_input_size_given() -> Result<()> {
    // exercise 1: the first layer is initialized at once, the next waits for data
    let net = sequential![Linear(20 => 256), ReLU, Linear::lazy(10)];
    assert!(net.0.weight.is_initialized());
    assert!(!net.2.weight.is_initialized());
    net.forward(&Tensor::rand(&[2, 20]))?;
    assert_eq!(net.2.weight.shape(), Some(vec![10, 256]));
    Ok(())
}

#[test]
fn the_initializer_chosen_before_is_used_at_materialization() -> Result<()> {
    let net = sequential![Linear::lazy(8), ReLU, Linear::lazy(1)];
    assert_eq!(net.init_matching("weight$", &Init::Constant(0.5))?, 2);
    net.init_matching("bias$", &Init::Zeros)?;
    net.forward(&Tensor::rand(&[3, 4]))?;
    assert_eq!(net.0.weight.data()?.to_vec::<f32>()?, vec![0.5; 32]);
    assert_eq!(net.2.weight.data()?.to_vec::<f32>()?, vec![0.5; 8]);
    // the default (PyTorch's) uses the inferred fan-in: U(-1/sqrt(4), 1/sqrt(4))
    let net = sequential![Linear::lazy(300)];
    net.forward(&Tensor::rand(&[1, 4]))?;
    assert!(net
        .0
        .weight
        .data()?
        .to_vec::<f32>()?
        .iter()
        .all(|v| v.abs() <= 0.5));
    Ok(())
}

#[test]
fn lazy_and_eager_twins_agree_and_state_dicts_give_shapes() -> Result<()> {
    nn::manual_seed(42);
    let eager = sequential![Linear(20 => 16), ReLU, Linear(_ => 3)];
    nn::manual_seed(42);
    let lazy = sequential![Linear::lazy(16), ReLU, Linear::lazy(3)];
    let x = Tensor::rand(&[2, 20]);
    assert_eq!(
        eager.forward(&x)?.to_vec::<f32>()?,
        lazy.forward(&x)?.to_vec::<f32>()?
    );

    // a lazy model takes its shapes from a state dict, no dummy forward
    let fresh = sequential![Linear::lazy(16), ReLU, Linear::lazy(3)];
    let saved = eager.state_dict()?;
    for (name, p) in fresh.named_parameters() {
        let t = saved.get(&name).ok_or_else(|| Error::MissingKey {
            container: "saved state dict".into(),
            key: name.clone(),
        })?;
        p.set_data(t)?;
    }
    assert_eq!(fresh.0.in_features(), Some(20));
    assert_eq!(
        eager.forward(&x)?.to_vec::<f32>()?,
        fresh.forward(&x)?.to_vec::<f32>()?
    );
    // a tensor that contradicts the known dims is rejected, naming the parameter
    let other = sequential![Linear::lazy(16)];
    other.named_parameters();
    let msg = other
        .0
        .weight
        .set_data(&Tensor::zeros(&[5, 20]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("0.weight") && msg.contains("[16, ?]"), "{msg}");
    Ok(())
}

#[test]
fn force_reinit_of_a_deferred_model() -> Result<()> {
    let net = sequential![Linear::lazy(4), ReLU, Linear::lazy(2)];
    net.init_parameters(&Init::Constant(3.0))?;
    assert!(
        !net.0.weight.is_initialized(),
        "re-init of a deferred param waits for its shape"
    );
    net.forward(&Tensor::rand(&[1, 5]))?;
    assert!(net.parameters().iter().all(|p| p
        .data()
        .and_then(|d| d.to_vec::<f32>())
        .is_ok_and(|v| v.iter().all(|&x| x == 3.0))));
    Ok(())
}

#[test]
fn concurrent_first_forwards_materialize_once() -> Result<()> {
    nn::manual_seed(9);
    let net = sequential![Linear::lazy(32), ReLU, Linear::lazy(4)];
    let x = Tensor::rand(&[5, 12]);
    let outs: Vec<Result<Vec<f32>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| net.forward(&x)?.to_vec::<f32>()))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("a worker thread panicked"))
            })
            .collect()
    });
    let want = net.forward(&x)?.to_vec::<f32>()?;
    for o in outs {
        assert_eq!(o?, want);
    }
    Ok(())
}
