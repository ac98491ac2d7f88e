//! The sequence-model ops and layers on every device: the CPU always, CUDA device 0 with
//! `--features cuda` (ignored, and counted as such, when the machine that built this has
//! no GPU; see tests/devices.rs). Each case runs the PyTorch fixtures of
//! tests/transformer_pytorch.rs with the model and data moved to the device, so the
//! device is checked against PyTorch itself, outputs and gradients, to 1e-4.

mod common;

use common::assert_close;
use nn::layers::{AttnMasks, EncoderLayerConfig};
use nn::{
    Device, Embedding, Forward, LoadOptions, Module, ModuleExt, MultiheadAttention, Result,
    StateDict, Tensor, TransformerEncoder, TransformerEncoderLayer,
};

macro_rules! device_tests {
    ($($case:ident),* $(,)?) => {
        mod cpu {
            $(
                #[test]
                fn $case() -> nn::Result<()> {
                    super::$case(&nn::Device::Cpu)
                }
            )*
        }
        /// The CUDA backend's kernels and launches executed on the host (every machine).
        mod cuda_host {
            $(
                #[test]
                fn $case() -> nn::Result<()> {
                    super::$case(&nn_cuda::host_device())
                }
            )*
        }
        #[cfg(feature = "cuda")]
        mod cuda {
            $(
                #[test]
                #[cfg_attr(
                    not(nn_gpu_found),
                    ignore = "no GPU on the machine that built this (NN_CUDA_REQUIRE=1 or --include-ignored runs it)"
                )]
                fn $case() -> nn::Result<()> {
                    super::$case(&nn::cuda::device(0)?)
                }
            )*
        }
    };
}

device_tests!(activation_ops, embedding, attention_with_weights, encoders);

const TOL: f32 = 1e-4;

fn fixtures() -> Result<StateDict> {
    nn::io::load_safetensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/transformer.safetensors"
    ))
}

/// Fixture `key`, on `dev`.
fn get(sd: &StateDict, key: &str, dev: &Device) -> Result<Tensor> {
    match sd.get(key) {
        Some(t) => t.to_device(dev),
        None => panic!("fixture key {key} missing: rerun tools/make_transformer_fixtures.py"),
    }
}

/// Loads `PREFIX.sd.*` strictly, then moves the model to `dev`.
fn load_on(m: &mut impl Module, sd: &StateDict, prefix: &str, dev: &Device) -> Result<()> {
    let report = m.load_state_dict(sd, &LoadOptions::strict().prefix(format!("{prefix}.sd")))?;
    assert!(report.is_clean(), "{prefix}: {report}");
    m.to_device(dev)
}

fn check_grads(m: &impl Module, sd: &StateDict, prefix: &str, dev: &Device) -> Result<()> {
    for (name, p) in m.named_parameters() {
        let g = p
            .grad()
            .unwrap_or_else(|| panic!("{prefix}: no gradient for {name}"));
        assert_eq!(&g.device(), dev, "{prefix} grad {name}: device");
        assert_close(
            &format!("{prefix} grad {name} on {dev}"),
            &g,
            &get(sd, &format!("{prefix}.grad.{name}"), &Device::Cpu)?,
            TOL,
        )?;
    }
    Ok(())
}

fn activation_ops(dev: &Device) -> Result<()> {
    let sd = fixtures()?;
    type Op = fn(&Tensor) -> Result<Tensor>;
    let cases: [(&str, Op); 9] = [
        ("gelu", |x| x.gelu()),
        ("gelu_tanh", |x| x.gelu_tanh()),
        ("silu", |x| x.silu()),
        ("leaky_relu", |x| x.leaky_relu(0.1)),
        ("softmax0", |x| x.softmax(0)),
        ("log_softmax", |x| x.log_softmax(-1)),
        ("erf", |x| x.erf()),
        ("triu1", |x| x.triu(1)),
        ("tril0", |x| x.tril(0)),
    ];
    for (name, f) in cases {
        let x = get(&sd, &format!("act.{name}.in0"), dev)?.with_requires_grad(true);
        let y = f(&x)?;
        assert_eq!(&y.device(), dev, "{name}: device");
        assert_close(
            &format!("{name} on {dev}"),
            &y,
            &get(&sd, &format!("act.{name}.out"), dev)?,
            TOL,
        )?;
        y.backward_with(&get(&sd, &format!("act.{name}.upstream"), dev)?)?;
        let g = x.grad().unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_close(
            &format!("{name} grad on {dev}"),
            &g,
            &get(&sd, &format!("act.{name}.grad0"), dev)?,
            TOL,
        )?;
    }
    Ok(())
}

