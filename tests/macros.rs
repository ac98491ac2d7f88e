//! `#[derive(Module)]` and `sequential!` on valid input: names, printing, constants,
//! skipped fields, size inference. Each compile-fail case in tests/ui has its twin here.

use nn::module::{Visitor, VisitorMut};
use nn::{
    sequential, Buffer, DynSequential, Forward, Linear, Module, ModuleExt, Param, ReLU, Result,
    Sigmoid, Tensor,
};

fn names(m: &impl Module) -> Vec<String> {
    m.named_parameters().into_iter().map(|(n, _)| n).collect()
}

fn keys(m: &impl Module) -> Result<Vec<String>> {
    Ok(m.state_dict()?.keys().map(String::from).collect())
}

/// Collects constants by name (what `to_device` moves).
#[derive(Default)]
struct Constants(Vec<String>);

impl VisitorMut for Constants {
    fn param(&mut self, _: &str, _: &mut Param) {}
    fn constant(&mut self, name: &str, _: &mut Tensor) {
        self.0.push(name.to_string())
    }
    fn module(&mut self, _: &str, m: &mut dyn Module) {
        m.visit_mut(self)
    }
}

impl<'a> Visitor<'a> for Constants {
    fn param(&mut self, _: &str, _: &'a Param) {}
    fn constant(&mut self, name: &str, _: &'a Tensor) {
        self.0.push(name.to_string())
    }
    fn module(&mut self, _: &str, m: &'a dyn Module) {
        m.visit(self)
    }
}

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

#[test]
fn named_struct_names_and_display() -> Result<()> {
    let net = Mlp {
        hidden: Linear::new(20, 256),
        out: Linear::new(256, 10),
    };
    assert_eq!(
        names(&net),
        ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    );
    assert_eq!(net.module_name(), "Mlp");
    assert_eq!(
        net.to_string(),
        "Mlp(\n  (hidden): Linear(in_features=20, out_features=256, bias=True)\n  (out): Linear(in_features=256, out_features=10, bias=True)\n)"
    );
    assert_eq!(net.forward(&Tensor::rand(&[2, 20]))?.shape(), &[2, 10]);
    Ok(())
}

// twin of ui/duplicate-child-name.rs: distinct names after rename
#[derive(Module)]
#[module(name = "Printed")]
struct Renamed {
    #[module(rename = "block 0")]
    first: Linear,
    second: Linear,
    r#type: ReLU,
}

#[test]
fn rename_and_container_name() {
    let net = Renamed {
        first: Linear::new(2, 3),
        second: Linear::no_bias(3, 1),
        r#type: ReLU,
    };
    assert_eq!(
        names(&net),
        ["block 0.weight", "block 0.bias", "second.weight"]
    );
    assert_eq!(net.module_name(), "Printed");
    assert!(net
        .to_string()
        .starts_with("Printed(\n  (block 0): Linear("));
    assert!(net.to_string().contains("(type): ReLU()"));
}

#[derive(Module)]
struct Pair(Linear, ReLU, Linear);

#[test]
fn tuple_struct_children_by_position() {
    let net = Pair(Linear::new(2, 3), ReLU, Linear::new(3, 1));
    assert_eq!(names(&net), ["0.weight", "0.bias", "2.weight", "2.bias"]);
}

// generic: bounds are added per field type, whatever the parameter names
#[derive(Module)]
struct Residual<Inner, const N: usize> {
    inner: Inner,
    heads: [Linear; N],
    extra: Option<Box<Inner>>,
    #[module(skip)]
    tag: std::marker::PhantomData<Inner>,
}

#[derive(Module)]
struct Wrap<M>
where
    M: Clone,
{
    m: M,
}

#[test]
fn generic_structs() {
    let net = Residual::<Mlp, 2> {
        inner: Mlp {
            hidden: Linear::new(2, 2),
            out: Linear::new(2, 2),
        },
        heads: [Linear::new(2, 1), Linear::new(2, 1)],
        extra: None,
        tag: std::marker::PhantomData,
    };
    assert_eq!(
        names(&net),
        [
            "inner.hidden.weight",
            "inner.hidden.bias",
            "inner.out.weight",
            "inner.out.bias",
            "heads.0.weight",
            "heads.0.bias",
            "heads.1.weight",
            "heads.1.bias"
        ]
    );
    let w = Wrap {
        m: Linear::new(1, 1),
    };
    assert_eq!(names(&w), ["m.weight", "m.bias"]);
    assert!(w.to_string().starts_with("Wrap(\n  (m): Linear("));
}

#[derive(Module)]
enum Act {
    Relu(ReLU),
    Proj(Linear),
    Gated { gate: Linear, up: Linear },
    Two(Linear, Linear),
    Identity,
}

#[derive(Module)]
struct WithAct {
    act: Act,
    head: Linear,
}

#[test]
fn enums_visit_the_active_variant() {
    let proj = WithAct {
        act: Act::Proj(Linear::new(2, 2)),
        head: Linear::new(2, 1),
    };
    // single-field tuple variants are transparent: the Linear sits at `act`
    assert_eq!(
        names(&proj),
        ["act.weight", "act.bias", "head.weight", "head.bias"]
    );
    assert!(proj
        .to_string()
        .contains("(act): Linear(in_features=2, out_features=2, bias=True)"));
    assert_eq!(proj.apply::<Linear>(|_| Ok(())).ok(), Some(2));
    let relu = WithAct {
        act: Act::Relu(ReLU),
        head: Linear::new(2, 1),
    };
    assert!(relu.to_string().contains("(act): ReLU()"));
    let gated = Act::Gated {
        gate: Linear::new(2, 2),
        up: Linear::new(2, 2),
    };
    assert_eq!(
        names(&gated),
        ["gate.weight", "gate.bias", "up.weight", "up.bias"]
    );
    assert!(gated.to_string().starts_with("Act(\n  (gate): Linear("));
    let two = Act::Two(Linear::new(1, 1), Linear::no_bias(1, 1));
    assert_eq!(names(&two), ["0.weight", "0.bias", "1.weight"]);
    assert!(names(&Act::Identity).is_empty());
    assert_eq!(Act::Identity.to_string(), "Act()");
}

// the book's FixedHiddenMLP: a constant moved with the model, not trained or saved
#[derive(Module)]
struct FixedHiddenMlp {
    #[module(constant)]
    rand_weight: Tensor,
    linear: Linear,
    #[module(constant)]
    maybe: Option<Tensor>,
    #[module(skip)]
    steps: usize,
    #[module(skip)]
    hook: Box<dyn Fn(f32) -> f32 + Send + Sync>,
    stats: Buffer,
}

impl Forward for FixedHiddenMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.linear.forward(x)?;
        let x = x.matmul(&self.rand_weight)?.add_scalar(1.0)?.relu()?;
        self.linear.forward(&x)
    }
}

