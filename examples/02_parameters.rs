//! 5.2 Parameter management: access, named traversal, nested blocks, initialization
//! (built-in, per type, per sub-module, custom), direct writes and tied parameters.
//!
//! Run with `cargo run --example 02_parameters`.

use nn::init::Init;
use nn::{sequential, DynSequential, Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};
use rand::RngExt;

/// The book's `block1()`.
type Block1 = Sequential<(Linear, ReLU, Linear, ReLU)>;

fn block1() -> Block1 {
    sequential![Linear(4 => 8), ReLU, Linear(_ => 4), ReLU]
}

/// The book's `block2()`: four `block1`s added in a loop under the names `block 0`..`block 3`.
fn block2() -> Result<DynSequential> {
    let mut net = DynSequential::new();
    for i in 0..4 {
        net.push_named(format!("block {i}"), block1())?;
    }
    Ok(net)
}

fn main() -> Result<()> {
    nn::manual_seed(0);
    let net = sequential![Linear(4 => 8), ReLU, Linear(_ => 1)];
    let x = Tensor::rand(&[2, 4]);
    println!("{}", net.forward(&x)?);

    println!("\n# 5.2.1 parameter access: net[2] is `net.2`, typed");
    for (name, t) in net.2.state_dict()?.iter() {
        println!("{name}: {t}");
    }
    let bias = &net.2.bias;
    if let Some(b) = bias {
        println!("{}", std::any::type_name_of_val(b));
        println!("{b}");
        println!("{}", b.data()?);
    }
    println!(
        "net.2.weight.grad() is None: {}",
        net.2.weight.grad().is_none()
    );

    println!("\n# all parameters at once");
    let shapes = |m: &dyn nn::Module| -> Vec<(String, Vec<usize>)> {
        m.named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.shape().unwrap_or_default()))
            .collect()
    };
    println!("{:?}", shapes(&net.0));
    println!("{:?}", shapes(&net));
    if let Some(t) = net.state_dict()?.get("2.bias") {
        println!("state_dict()[\"2.bias\"] = {t}");
    }
    let weights: Vec<String> = net
        .parameters_matching(".*weight")?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    println!("parameters_matching(\".*weight\"): {weights:?}");

    println!("\n# parameters of nested blocks");
    let rgnet = sequential![block2()?, Linear::new(4, 1)];
    println!("{}", rgnet.forward(&x)?);
    println!("{rgnet}");
    let b = &rgnet.0.layer::<Block1>(1)?.0.bias;
    if let Some(b) = b {
        println!("rgnet[0][1][0].bias = {}", b.data()?);
    }

    // written with names in `sequential!` instead of a loop, every level keeps its type
    // and rgnet[0][1][0].bias is a plain field path
    let typed = sequential![
        sequential![
            "block 0" => block1(),
            "block 1" => block1(),
            "block 2" => block1(),
            "block 3" => block1(),
        ],
        Linear::new(4, 1),
    ];
    let (block2, _) = &*typed;
    let block_1: &Block1 = &block2.1;
    if let Some(b) = &block_1.0.bias {
        println!("typed rgnet[0][1][0].bias = {}", b.data()?);
    }

    println!("\n# 5.2.2 built-in initialization");
    net.apply::<Linear>(|m| {
        m.weight.reinit(&Init::normal(0.0, 0.01))?;
        m.bias.iter().try_for_each(|b| b.reinit(&Init::Zeros))
    })?;
    println!(
        "({}, {})",
        net.0.weight.data()?.get(0)?,
        first_bias(&net.0)?
    );
    net.apply::<Linear>(|m| {
        m.weight.reinit(&Init::Constant(1.0))?;
        m.bias.iter().try_for_each(|b| b.reinit(&Init::Zeros))
    })?;
    println!(
        "({}, {})",
        net.0.weight.data()?.get(0)?,
        first_bias(&net.0)?
    );
    net.0
        .apply::<Linear>(|m| m.weight.reinit(&Init::xavier_uniform()))?;
    net.2
        .apply::<Linear>(|m| m.weight.reinit(&Init::Constant(42.0)))?;
    println!("{}", net.0.weight.data()?.get(0)?);
    println!("{}", net.2.weight.data()?);

    println!("\n# custom initialization: U[5, 10] w.p. 1/4, 0 w.p. 1/2, U[-10, -5] w.p. 1/4");
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
    net.apply::<Linear>(|m| {
        let (name, p) = &m.named_parameters()[0];
        println!("Init {name} {:?}", p.shape().unwrap_or_default());
        m.weight.reinit(&my_init)
    })?;
    println!("{}", net.0.weight.data()?.narrow(0, 0, 2)?);

    println!("\n# direct writes");
    net.0.weight.update(|d| d.add_scalar(1.0))?;
    net.0.weight.set_item(&[0, 0], 42.0)?;
    println!("{}", net.0.weight.data()?.get(0)?);

    println!("\n# force re-initialization of the whole model");
    net.init_parameters(&Init::Constant(1.0))?;
    println!("{}", net.0.weight.data()?.get(0)?);

    println!("\n# 5.2.3 tied parameters");
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
    net.forward(&x)?;
    let row = |l: &Linear| l.weight.data().and_then(|d| d.get(0));
    println!("{}", row(&net.2)?.eq(&row(&net.4)?)?);
    net.2.weight.set_item(&[0, 0], 100.0)?;
    println!("{}", row(&net.2)?.eq(&row(&net.4)?)?);
    println!("same object: {}", net.2.weight.ptr_eq(&net.4.weight));
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    let keys: Vec<String> = net.state_dict()?.keys().map(String::from).collect();
    println!("named_parameters (tied once): {names:?}");
    println!("state_dict keys (tied twice): {keys:?}");
    net.forward(&x)?.sum()?.backward()?;
    // the same values untied (independent copies at 2 and 4) show each use's gradient
    let untied = sequential![
        net.0.clone(),
        ReLU,
        net.2.deep_copy(),
        ReLU,
        net.4.deep_copy(),
        ReLU,
        net.6.clone(),
    ];
    untied.forward(&x)?.sum()?.backward()?;
    if let (Some(g), Some(g2), Some(g4)) = (
        net.2.weight.grad(),
        untied.2.weight.grad(),
        untied.4.weight.grad(),
    ) {
        let diff = g.sub(&g2.add(&g4)?)?.abs()?.max()?.item()?;
        println!("grad of the shared weight = grad of use 1 + grad of use 2 (max diff {diff:e})");
    }
    Ok(())
}

fn first_bias(l: &Linear) -> Result<Tensor> {
    match &l.bias {
        Some(b) => b.data()?.get(0),
        None => Ok(Tensor::scalar(0.0)),
    }
}
