//! 5.2 Parameter management, cell by cell: typed access, parameter objects, named traversal,
//! state dicts, regex selection, nested names and printing (checked against PyTorch's),
//! initializers (statistics), custom init, direct writes, and tied parameters (checked
//! against PyTorch's outputs and gradients).

mod common;
use common::assert_close;
use nn::init::Init;
use nn::{
    sequential, DynSequential, Forward, Linear, Module, ModuleExt, ReLU, Result, Sequential, Tensor,
};
use rand::RngExt;

type Block1 = Sequential<(Linear, ReLU, Linear, ReLU)>;

fn block1() -> Block1 {
    sequential![Linear(4 => 8), ReLU, Linear(_ => 4), ReLU]
}

fn block2() -> Result<DynSequential> {
    let mut net = DynSequential::new();
    for i in 0..4 {
        net.push_named(format!("block {i}"), block1())?;
    }
    Ok(net)
}

fn names(m: &dyn Module) -> Vec<String> {
    m.named_parameters().into_iter().map(|(n, _)| n).collect()
}

fn fixtures_json() -> Result<serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fixtures.json");
    let text = std::fs::read_to_string(path).map_err(|e| nn::Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| nn::Error::Format {
        path: path.into(),
        msg: e.to_string(),
    })
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The f32 tensor `name` of a safetensors file.
fn load(st: &safetensors::SafeTensors<'_>, name: &str) -> Result<Tensor> {
    let v = st.tensor(name).map_err(|e| nn::Error::MissingKey {
        container: format!("fixture ({e})"),
        key: name.into(),
    })?;
    let data: Vec<f32> = v
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_vec(data, v.shape())
}

fn stats(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn typed_access_and_parameter_objects() -> Result<()> {
    let net = sequential![Linear(4 => 8), ReLU, Linear(_ => 1)];
    net.forward(&Tensor::rand(&[2, 4]))?;
    // net[2].state_dict()
    let sd = net.2.state_dict()?;
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["weight", "bias"]);
    assert_eq!(
        sd.get("weight").map(|t| t.shape().to_vec()),
        Some(vec![1, 8])
    );
    // type(net[2].bias), print(net[2].bias), net[2].bias.data
    let bias = net.2.bias.clone().ok_or_else(|| nn::Error::MissingKey {
        container: "layer".into(),
        key: "bias".into(),
    })?;
    assert!(bias
        .to_string()
        .starts_with("Parameter containing:\ntensor(["));
    assert!(bias.to_string().ends_with("], requires_grad=True)"));
    assert!(!bias.data()?.requires_grad(), "data is detached");
    assert!(bias.requires_grad());
    // net[2].weight.grad == None, until a backward
    assert!(net.2.weight.grad().is_none());
    net.forward(&Tensor::rand(&[2, 4]))?.sum()?.backward()?;
    assert_eq!(
        net.2.weight.grad().map(|g| g.shape().to_vec()),
        Some(vec![1, 8])
    );
    net.zero_grad();
    assert!(net.2.weight.grad().is_none());
    // freezing: no gradient reaches a frozen parameter
    net.0.weight.set_requires_grad(false);
    net.forward(&Tensor::rand(&[2, 4]))?.sum()?.backward()?;
    assert!(net.0.weight.grad().is_none() && net.2.weight.grad().is_some());
    Ok(())
}

#[test]
fn all_parameters_at_once() -> Result<()> {
    let net = sequential![Linear(4 => 8), ReLU, Linear(_ => 1)];
    let shapes = |m: &dyn Module| -> Vec<(String, Vec<usize>)> {
        m.named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.shape().unwrap_or_default()))
            .collect()
    };
    let s = |n: &str, d: &[usize]| (n.to_string(), d.to_vec());
    assert_eq!(shapes(&net.0), [s("weight", &[8, 4]), s("bias", &[8])]);
    assert_eq!(
        shapes(&net),
        [
            s("0.weight", &[8, 4]),
            s("0.bias", &[8]),
            s("2.weight", &[1, 8]),
            s("2.bias", &[1])
        ]
    );
    // net.state_dict()['2.bias'].data
    let sd = net.state_dict()?;
    let b = sd.get("2.bias").ok_or_else(|| nn::Error::MissingKey {
        container: "state dict".into(),
        key: "2.bias".into(),
    })?;
    let want = net.2.bias.as_ref().map(|p| p.data()).transpose()?;
    assert_eq!(
        Some(b.to_vec::<f32>()?),
        want.map(|t| t.to_vec::<f32>()).transpose()?
    );
    // Gluon's collect_params('.*weight')
    let w: Vec<String> = net
        .parameters_matching(".*weight")?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(w, ["0.weight", "2.weight"]);
    assert!(net.parameters_matching("^2\\.")?.len() == 2);
    assert!(net.parameters_matching("dense16.*")?.is_empty());
    let bad = net
        .parameters_matching("(")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(bad.contains("invalid parameter pattern `(`"), "{bad}");
    Ok(())
}