#[test]
fn constants_skips_and_buffers() -> Result<()> {
    let mut net = FixedHiddenMlp {
        rand_weight: Tensor::rand(&[20, 20]),
        linear: Linear::new(20, 20),
        maybe: Some(Tensor::zeros(&[1])),
        steps: 3,
        hook: Box::new(|x| x * 2.0),
        stats: Buffer::new(Tensor::zeros(&[20])),
    };
    assert_eq!(names(&net), ["linear.weight", "linear.bias"]);
    // PyTorch's order: the module's own buffer before its children's parameters
    assert_eq!(keys(&net)?, ["stats", "linear.weight", "linear.bias"]);
    let mut seen = Constants::default();
    net.visit_mut(&mut seen);
    assert_eq!(seen.0, ["rand_weight", "maybe"]);
    let mut seen = Constants::default();
    net.visit(&mut seen);
    assert_eq!(seen.0, ["rand_weight", "maybe"]);
    net.to_device(&nn::Device::Cpu)?;
    let y = net.forward(&Tensor::rand(&[2, 20]))?;
    y.sum()?.backward()?;
    assert!(net.linear.weight.grad().is_some());
    assert_eq!(net.steps + ((net.hook)(1.0) as usize), 5);
    Ok(())
}

#[test]
fn nesting_through_sequential_and_dyn_sequential() -> Result<()> {
    // the book's block2 / rgnet: `0.block 1.0.bias`
    let mut rgnet = DynSequential::new();
    let mut inner = DynSequential::new();
    for i in 0..4 {
        inner.push_named(
            format!("block {i}"),
            sequential![Linear(_ => 8), ReLU, Linear(8 => 4), ReLU],
        )?;
    }
    rgnet.push(inner);
    rgnet.push(Linear::lazy(1));
    rgnet.forward(&Tensor::rand(&[2, 4]))?;
    let n = names(&rgnet);
    assert!(n.contains(&"0.block 1.0.bias".to_string()), "{n:?}");
    assert_eq!(n.last().map(String::as_str), Some("1.bias"));

    let chimera = sequential![
        Mlp {
            hidden: Linear::new(4, 8),
            out: Linear::new(8, 4)
        },
        "tail" => sequential![Linear(4 => 2), Sigmoid],
    ];
    assert_eq!(
        names(&chimera),
        [
            "0.hidden.weight",
            "0.hidden.bias",
            "0.out.weight",
            "0.out.bias",
            "tail.0.weight",
            "tail.0.bias"
        ]
    );
    assert_eq!(chimera.forward(&Tensor::rand(&[3, 4]))?.shape(), &[3, 2]);
    // typed access through Deref
    assert_eq!(chimera.1 .0.in_features(), Some(4));
    Ok(())
}

