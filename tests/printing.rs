//! Printed trees equal PyTorch's own `repr()`, unpatched: one (or a few) of every layer
//! type, containers (`Sequential` lists every child, `ModuleList` collapses runs of
//! equal children into `(0-1): 2 x ...`) and 2-layer TransformerEncoders, against
//! tests/fixtures/repr/*.txt written by tools/make_repr_fixtures.py (PyTorch 2.15).
//! ResNet-18's tree is checked in tests/resnet.rs against the same directory.

use nn::layers::{
    Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d,
    EncoderLayerConfig, GroupNorm, Identity, LayerNorm, LeakyReLU, LogSoftmax, MaxPool2d,
    MultiheadAttention, RMSNorm, SiLU, Sigmoid, Softmax, Tanh, TransformerEncoder,
    TransformerEncoderLayer, GELU,
};
use nn::{
    sequential, Dropout, DynSequential, Embedding, Flatten, Linear, Module, ModuleExt, ReLU, Result,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/repr/");

/// PyTorch's tree for `case`, without the file's final newline.
fn torch(case: &str) -> String {
    match std::fs::read_to_string(format!("{DIR}{case}.txt")) {
        Ok(s) => s.trim_end_matches('\n').to_string(),
        Err(e) => panic!("{case}.txt: {e}: run tools/make_repr_fixtures.py"),
    }
}

/// Compares every case and reports all differences at once.
fn check_all(cases: &[(&str, &dyn Module)]) {
    let bad: Vec<String> = cases
        .iter()
        .filter_map(|(case, m)| {
            let (ours, theirs) = (m.repr(), torch(case));
            (ours != theirs).then(|| format!("{case}:\n  ours:  {ours}\n  torch: {theirs}"))
        })
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_layer_prints_as_pytorch() -> Result<()> {
    let cases: Vec<(&str, Box<dyn Module>)> = vec![
        ("linear", Box::new(Linear::new(4, 8))),
        ("linear_no_bias", Box::new(Linear::no_bias(4, 8))),
        ("conv1d", Box::new(Conv1d::new(3, 8, 3))),
        (
            "conv2d",
            Box::new(Conv2d::new(3, 64, 7).stride(2).padding(3).no_bias()),
        ),
        (
            "conv2d_same",
            Box::new(Conv2d::new(3, 8, 3).padding_same().dilation(2)),
        ),
        (
            "conv2d_groups",
            Box::new(Conv2d::new(4, 8, 3).padding(1).groups(2)),
        ),
        ("batchnorm1d", Box::new(BatchNorm1d::new(8))),
        ("batchnorm2d", Box::new(BatchNorm2d::new(64))),
        (
            "batchnorm2d_plain",
            Box::new(
                BatchNorm2d::new(4)
                    .momentum(None)
                    .no_affine()
                    .no_running_stats(),
            ),
        ),
        ("layernorm", Box::new(LayerNorm::new(&[64])?)),
        (
            "layernorm_plain",
            Box::new(LayerNorm::with_options(&[2, 3], 1e-6, false)?),
        ),
        (
            "rmsnorm",
            Box::new(RMSNorm::with_options(&[2, 6], Some(1e-6), true)?),
        ),
        ("rmsnorm_default", Box::new(RMSNorm::new(&[6])?)),
        ("groupnorm", Box::new(GroupNorm::new(2, 8))),
        ("dropout", Box::new(Dropout::new(0.5))),
        ("dropout_0", Box::new(Dropout::new(0.0))),
        ("dropout_01", Box::new(Dropout::new(0.1))),
        ("embedding", Box::new(Embedding::new(10, 4)?)),
        (
            "embedding_padding",
            Box::new(Embedding::with_padding_idx(10, 4, 0)?),
        ),
        ("flatten", Box::new(Flatten::new())),
        (
            "maxpool2d",
            Box::new(MaxPool2d::new(3).stride(2).padding(1)),
        ),
        (
            "avgpool2d",
            Box::new(AvgPool2d::new([2, 3]).ceil_mode(true)),
        ),
        (
            "adaptive_avgpool2d",
            Box::new(AdaptiveAvgPool2d::new([1, 1])),
        ),
        ("relu", Box::new(ReLU)),
        ("relu_inplace", Box::new(ReLU.inplace(true))),
        ("silu", Box::new(SiLU)),
        ("silu_inplace", Box::new(SiLU.inplace(true))),
        ("leaky_relu", Box::new(LeakyReLU::default())),
        (
            "leaky_relu_inplace",
            Box::new(LeakyReLU::new(0.2).inplace(true)),
        ),
        ("gelu", Box::new(GELU::new())),
        ("gelu_tanh", Box::new(GELU::tanh())),
        ("sigmoid", Box::new(Sigmoid)),
        ("tanh", Box::new(Tanh)),
        ("softmax", Box::new(Softmax::new(-1))),
        ("log_softmax", Box::new(LogSoftmax::new(1))),
        ("identity", Box::new(Identity)),
        (
            "multihead_attention",
            Box::new(MultiheadAttention::new(16, 4)?.batch_first(true)),
        ),
    ];
    let cases: Vec<(&str, &dyn Module)> = cases.iter().map(|(c, m)| (*c, &**m)).collect();
    check_all(&cases);
    Ok(())
}

#[test]
fn containers_print_as_pytorch() -> Result<()> {
    // nn.Sequential lists every child, equal neighbours included
    let seq = sequential![Linear(4 => 8), ReLU, ReLU, Linear(8 => 2)];
    let mut dyn_seq = DynSequential::new();
    dyn_seq.push(Linear::new(4, 8));
    dyn_seq.push(ReLU);
    dyn_seq.push(ReLU);
    dyn_seq.push(Linear::new(8, 2));
    let empty = DynSequential::new();
    // nn.ModuleList collapses runs of equal children
    let list: Vec<Box<dyn Module>> = vec![
        Box::new(ReLU),
        Box::new(ReLU),
        Box::new(Tanh),
        Box::new(ReLU),
        Box::new(Linear::new(2, 2)),
        Box::new(Linear::new(2, 2)),
        Box::new(Linear::new(2, 2)),
    ];
    let empty_list: Vec<Linear> = Vec::new();
    check_all(&[
        ("sequential", &seq),
        ("sequential", &dyn_seq),
        ("sequential_empty", &empty),
        ("module_list", &list),
        ("module_list_empty", &empty_list),
    ]);
    Ok(())
}

#[test]
fn transformer_encoders_print_as_pytorch() -> Result<()> {
    // as tests/transformer_pytorch.rs builds them: d_model 64, 4 heads, 2 layers
    let encoder = |norm_first| -> Result<TransformerEncoder> {
        let cfg = EncoderLayerConfig {
            dim_feedforward: 128,
            batch_first: true,
            norm_first,
            ..EncoderLayerConfig::new(64, 4)
        };
        TransformerEncoder::new(&TransformerEncoderLayer::new(&cfg)?, 2)
    };
    let layer = TransformerEncoderLayer::new(&EncoderLayerConfig {
        dim_feedforward: 32,
        dropout: 0.0,
        activation: Activation::Gelu,
        ..EncoderLayerConfig::new(16, 2)
    })?;
    check_all(&[
        ("transformer_encoder", &encoder(false)?),
        ("transformer_encoder_norm_first", &encoder(true)?),
        ("transformer_encoder_layer", &layer),
    ]);
    Ok(())
}
