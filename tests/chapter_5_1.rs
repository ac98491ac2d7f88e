//! 5.1 Layers and blocks, cell by cell: a sequential MLP, a user block, a runtime-built chain,
//! code in forward, nesting; plus dropout/flatten in chains and sharing a model across threads.

use nn::{
    sequential, Dropout, DynSequential, Flatten, Forward, Linear, Module, ModuleExt, ReLU, Result,
    Sequential, Tensor,
};

#[derive(Module)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.hidden.forward(x)?.relu()?)
    }
}

#[derive(Module)]
struct FixedHiddenMlp {
    #[module(constant)]
    rand_weight: Tensor,
    linear: Linear,
}

impl FixedHiddenMlp {
    fn new() -> Self {
        FixedHiddenMlp {
            rand_weight: Tensor::rand(&[20, 20]),
            linear: Linear::new(20, 20),
        }
    }
    /// The forward with its two uses of `linear` given separately.
    fn run(&self, first: &Linear, second: &Linear, x: &Tensor) -> Result<Tensor> {
        let x = first.forward(x)?;
        let x = x.matmul(&self.rand_weight)?.add_scalar(1.0)?.relu()?;
        let mut x = second.forward(&x)?;
        while x.abs()?.sum()?.item()? > 1.0 {
            x = x.div_scalar(2.0)?;
        }
        x.sum()
    }
}

impl Forward for FixedHiddenMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(&self.linear, &self.linear, x)
    }
}

#[derive(Module)]
struct NestMlp {
    net: Sequential<(Linear, ReLU, Linear, ReLU)>,
    linear: Linear,
}

impl Forward for NestMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(&self.net.forward(x)?)
    }
}

fn names(m: &dyn Module) -> Vec<String> {
    m.named_parameters().into_iter().map(|(n, _)| n).collect()
}

fn close(a: &Tensor, b: &Tensor, tol: f32) -> Result<bool> {
    let (a, b) = (a.to_vec::<f32>()?, b.to_vec::<f32>()?);
    Ok(a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tol))
}

fn linear_by_hand(l: &Linear, x: &Tensor) -> Result<Tensor> {
    let y = x.matmul(&l.weight.data()?.t()?)?;
    match &l.bias {
        Some(b) => y.add(&b.data()?),
        None => Ok(y),
    }
}

#[test]
fn sequential_mlp_on_a_2x20_input() -> Result<()> {
    nn::manual_seed(1);
    let net = sequential![Linear(20 => 256), ReLU, Linear(_ => 10)];
    let x = Tensor::rand(&[2, 20]);
    let y = net.forward(&x)?;
    assert_eq!(y.shape(), &[2, 10]);
    let by_hand = linear_by_hand(&net.2, &linear_by_hand(&net.0, &x)?.relu()?)?;
    assert!(close(&y, &by_hand, 1e-5)?);
    assert_eq!(names(&net), ["0.weight", "0.bias", "2.weight", "2.bias"]);
    Ok(())
}

#[test]
fn user_block_is_a_module_with_named_parameters() -> Result<()> {
    let net = Mlp {
        hidden: Linear::new(20, 256),
        out: Linear::new(256, 10),
    };
    assert_eq!(
        names(&net),
        ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    );
    assert_eq!(net.num_parameters(), 20 * 256 + 256 + 256 * 10 + 10);
    assert_eq!(
        net.repr(),
        "Mlp(\n  (hidden): Linear(in_features=20, out_features=256, bias=True)\n  (out): Linear(in_features=256, out_features=10, bias=True)\n)"
    );
    let y = net.forward(&Tensor::rand(&[2, 20]))?;
    assert_eq!(y.shape(), &[2, 10]);
    y.sum()?.backward()?;
    assert!(net.parameters().iter().all(|p| p.grad().is_some()));
    Ok(())
}