#[test]
fn sequential_plain_and_named() -> Result<()> {
    let net = sequential![Linear::new(20, 256), ReLU, Linear::new(256, 10)];
    assert_eq!(net.forward(&Tensor::rand(&[2, 20]))?.shape(), &[2, 10]);
    assert_eq!(net.2.weight.shape(), Some(vec![10, 256]));
    // twin of ui/sequential-duplicate-name.rs
    let named = sequential!["hidden" => Linear::new(4, 8), ReLU, "out" => Linear::lazy(1),];
    assert_eq!(
        names(&named),
        ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    );
    assert!(named.to_string().contains("(1): ReLU()"));
    Ok(())
}

#[test]
fn sequential_shape_form_infers_sizes() -> Result<()> {
    // twin of ui/sequential-size-mismatch.rs: sizes agree
    let net = sequential![
        Linear(20 => 256),
        ReLU,
        nn::layers::Sigmoid,
        Linear(_ => 64, bias = false),
        Linear(64 => 10),
        Linear(_ => 1),
    ];
    assert_eq!(net.0.in_features(), Some(20));
    assert_eq!(net.3.in_features(), Some(256));
    assert!(net.3.bias.is_none());
    assert_eq!(net.4.in_features(), Some(64));
    assert_eq!(net.5.in_features(), Some(10));
    assert_eq!(net.forward(&Tensor::rand(&[2, 20]))?.shape(), &[2, 1]);
    // checks and inference also see through Linear::new / Linear::lazy
    let mixed = sequential![Linear::lazy(8), ReLU, Linear(_ => 3)];
    assert_eq!(mixed.2.in_features(), Some(8));
    Ok(())
}