#[test]
fn nested_rgnet_names_and_tree_match_pytorch() -> Result<()> {
    let fx = fixtures_json()?;
    let rgnet = sequential![block2()?, Linear::new(4, 1)];
    let y = rgnet.forward(&Tensor::rand(&[2, 4]))?;
    assert_eq!(y.shape(), &[2, 1]);
    assert_eq!(
        names(&rgnet),
        strings(&fx["names"]["rgnet"]["named_parameters"])
    );
    // PyTorch's repr, character for character
    let want = fx["names"]["rgnet"]["repr"].as_str().unwrap_or_default();
    assert!(!want.is_empty());
    assert_eq!(rgnet.to_string(), want);
    assert_eq!(rgnet.repr(), want);
    // rgnet[0][1][0].bias
    let inner = rgnet.0.layer::<Block1>(1)?;
    let bias = inner.0.bias.as_ref().ok_or_else(|| nn::Error::MissingKey {
        container: "layer".into(),
        key: "bias".into(),
    })?;
    let by_name = rgnet.state_dict()?.get("0.block 1.0.bias").cloned();
    assert_eq!(
        Some(bias.data()?.to_vec::<f32>()?),
        by_name.map(|t| t.to_vec::<f32>()).transpose()?
    );
    assert!(
        rgnet.0.layer::<Linear>(1).is_err(),
        "a wrong type is an error, not a panic"
    );
    Ok(())
}

#[test]
fn typed_nested_access_when_the_macro_knows_the_types() -> Result<()> {
    // block2 written with names in `sequential!`: every level keeps its concrete type, so
    // the book's rgnet[0][1][0].bias is a field path, no downcast
    let fx = fixtures_json()?;
    let block2 = sequential![
        "block 0" => block1(),
        "block 1" => block1(),
        "block 2" => block1(),
        "block 3" => block1(),
    ];
    let rgnet = sequential![block2, Linear::new(4, 1)];
    let (block2, _) = &*rgnet;
    let block_1: &Block1 = &block2.1;
    let bias = block_1
        .0
        .bias
        .as_ref()
        .ok_or_else(|| nn::Error::MissingKey {
            container: "layer".into(),
            key: "bias".into(),
        })?;
    assert_eq!(bias.shape(), Some(vec![8]));
    assert_eq!(
        names(&rgnet),
        strings(&fx["names"]["rgnet"]["named_parameters"])
    );
    let want = fx["names"]["rgnet"]["repr"].as_str().unwrap_or_default();
    assert_eq!(rgnet.to_string(), want);
    Ok(())
}