#[test]
fn my_sequential_runs_blocks_in_insertion_order() -> Result<()> {
    let (a, b) = (Linear::new(20, 256), Linear::new(256, 10));
    let mut net = DynSequential::new();
    for block in [
        Box::new(a.clone()) as Box<dyn nn::Layer>,
        Box::new(ReLU),
        Box::new(b.clone()),
    ] {
        net.push_boxed(block);
    }
    assert_eq!(net.len(), 3);
    assert_eq!(names(&net), ["0.weight", "0.bias", "2.weight", "2.bias"]);
    let x = Tensor::rand(&[2, 20]);
    let want = b.forward(&a.forward(&x)?.relu()?)?;
    assert!(close(&net.forward(&x)?, &want, 1e-6)?);

    let mut named = DynSequential::new();
    for i in 0..3 {
        named.push_named(format!("block {i}"), Linear::new(4, 4))?;
    }
    assert_eq!(
        names(&named)[..3],
        ["block 0.weight", "block 0.bias", "block 1.weight"]
    );
    assert!(named.push_named("block 0", ReLU).is_err());
    assert!(named.push_named("a.b", ReLU).is_err());
    assert!(named.get(7).is_err());
    assert!(named.layer::<ReLU>(0).is_err());
    assert!(named.layer::<Linear>(0).is_ok());
    Ok(())
}

#[test]
fn fixed_hidden_mlp_constant_reuse_loop_and_scalar() -> Result<()> {
    nn::manual_seed(2);
    let net = FixedHiddenMlp::new();
    let x = Tensor::rand(&[2, 20]);
    let y = net.forward(&x)?;
    assert_eq!(y.rank(), 0, "a scalar output");
    assert!(y.item()?.abs() <= 1.0);
    assert_eq!(names(&net), ["linear.weight", "linear.bias"]);
    assert!(net.state_dict()?.get("rand_weight").is_none());
    y.backward()?;
    assert!(!net.rand_weight.requires_grad() && net.rand_weight.grad().is_none());

    // the reused layer's gradient is the sum over both uses: compare with two separate copies
    let (first, second) = (net.linear.deep_copy(), net.linear.deep_copy());
    net.run(&first, &second, &x)?.backward()?;
    for (shared, (a, b)) in net
        .parameters()
        .iter()
        .zip(first.parameters().into_iter().zip(second.parameters()))
    {
        let missing = || nn::Error::MissingKey {
            container: "gradients".into(),
            key: "shared parameter".into(),
        };
        let g = shared.grad().ok_or_else(missing)?;
        let (ga, gb) = (a.grad().ok_or_else(missing)?, b.grad().ok_or_else(missing)?);
        assert!(close(&g, &ga.add(&gb)?, 1e-5)?);
    }
    Ok(())
}

#[test]
fn nesting_chimera() -> Result<()> {
    let nest = NestMlp {
        net: sequential![Linear(20 => 64), ReLU, Linear(_ => 32), ReLU],
        linear: Linear::new(32, 16),
    };
    let chimera = sequential![nest, Linear::new(16, 20), FixedHiddenMlp::new()];
    let y = chimera.forward(&Tensor::rand(&[2, 20]))?;
    assert_eq!(y.rank(), 0);
    assert_eq!(
        names(&chimera),
        [
            "0.net.0.weight",
            "0.net.0.bias",
            "0.net.2.weight",
            "0.net.2.bias",
            "0.linear.weight",
            "0.linear.bias",
            "1.weight",
            "1.bias",
            "2.linear.weight",
            "2.linear.bias"
        ]
    );
    assert_eq!(
        chimera.repr(),
        "Sequential(
  (0): NestMlp(
    (net): Sequential(
      (0): Linear(in_features=20, out_features=64, bias=True)
      (1): ReLU()
      (2): Linear(in_features=64, out_features=32, bias=True)
      (3): ReLU()
    )
    (linear): Linear(in_features=32, out_features=16, bias=True)
  )
  (1): Linear(in_features=16, out_features=20, bias=True)
  (2): FixedHiddenMlp(
    (linear): Linear(in_features=20, out_features=20, bias=True)
  )
)"
    );
    // nesting goes to any depth, through Box, Option, Vec and runtime chains
    let mut deep = DynSequential::new();
    deep.push(sequential![Linear(3 => 3), ReLU]);
    let absent: Option<Linear> = None;
    let deeper = Sequential::new((
        deep,
        vec![Linear::new(3, 2)],
        Some(Box::new(Linear::new(2, 2))),
        absent,
    ));
    assert_eq!(
        names(&deeper),
        [
            "0.0.0.weight",
            "0.0.0.bias",
            "1.0.weight",
            "1.0.bias",
            "2.weight",
            "2.bias"
        ]
    );
    Ok(())
}