fn embedding(dev: &Device) -> Result<()> {
    let sd = fixtures()?;
    let mut emb = Embedding::with_padding_idx(10, 6, 2)?;
    load_on(&mut emb, &sd, "emb", dev)?;
    let y = emb.forward(&get(&sd, "emb.x", dev)?)?;
    assert_close("emb out", &y, &get(&sd, "emb.out", dev)?, TOL)?;
    y.mul(&get(&sd, "emb.upstream", dev)?)?.sum()?.backward()?;
    check_grads(&emb, &sd, "emb", dev)?;
    assert!(emb
        .forward(&Tensor::from_vec(vec![10i64], &[1])?.to_device(dev)?)
        .is_err());
    Ok(())
}

fn attention_with_weights(dev: &Device) -> Result<()> {
    let sd = fixtures()?;
    let mut mha = MultiheadAttention::new(16, 4)?.batch_first(true);
    load_on(&mut mha, &sd, "mha", dev)?;
    mha.eval();
    let x = get(&sd, "mha.x", dev)?.with_requires_grad(true);
    let (am, kpm) = (
        get(&sd, "mha.attn_mask", dev)?,
        get(&sd, "mha.key_padding_mask", dev)?,
    );
    let masks = AttnMasks {
        attn_mask: Some(&am),
        key_padding_mask: Some(&kpm),
        need_weights: true,
    };
    let (y, w) = mha.attend(&x, &x, &x, &masks)?;
    let w = w.unwrap_or_else(|| panic!("no weights"));
    assert_close("mha out", &y, &get(&sd, "mha.out", dev)?, TOL)?;
    assert_close("mha weights", &w, &get(&sd, "mha.weights", dev)?, TOL)?;
    let l = y.mul(&get(&sd, "mha.upstream", dev)?)?.sum()?;
    l.add(&w.mul(&get(&sd, "mha.upstream_weights", dev)?)?.sum()?)?
        .backward()?;
    check_grads(&mha, &sd, "mha", dev)
}

fn encoders(dev: &Device) -> Result<()> {
    let sd = fixtures()?;
    for (key, norm_first) in [("enc_post", false), ("enc_pre", true)] {
        let cfg = EncoderLayerConfig {
            dim_feedforward: 128,
            batch_first: true,
            norm_first,
            ..EncoderLayerConfig::new(64, 4)
        };
        let mut enc = TransformerEncoder::new(&TransformerEncoderLayer::new(&cfg)?, 2)?;
        load_on(&mut enc, &sd, key, dev)?;
        enc.eval();
        let x = get(&sd, &format!("{key}.x"), dev)?.with_requires_grad(true);
        let mask = get(&sd, &format!("{key}.mask"), dev)?;
        let kpm = get(&sd, &format!("{key}.key_padding_mask"), dev)?;
        let y = enc.forward(&(x.clone(), Some(mask), Some(kpm)))?;
        assert_eq!(&y.device(), dev);
        assert_close(
            &format!("{key} out"),
            &y,
            &get(&sd, &format!("{key}.out"), dev)?,
            TOL,
        )?;
        y.sum()?.backward()?;
        check_grads(&enc, &sd, key, dev)?;
        let g = x.grad().unwrap_or_else(|| panic!("no input gradient"));
        assert_close(
            &format!("{key} input grad"),
            &g,
            &get(&sd, &format!("{key}.grad.input"), dev)?,
            TOL,
        )?;
    }
    Ok(())
}