#[test]
fn tied_net_matches_pytorch() -> Result<()> {
    let fx = fixtures_json()?;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tied.safetensors"
    );
    let bytes = std::fs::read(path).map_err(|e| nn::Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| nn::Error::Format {
        path: path.into(),
        msg: e.to_string(),
    })?;

    let shared = Linear::new(8, 8);
    let net = sequential![
        Linear(4 => 8),
        ReLU,
        shared.clone(),
        ReLU,
        shared,
        ReLU,
        Linear(8 => 1),
    ];
    assert_eq!(names(&net), strings(&fx["tied"]["named_parameters"]));
    let keys: Vec<String> = net.state_dict()?.keys().map(String::from).collect();
    assert_eq!(keys, strings(&fx["tied"]["state_dict_keys"]));
    let want = fx["tied"]["repr"].as_str().unwrap_or_default();
    assert_eq!(net.to_string(), want);

    for (name, p) in net.named_parameters() {
        p.set_data(&load(&st, &format!("tied.param.{name}"))?)?;
    }
    // the write through `2` is seen through `4`: they are one object
    assert!(net.2.weight.ptr_eq(&net.4.weight));
    assert_eq!(
        net.4.weight.data()?.to_vec::<f32>()?,
        load(&st, "tied.param.2.weight")?.to_vec::<f32>()?
    );

    let y = net.forward(&load(&st, "tied.x")?)?;
    assert_close("tied.y", &y, &load(&st, "tied.y")?, 1e-5)?;
    y.sum()?.backward()?;
    for (name, p) in net.named_parameters() {
        let g = p.grad().ok_or_else(|| nn::Error::MissingKey {
            container: "gradients".into(),
            key: name.to_string(),
        })?;
        assert_close(
            &format!("tied.grad.{name}"),
            &g,
            &load(&st, &format!("tied.grad.{name}"))?,
            1e-4,
        )?;
    }
    Ok(())
}

#[test]
fn tied_gradient_is_the_sum_of_both_uses() -> Result<()> {
    let shared = Linear::new(8, 8);
    let tied = sequential![Linear(4 => 8), ReLU, shared.clone(), ReLU, shared.clone(), ReLU, Linear(8 => 1)];
    // the same values, untied: position 4 gets its own copy
    let untied = sequential![
        tied.0.clone(),
        ReLU,
        shared.deep_copy(),
        ReLU,
        shared.deep_copy(),
        ReLU,
        tied.6.clone(),
    ];
    let x = Tensor::rand(&[3, 4]);
    tied.forward(&x)?.sum()?.backward()?;
    untied.forward(&x)?.sum()?.backward()?;
    let missing = || nn::Error::MissingKey {
        container: "gradients".into(),
        key: "2.weight".into(),
    };
    let g = tied.2.weight.grad().ok_or_else(missing)?;
    let g2 = untied.2.weight.grad().ok_or_else(missing)?;
    let g4 = untied.4.weight.grad().ok_or_else(missing)?;
    assert_close("sum of uses", &g, &g2.add(&g4)?, 1e-5)?;
    assert_eq!(tied.parameters().len(), 6);
    assert_eq!(untied.parameters().len(), 8);
    assert_eq!(tied.num_parameters(), 4 * 8 + 8 + 8 * 8 + 8 + 8 + 1);

    // the book's check: a write through net[2] is seen through net[4]
    tied.2.weight.set_item(&[0, 0], 100.0)?;
    let row = |l: &Linear| {
        l.weight
            .data()
            .and_then(|d| d.get(0))
            .and_then(|r| r.to_vec::<f32>())
    };
    assert_eq!(row(&tied.2)?, row(&tied.4)?);
    assert_eq!(row(&tied.4)?[0], 100.0);
    Ok(())
}