#[test]
fn dropout_follows_train_and_eval_through_nesting() -> Result<()> {
    nn::manual_seed(5);
    let mut inner = DynSequential::new();
    inner.push(Dropout::new(0.5));
    let mut net = sequential![Flatten::new(), inner, Dropout::new(0.5)];
    let x = Tensor::ones(&[4, 10, 10]);
    let y = net.forward(&x)?;
    assert_eq!(y.shape(), &[4, 100]);
    assert!(y.to_vec::<f32>()?.contains(&0.0), "training mode drops");
    net.eval();
    assert!(!net.2.is_training());
    assert!(!inner_dropout(&net)?.is_training());
    assert_eq!(net.forward(&x)?.to_vec::<f32>()?, vec![1.0; 400]);
    net.train();
    assert!(net.2.is_training() && inner_dropout(&net)?.is_training());
    assert_eq!(
        net.repr(),
        "Sequential(\n  (0): Flatten(start_dim=1, end_dim=-1)\n  (1): Sequential(\n    (0): Dropout(p=0.5, inplace=False)\n  )\n  (2): Dropout(p=0.5, inplace=False)\n)"
    );
    Ok(())
}

fn inner_dropout(net: &Sequential<(Flatten, DynSequential, Dropout)>) -> Result<&Dropout> {
    net.1.layer::<Dropout>(0)
}

#[test]
fn a_model_is_send_and_sync_and_shared_across_threads() -> Result<()> {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let net = sequential![Linear(20 => 64), ReLU, Linear(_ => 10)];
    assert_send_sync(&net);
    let dynamic = DynSequential::new().with(Linear::new(2, 2));
    assert_send_sync(&dynamic);
    assert_send_sync(&FixedHiddenMlp::new());

    let x = Tensor::rand(&[8, 20]);
    let want = net.forward(&x)?.to_vec::<f32>()?;
    let results: Vec<Result<Vec<f32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| nn::no_grad(|| net.forward(&x)?.to_vec::<f32>())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("a worker thread panicked"))
            })
            .collect()
    });
    for r in results {
        assert_eq!(r?, want);
    }
    Ok(())
}

#[test]
fn blocks_kept_in_a_plain_vec_are_still_registered() -> Result<()> {
    // the book's exercise 1 (MySequential over a Python list loses the parameters) has no
    // Rust counterpart: a Vec of layers is a module, its items are visited and named
    #[derive(Module)]
    struct ListSequential {
        blocks: Vec<Box<dyn nn::Layer>>,
    }
    impl Forward for ListSequential {
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            self.blocks.iter().try_fold(x.clone(), |y, b| b.forward(&y))
        }
    }
    let net = ListSequential {
        blocks: vec![
            Box::new(Linear::new(20, 8)),
            Box::new(ReLU),
            Box::new(Linear::new(8, 2)),
        ],
    };
    assert_eq!(
        names(&net),
        [
            "blocks.0.weight",
            "blocks.0.bias",
            "blocks.2.weight",
            "blocks.2.bias"
        ]
    );
    assert_eq!(net.forward(&Tensor::rand(&[3, 20]))?.shape(), &[3, 2]);
    assert!(net
        .to_string()
        .contains("(blocks): ModuleList(\n    (0): Linear(in_features=20"));
    Ok(())
}