#[test]
fn sequential_lazy_fallback() -> Result<()> {
    let hidden = 16;
    let net = sequential![
        Linear(_ => 8),
        ReLU,
        Linear(8 => hidden),
        Linear(_ => 4, bias = false),
    ];
    assert_eq!(net.0.in_features(), None);
    assert_eq!(net.2.in_features(), Some(8));
    // `hidden` is not a literal: the next input size is deferred
    assert_eq!(net.3.in_features(), None);
    assert!(net.3.bias.is_none());
    assert_eq!(net.forward(&Tensor::rand(&[2, 5]))?.shape(), &[2, 4]);
    assert_eq!(net.0.in_features(), Some(5));
    assert_eq!(net.3.in_features(), Some(16));
    Ok(())
}

#[test]
fn sequential_sixteen_entries() -> Result<()> {
    let net = sequential![
        Linear(2 => 2), ReLU, Linear(_ => 2), ReLU, Linear(_ => 2), ReLU, Linear(_ => 2), ReLU,
        Linear(_ => 2), ReLU, Linear(_ => 2), ReLU, Linear(_ => 2), ReLU, Linear(_ => 2), ReLU,
    ];
    assert_eq!(net.forward(&Tensor::rand(&[1, 2]))?.shape(), &[1, 2]);
    assert_eq!(names(&net).len(), 16);
    assert_eq!(names(&net)[15], "14.bias");
    Ok(())
}

#[derive(Module)]
enum Never {}

#[derive(Module)]
#[module(crate = nn, no_display)]
struct CratePath {
    fc: Linear,
}

impl std::fmt::Display for CratePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "custom")
    }
}

#[test]
fn empty_enum_crate_path_and_own_display() {
    fn is_module<M: Module>() {}
    is_module::<Never>();
    let c = CratePath {
        fc: Linear::new(1, 1),
    };
    assert_eq!(c.to_string(), "custom");
    assert_eq!(names(&c), ["fc.weight", "fc.bias"]);
}

// the book's CenteredLayer: a layer without parameters, usable inside sequential!
#[path = "../examples/book/mod.rs"]
mod book;
use book::CenteredLayer;

/// A hand-written leaf that records train/eval switches.
#[derive(Default)]
struct Probe(std::sync::atomic::AtomicBool);

impl Module for Probe {
    fn visit<'a>(&'a self, _: &mut dyn Visitor<'a>) {}
    fn visit_mut(&mut self, _: &mut dyn VisitorMut) {}
    fn set_training(&mut self, training: bool) {
        self.0.store(training, std::sync::atomic::Ordering::Relaxed)
    }
}

impl Forward for Probe {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
}

#[derive(Module)]
enum MaybeProbe {
    On(Probe),
    Off,
}

#[derive(Module)]
struct Probed {
    direct: Probe,
    wrapped: MaybeProbe,
}

#[test]
fn unit_struct_layer_path_shape_form_and_train_eval() -> Result<()> {
    assert_eq!(CenteredLayer.to_string(), "CenteredLayer()");
    let net = sequential![nn::Linear(4 => 8), CenteredLayer, ::nn::Linear(_ => 2)];
    // a user layer may change the size: the next `_` is deferred to the first forward
    assert_eq!(net.2.in_features(), None);
    assert_eq!(net.forward(&Tensor::rand(&[3, 4]))?.shape(), &[3, 2]);
    assert_eq!(net.2.in_features(), Some(8));
    assert!(net.to_string().contains("(1): CenteredLayer()"));

    let mut p = Probed {
        direct: Probe::default(),
        wrapped: MaybeProbe::On(Probe::default()),
    };
    p.train();
    let on = |p: &Probed| {
        let MaybeProbe::On(w) = &p.wrapped else {
            return (false, false);
        };
        let get = |q: &Probe| q.0.load(std::sync::atomic::Ordering::Relaxed);
        (get(&p.direct), get(w))
    };
    assert_eq!(on(&p), (true, true));
    p.eval();
    assert_eq!(on(&p), (false, false));
    assert!(names(&MaybeProbe::Off).is_empty());
    Ok(())
}

/// Mean of the projected tokens, padding (mask 1) left out: a two-input forward.
#[derive(Module)]
struct MaskedMean {
    proj: Linear,
}