#[test]
fn builtin_initializers_have_the_right_statistics() -> Result<()> {
    nn::manual_seed(3);
    let net = sequential![Linear(400 => 300), ReLU, Linear(_ => 200)];
    // net.apply(init_normal): every Linear, weight ~ N(0, 0.01), bias = 0
    let found = net.apply::<Linear>(|m| {
        m.weight.reinit(&Init::normal(0.0, 0.01))?;
        m.bias.iter().try_for_each(|b| b.reinit(&Init::Zeros))
    })?;
    assert_eq!(found, 2);
    let w = net.0.weight.data()?.to_vec::<f32>()?;
    let (mean, std) = stats(&w);
    assert!(
        mean.abs() < 4.0 * 0.01 / (w.len() as f64).sqrt(),
        "mean {mean}"
    );
    assert!((std - 0.01).abs() < 0.0003, "std {std}");
    let b = net.2.bias.as_ref().map(|b| b.data()).transpose()?;
    assert!(b
        .map(|b| b.to_vec::<f32>())
        .transpose()?
        .unwrap_or_default()
        .iter()
        .all(|&v| v == 0.0));

    // init_constant
    net.apply::<Linear>(|m| m.weight.reinit(&Init::Constant(1.0)))?;
    assert!(net
        .2
        .weight
        .data()?
        .to_vec::<f32>()?
        .iter()
        .all(|&v| v == 1.0));

    // xavier on net[0] only, 42 on net[2] only
    net.0
        .apply::<Linear>(|m| m.weight.reinit(&Init::xavier_uniform()))?;
    net.2
        .apply::<Linear>(|m| m.weight.reinit(&Init::Constant(42.0)))?;
    let bound = (6.0f64 / (400.0 + 300.0)).sqrt();
    let w = net.0.weight.data()?.to_vec::<f32>()?;
    let (mean, std) = stats(&w);
    assert!(w.iter().all(|&v| (v as f64).abs() <= bound));
    assert!(
        w.iter().any(|&v| (v as f64).abs() > 0.99 * bound),
        "fills the range"
    );
    assert!(
        mean.abs() < 0.002 && (std - bound / 3f64.sqrt()).abs() < 0.02 * bound,
        "{mean} {std}"
    );
    assert!(net
        .2
        .weight
        .data()?
        .to_vec::<f32>()?
        .iter()
        .all(|&v| v == 42.0));

    // PyTorch's Linear default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
    let fresh = Linear::new(400, 300);
    let bound = 1.0 / 400f64.sqrt();
    let w = fresh.weight.data()?.to_vec::<f32>()?;
    assert!(w.iter().all(|&v| (v as f64).abs() <= bound));
    assert!((stats(&w).1 - bound / 3f64.sqrt()).abs() < 0.02 * bound);
    let b = fresh
        .bias
        .as_ref()
        .map(|b| b.data())
        .transpose()?
        .map(|b| b.to_vec::<f32>())
        .transpose()?;
    assert!(b
        .unwrap_or_default()
        .iter()
        .all(|&v| (v as f64).abs() <= bound));

    // Kaiming (He) for ReLU: uniform bound sqrt(6 / fan_in), normal std sqrt(2 / fan_in)
    fresh.weight.reinit(&Init::KaimingUniform { a: 0.0 })?;
    let w = fresh.weight.data()?.to_vec::<f32>()?;
    let bound = (6.0f64 / 400.0).sqrt();
    assert!(w.iter().all(|&v| (v as f64).abs() <= bound));
    assert!((stats(&w).1 - bound / 3f64.sqrt()).abs() < 0.02 * bound);
    fresh.weight.reinit(&Init::KaimingNormal { a: 0.0 })?;
    let (mean, std) = stats(&fresh.weight.data()?.to_vec::<f32>()?);
    let want = (2.0f64 / 400.0).sqrt();
    assert!(
        mean.abs() < 0.002 && (std - want).abs() < 0.02 * want,
        "{mean} {std}"
    );
    fresh.weight.reinit(&Init::XavierNormal { gain: 1.0 })?;
    let (_, std) = stats(&fresh.weight.data()?.to_vec::<f32>()?);
    let want = (2.0f64 / 700.0).sqrt();
    assert!((std - want).abs() < 0.02 * want, "{std}");
    fresh.weight.reinit(&Init::Uniform { lo: 2.0, hi: 3.0 })?;
    assert!(fresh
        .weight
        .data()?
        .to_vec::<f32>()?
        .iter()
        .all(|&v| (2.0..3.0).contains(&v)));
    Ok(())
}

