//! The sequence-model layers against PyTorch 2.15 (tools/make_transformer_fixtures.py):
//! activations, Embedding, LayerNorm, RMSNorm, MultiheadAttention with need_weights, and
//! 2-layer TransformerEncoders (post- and pre-norm, causal + padding masks), each loaded
//! strictly from PyTorch's state dict and compared on outputs and on the gradients with
//! respect to every parameter and the input, to 1e-4; printed trees and parameter order
//! as PyTorch's.

mod common;

use common::assert_close;
use nn::layers::{
    AttnMasks, EncoderLayerConfig, LayerNorm, MultiheadAttention, RMSNorm, TransformerEncoder,
    TransformerEncoderLayer,
};
use nn::{DType, Embedding, Forward, LoadOptions, Module, ModuleExt, Result, StateDict, Tensor};

const TOL: f32 = 1e-4;

fn fixtures() -> Result<StateDict> {
    nn::io::load_safetensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/transformer.safetensors"
    ))
}

fn meta() -> Result<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/transformer.json"
    );
    let text = std::fs::read_to_string(path).map_err(|e| nn::Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| nn::Error::Format {
        path: path.into(),
        msg: e.to_string(),
    })
}

fn get(sd: &StateDict, key: &str) -> Tensor {
    match sd.get(key) {
        Some(t) => t.clone(),
        None => panic!("fixture key {key} missing: rerun tools/make_transformer_fixtures.py"),
    }
}

/// PyTorch's printed tree (`str(module)`, unpatched), which ours equals exactly.
fn torch_tree(meta: &serde_json::Value, key: &str) -> String {
    meta["trees"][key].as_str().unwrap_or_default().to_string()
}

/// Loads `PREFIX.sd.*` strictly into `m`.
fn load(m: &impl Module, sd: &StateDict, prefix: &str) -> Result<()> {
    let report = m.load_state_dict(sd, &LoadOptions::strict().prefix(format!("{prefix}.sd")))?;
    assert!(report.is_clean(), "{prefix}: {report}");
    Ok(())
}

/// Every parameter's gradient, and the input's, against `PREFIX.grad.*`.
fn check_grads(m: &impl Module, sd: &StateDict, prefix: &str, x: Option<&Tensor>) -> Result<()> {
    for (name, p) in m.named_parameters() {
        let g = p
            .grad()
            .unwrap_or_else(|| panic!("{prefix}: no gradient for {name}"));
        assert_close(
            &format!("{prefix} grad {name}"),
            &g,
            &get(sd, &format!("{prefix}.grad.{name}")),
            TOL,
        )?;
    }
    if let Some(x) = x {
        let g = x
            .grad()
            .unwrap_or_else(|| panic!("{prefix}: no input gradient"));
        assert_close(
            &format!("{prefix} grad input"),
            &g,
            &get(sd, &format!("{prefix}.grad.input")),
            TOL,
        )?;
    }
    Ok(())
}

#[test]
fn activations_match_pytorch() -> Result<()> {
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
        let x = get(&sd, &format!("act.{name}.in0")).with_requires_grad(true);
        let y = f(&x)?;
        assert_close(
            &format!("{name} out"),
            &y,
            &get(&sd, &format!("act.{name}.out")),
            TOL,
        )?;
        y.backward_with(&get(&sd, &format!("act.{name}.upstream")))?;
        let g = x.grad().unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_close(
            &format!("{name} grad"),
            &g,
            &get(&sd, &format!("act.{name}.grad0")),
            TOL,
        )?;
    }
    Ok(())
}

#[test]
fn embedding_matches_pytorch() -> Result<()> {
    let (sd, meta) = (fixtures()?, meta()?);
    let emb = Embedding::with_padding_idx(10, 6, 2)?;
    load(&emb, &sd, "emb")?;
    let y = emb.forward(&get(&sd, "emb.x"))?;
    assert_close("emb out", &y, &get(&sd, "emb.out"), TOL)?;
    y.mul(&get(&sd, "emb.upstream"))?.sum()?.backward()?;
    check_grads(&emb, &sd, "emb", None)?;
    assert_eq!(emb.repr(), torch_tree(&meta, "emb"));
    Ok(())
}

#[test]
fn norms_match_pytorch() -> Result<()> {
    let (sd, meta) = (fixtures()?, meta()?);
    let ln = LayerNorm::new(&[6])?;
    let rms = RMSNorm::with_options(&[2, 6], Some(1e-6), true)?;
    type Case<'a> = (
        &'a str,
        &'a dyn Fn(&Tensor) -> Result<Tensor>,
        &'a dyn Module,
    );
    let cases: [Case; 2] = [
        ("ln", &|x| ln.forward(x), &ln),
        ("rms", &|x| rms.forward(x), &rms),
    ];
    for (key, f, m) in cases {
        let report = m.load_state_dict(&sd, &LoadOptions::strict().prefix(format!("{key}.sd")))?;
        assert!(report.is_clean(), "{key}: {report}");
        let x = get(&sd, &format!("{key}.x")).with_requires_grad(true);
        let y = f(&x)?;
        assert_close(
            &format!("{key} out"),
            &y,
            &get(&sd, &format!("{key}.out")),
            TOL,
        )?;
        y.mul(&get(&sd, &format!("{key}.upstream")))?
            .sum()?
            .backward()?;
        assert_eq!(m.repr(), torch_tree(&meta, key));
    }
    check_grads(&ln, &sd, "ln", None)?;
    check_grads(&rms, &sd, "rms", None)?;
    Ok(())
}