impl Forward<(Tensor, Tensor)> for MaskedMean {
    /// tokens `[B, T, 4]`, padding mask `[B, T]` (1 = padding) -> `[B, 2]`
    fn forward(&self, (tokens, mask): &(Tensor, Tensor)) -> Result<Tensor> {
        let keep = mask.mul_scalar(-1.0)?.add_scalar(1.0)?.unsqueeze(-1)?;
        let sum = self.proj.forward(tokens)?.mul(&keep)?.sum_dim(1, false)?;
        sum.div(&keep.sum_dim(1, false)?)
    }
}

/// A single-input form next to the two-input one: no padding.
impl Forward for MaskedMean {
    fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        self.proj.forward(tokens)?.mean_dim(1, false)
    }
}

/// Composition: a boxed two-input body, then a head; itself a two-input layer.
#[derive(Module)]
struct Classifier {
    body: Box<dyn nn::Layer<(Tensor, Tensor)>>,
    head: Linear,
}

impl Forward<(Tensor, Tensor)> for Classifier {
    fn forward(&self, x: &(Tensor, Tensor)) -> Result<Tensor> {
        self.head.forward(&self.body.forward(x)?)
    }
}

/// Generic code over layers of two inputs.
fn run_twice<M: Forward<(Tensor, Tensor)> + ?Sized>(m: &M, x: &(Tensor, Tensor)) -> Result<Tensor> {
    m.forward(x)?.add(&m.forward(x)?)
}

#[test]
fn two_input_forward_called_through_the_trait_boxed_and_composed() -> Result<()> {
    let pool = MaskedMean {
        proj: Linear::new(4, 2),
    };
    let tokens = Tensor::randn(&[3, 5, 4]);
    // the last two positions of every row are padding: the mean of the first three
    let mask = Tensor::from_vec([0.0f32, 0.0, 0.0, 1.0, 1.0].repeat(3), &[3, 5])?;
    let input = (tokens.clone(), mask.clone());
    let y = pool.forward(&input)?;
    let want = pool.forward(&tokens.narrow(1, 0, 3)?)?;
    for (a, b) in y.to_vec::<f32>()?.iter().zip(want.to_vec::<f32>()?) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(run_twice(&pool, &input)?.shape(), &[3, 2]);

    let boxed: Box<dyn Forward<(Tensor, Tensor)>> = Box::new(MaskedMean {
        proj: pool.proj.deep_copy(),
    });
    assert_eq!(boxed.forward(&input)?.to_vec::<f32>()?, y.to_vec::<f32>()?);
    assert_eq!(run_twice(boxed.as_ref(), &input)?.shape(), &[3, 2]);

    let net = Classifier {
        body: Box::new(pool),
        head: Linear::new(2, 3),
    };
    assert_eq!(
        names(&net),
        [
            "body.proj.weight",
            "body.proj.bias",
            "head.weight",
            "head.bias"
        ]
    );
    let out = net.forward(&input)?;
    assert_eq!(out.shape(), &[3, 3]);
    out.sum()?.backward()?;
    assert!(net.parameters().iter().all(|p| p.grad().is_some()));
    assert!(net.to_string().contains("(body): MaskedMean("));
    Ok(())
}

/// Twin of tests/ui/sequential-multi-input-layer.rs: a layer that also has a
/// single-input forward is chained by that one.
#[test]
fn sequential_chains_the_single_input_form_of_a_multi_input_layer() -> Result<()> {
    let net = sequential![
        MaskedMean {
            proj: Linear::new(4, 2)
        },
        ReLU,
    ];
    let x = Tensor::randn(&[3, 5, 4]);
    let want = Forward::<Tensor>::forward(&net.0, &x)?.relu()?;
    assert_eq!(net.forward(&x)?.to_vec::<f32>()?, want.to_vec::<f32>()?);
    Ok(())
}