#[test]
fn custom_piecewise_initializer() -> Result<()> {
    nn::manual_seed(4);
    let my_init = Init::custom(|shape, rng| {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let w: f32 = rng.random_range(-10.0..10.0);
                if w.abs() >= 5.0 {
                    w
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(v, shape)
    });
    let net = sequential![Linear(100 => 200), ReLU, Linear(_ => 1)];
    let mut seen = Vec::new();
    net.apply::<Linear>(|m| {
        let (name, p) = &m.named_parameters()[0];
        seen.push((name.clone(), p.shape().unwrap_or_default()));
        m.weight.reinit(&my_init)
    })?;
    // the book prints "Init weight torch.Size([8, 4])" for each Linear
    assert_eq!(
        seen,
        [
            ("weight".to_string(), vec![200, 100]),
            ("weight".to_string(), vec![1, 200])
        ]
    );
    let w = net.0.weight.data()?.to_vec::<f32>()?;
    let frac =
        |f: &dyn Fn(f32) -> bool| w.iter().filter(|&&v| f(v)).count() as f64 / w.len() as f64;
    assert!((frac(&|v| v == 0.0) - 0.5).abs() < 0.02);
    assert!((frac(&|v| (5.0..10.0).contains(&v)) - 0.25).abs() < 0.02);
    assert!((frac(&|v| (-10.0..=-5.0).contains(&v)) - 0.25).abs() < 0.02);
    assert_eq!(frac(&|v| v != 0.0 && v.abs() < 5.0), 0.0);
    // a custom initializer returning the wrong shape is an error, not a panic
    let bad = Init::custom(|_, _| Tensor::from_vec(vec![1.0f32], &[1]));
    assert!(net.0.weight.reinit(&bad).is_err());
    Ok(())
}

#[test]
fn direct_writes_and_force_reinit() -> Result<()> {
    let net = sequential![Linear(4 => 8), ReLU, Linear(_ => 1)];
    let before = net.0.weight.data()?.to_vec::<f32>()?;
    // net[0].weight.data[:] += 1; net[0].weight.data[0, 0] = 42
    net.0.weight.update(|d| d.add_scalar(1.0))?;
    net.0.weight.set_item(&[0, 0], 42.0)?;
    let after = net.0.weight.data()?.to_vec::<f32>()?;
    assert_eq!(after[0], 42.0);
    for (a, b) in after.iter().zip(&before).skip(1) {
        assert!((a - (b + 1.0)).abs() < 1e-6);
    }
    let names_before = names(&net);
    let err = net
        .0
        .weight
        .set_item(&[8, 0], 1.0)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("0.weight") && err.contains("[8, 0]"), "{err}");
    assert!(net.0.weight.set_data(&Tensor::zeros(&[3, 3])).is_err());
    assert!(
        net.0.weight.update(|d| d.sum()).is_err(),
        "an update may not change the shape"
    );
    assert_eq!(names(&net), names_before);

    // Gluon's initialize(force_reinit=True): the whole model, or a selection by name
    net.init_parameters(&Init::Constant(1.0))?;
    assert!(net.parameters().iter().all(|p| p
        .data()
        .and_then(|d| d.to_vec::<f32>())
        .is_ok_and(|v| v.iter().all(|&x| x == 1.0))));
    assert_eq!(net.init_matching("bias$", &Init::Zeros)?, 2);
    assert!(net
        .2
        .bias
        .as_ref()
        .is_some_and(|b| b.data().and_then(|d| d.item()).is_ok_and(|v| v == 0.0)));
    assert_eq!(net.2.weight.data()?.to_vec::<f32>()?, vec![1.0; 8]);
    // reinit draws fresh values: two random re-inits differ
    net.init_parameters(&Init::normal(0.0, 1.0))?;
    let a = net.0.weight.data()?.to_vec::<f32>()?;
    net.init_parameters(&Init::normal(0.0, 1.0))?;
    assert_ne!(a, net.0.weight.data()?.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn training_a_net_with_a_shared_layer() -> Result<()> {
    // exercise 3: train an MLP with a shared layer and watch its parameters and gradients
    nn::manual_seed(10);
    let shared = Linear::new(8, 8);
    let net = sequential![Linear(4 => 8), ReLU, shared.clone(), ReLU, shared, ReLU, Linear(8 => 1)];
    let x = Tensor::randn(&[16, 4]);
    let target = x.sum_dim(1, true)?.mul_scalar(0.5)?;
    let lr = 0.1;
    let mut losses = Vec::new();
    for _ in 0..60 {
        net.zero_grad();
        let loss = net.forward(&x)?.mse(&target)?;
        losses.push(loss.item()?);
        loss.backward()?;
        for p in net.parameters() {
            if let Some(g) = p.grad() {
                p.update(|d| d.sub(&g.mul_scalar(lr)?))?;
            }
        }
        // one object: every update of the shared layer is seen at both positions
        assert!(net.2.weight.ptr_eq(&net.4.weight));
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    Ok(())
}
