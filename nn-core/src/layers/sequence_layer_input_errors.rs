//! Property tests: bad input to the sequence layers (out-of-range or negative indices,
//! masks of the wrong shape or dtype, inputs of the wrong rank or width) is an `Err`
//! naming the layer's path in its model, never a panic; good input is `Ok`.

use super::{
    AttnMasks, Embedding, EncoderLayerConfig, LayerNorm, MultiheadAttention,
    TransformerEncoderLayer,
};
use crate::module::{Forward, Module, ModuleExt, Visitor, VisitorMut};
use crate::{Result, Tensor};
use proptest::prelude::*;

/// A model holding each layer under a known path.
struct Model {
    tok: Embedding,
    attn: MultiheadAttention,
    block: TransformerEncoderLayer,
    norm: LayerNorm,
}

impl Module for Model {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.module("tok", &self.tok);
        v.module("attn", &self.attn);
        v.module("block", &self.block);
        v.module("norm", &self.norm);
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        v.module("tok", &mut self.tok);
        v.module("attn", &mut self.attn);
        v.module("block", &mut self.block);
        v.module("norm", &mut self.norm);
    }
}

fn model() -> Result<Model> {
    let cfg = EncoderLayerConfig {
        dim_feedforward: 8,
        batch_first: true,
        ..EncoderLayerConfig::new(4, 2)
    };
    let m = Model {
        tok: Embedding::new(7, 4)?,
        attn: MultiheadAttention::new(4, 2)?.batch_first(true),
        block: TransformerEncoderLayer::new(&cfg)?,
        norm: LayerNorm::new(&[4])?,
    };
    let _ = m.named_parameters(); // the layers learn their paths
    Ok(m)
}

/// Asserts `r` is Ok when `valid`, else an Err whose message starts with `path`.
fn expect<T>(r: Result<T>, valid: bool, path: &str) -> std::result::Result<(), TestCaseError> {
    match r {
        Ok(_) => prop_assert!(valid, "accepted bad input ({path})"),
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!valid, "refused good input: {msg}");
            prop_assert!(msg.starts_with(path), "error does not name {path}: {msg}");
        }
    }
    Ok(())
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..5, 0..5)
}

fn tensor(shape: &[usize], int: bool) -> Tensor {
    if int {
        Tensor::zeros_dtype(shape, crate::DType::I64)
    } else {
        Tensor::zeros(shape)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn embedding_indices(idx in prop::collection::vec(prop_oneof![-10i64..10, Just(i64::MIN), Just(i64::MAX)], 0..12)) {
        let m = model().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let valid = idx.iter().all(|i| (0..7).contains(i));
        let n = idx.len();
        let x = Tensor::from_vec(idx, &[n]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        expect(m.tok.forward(&x), valid, "tok (Embedding(7, 4))")?;
        // float indices are refused too
        expect(m.tok.forward(&Tensor::zeros(&[n])), false, "tok (Embedding(7, 4))")?;
    }

    #[test]
    fn attention_masks(am in prop::option::of((shape(), any::<bool>())),
                       kpm in prop::option::of((shape(), any::<bool>()))) {
        let m = model().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let x = Tensor::randn(&[2, 3, 4]);
        // L = S = 3, B = 2, H = 2
        let am_ok = am.as_ref().is_none_or(|(s, _)| s[..] == [3, 3] || s[..] == [4, 3, 3]);
        let kpm_ok = kpm.as_ref().is_none_or(|(s, _)| s[..] == [2, 3]);
        let am_t = am.map(|(s, int)| tensor(&s, int));
        let kpm_t = kpm.map(|(s, int)| tensor(&s, int));
        let masks = AttnMasks { attn_mask: am_t.as_ref(), key_padding_mask: kpm_t.as_ref(), need_weights: true };
        expect(m.attn.attend(&x, &x, &x, &masks), am_ok && kpm_ok, "attn (MultiheadAttention(embed_dim=4, num_heads=2))")?;
        expect(
            m.block.forward(&(x.clone(), am_t.clone(), kpm_t.clone())),
            am_ok && kpm_ok,
            "block.self_attn (MultiheadAttention(embed_dim=4, num_heads=2))",
        )?;
    }

    #[test]
    fn input_ranks_and_widths(s in shape()) {
        let m = model().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let x = Tensor::zeros(&s);
        let attn_ok = matches!(s[..], [_, _, 4] | [_, 4]);
        expect(m.attn.forward(&x), attn_ok, "attn (MultiheadAttention")?;
        expect(m.block.forward(&x), attn_ok, "block.")?;
        expect(m.norm.forward(&x), s.last() == Some(&4), "norm (LayerNorm((4,)")?;
    }
}

#[test]
fn config_errors_name_the_setting() {
    let msg = |r: Result<MultiheadAttention>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg(MultiheadAttention::new(6, 4)).contains("num_heads"));
    let cfg = EncoderLayerConfig::new(6, 4);
    let e = TransformerEncoderLayer::new(&cfg)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("embed_dim 6 must be divisible by num_heads")));
}