#[test]
fn multihead_attention_with_weights_matches_pytorch() -> Result<()> {
    let (sd, meta) = (fixtures()?, meta()?);
    let mut mha = MultiheadAttention::new(16, 4)?.batch_first(true);
    load(&mha, &sd, "mha")?;
    mha.eval();
    let x = get(&sd, "mha.x").with_requires_grad(true);
    let (am, kpm) = (get(&sd, "mha.attn_mask"), get(&sd, "mha.key_padding_mask"));
    let masks = AttnMasks {
        attn_mask: Some(&am),
        key_padding_mask: Some(&kpm),
        need_weights: true,
    };
    let (y, w) = mha.attend(&x, &x, &x, &masks)?;
    let w = w.unwrap_or_else(|| panic!("need_weights gave no weights"));
    assert_close("mha out", &y, &get(&sd, "mha.out"), TOL)?;
    assert_close("mha weights", &w, &get(&sd, "mha.weights"), TOL)?;
    let loss = y
        .mul(&get(&sd, "mha.upstream"))?
        .sum()?
        .add(&w.mul(&get(&sd, "mha.upstream_weights"))?.sum()?)?;
    loss.backward()?;
    check_grads(&mha, &sd, "mha", Some(&x))?;
    assert_eq!(mha.repr(), torch_tree(&meta, "mha"));
    let names: Vec<String> = mha.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(serde_json::json!(names), meta["names"]["mha"]);
    Ok(())
}

#[test]
fn transformer_encoders_match_pytorch() -> Result<()> {
    let (sd, meta) = (fixtures()?, meta()?);
    for (key, norm_first) in [("enc_post", false), ("enc_pre", true)] {
        let cfg = EncoderLayerConfig {
            dim_feedforward: 128,
            batch_first: true,
            norm_first,
            ..EncoderLayerConfig::new(64, 4)
        };
        let mut enc = TransformerEncoder::new(&TransformerEncoderLayer::new(&cfg)?, 2)?;
        assert_eq!(enc.repr(), torch_tree(&meta, key), "{key} tree");
        let names: Vec<String> = enc.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(serde_json::json!(names), meta["names"][key], "{key} names");
        load(&enc, &sd, key)?;
        enc.eval();
        let x = get(&sd, &format!("{key}.x")).with_requires_grad(true);
        let (mask, kpm) = (
            get(&sd, &format!("{key}.mask")),
            get(&sd, &format!("{key}.key_padding_mask")),
        );
        let y = enc.forward(&(x.clone(), Some(mask.clone()), Some(kpm.clone())))?;
        assert_close(
            &format!("{key} out"),
            &y,
            &get(&sd, &format!("{key}.out")),
            TOL,
        )?;
        y.sum()?.backward()?;
        check_grads(&enc, &sd, key, Some(&x))?;
        // PyTorch ran with a bool key padding mask (stored as int64): bool and uint8
        // masks mean the same here, and an int64 one keeps working
        for dtype in [DType::Bool, DType::U8] {
            let kpm = kpm.to_dtype(dtype)?;
            let y = enc.forward(&(x.detach(), Some(mask.clone()), Some(kpm)))?;
            assert_close(
                &format!("{key} out, {dtype} padding mask"),
                &y,
                &get(&sd, &format!("{key}.out")),
                TOL,
            )?;
        }
        // a boolean causal mask (True above the diagonal) equals the additive one
        let t = mask.shape()[0];
        let causal = Tensor::ones(&[t, t]).triu(1)?.gt_scalar(0.0)?;
        let y = enc.forward(&(x.detach(), Some(causal), Some(kpm)))?;
        assert_close(
            &format!("{key} out, bool causal mask"),
            &y,
            &get(&sd, &format!("{key}.out")),
            TOL,
        )?;
    }
    Ok(())
}

/// `F.scaled_dot_product_attention` against PyTorch (tools/make_sdpa_fixtures.py): outputs
/// and the gradients of sum(out * upstream) through the composite path, outputs again
/// through the fused no-grad forward; bool and f32 masks (with a fully masked row),
/// causal with L > S, an explicit scale, unbatched.
#[test]
fn sdpa_matches_pytorch() -> Result<()> {
    let sd = nn::io::load_safetensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sdpa.safetensors"
    ))?;
    let cases: [(&str, bool, Option<f32>); 6] = [
        ("plain", false, None),
        ("causal", true, None),
        ("scale", false, Some(0.3)),
        ("bool_mask", false, None),
        ("f32_mask", false, None),
        ("unbatched", false, None),
    ];
    for (name, causal, scale) in cases {
        let t = |k: &str| get(&sd, &format!("{name}.{k}"));
        let mask = sd.get(&format!("{name}.mask")).map(|m| match m.dtype() {
            DType::I64 => m.to_dtype(DType::Bool),
            _ => Ok(m.clone()),
        });
        let mask = mask.transpose()?;
        let (q, k, v) = (
            t("q").with_requires_grad(true),
            t("k").with_requires_grad(true),
            t("v").with_requires_grad(true),
        );
        let f = |q: &Tensor, k: &Tensor, v: &Tensor| {
            nn::functional::scaled_dot_product_attention(q, k, v, mask.as_ref(), 0.0, causal, scale)
        };
        let out = f(&q, &k, &v)?;
        assert_close(&format!("{name} out"), &out, &t("out"), TOL)?;
        let fused = nn::no_grad(|| f(&q, &k, &v))?;
        assert_close(&format!("{name} out (no_grad)"), &fused, &t("out"), TOL)?;
        out.mul(&t("upstream"))?.sum()?.backward()?;
        for (x, key) in [(&q, "q"), (&k, "k"), (&v, "v")] {
            let g = x
                .grad()
                .unwrap_or_else(|| panic!("{name}: no gradient for {key}"));
            assert_close(
                &format!("{name} grad {key}"),
                &g,
                &t(&format!("grad.{key}")),
                TOL,
            )?;
        }
    }
    Ok(())
}
