//! W7 / W7i: one `TransformerEncoderLayer` (d_model 256, 4 heads, ff 1024, batch_first,
//! PyTorch's defaults otherwise: dropout 0.1, ReLU, post-norm) on a batch of 16 sequences
//! of 64 tokens, on the CPU. W7 is a training-mode forward + sum + backward; W7i the
//! eval-mode forward under `no_grad` (inference latency). Medians after a warm-up.
//!
//! Run beside PyTorch, interleaved, on an otherwise idle machine:
//!
//! ```text
//! cargo bench --bench bench_transformer --no-run
//! for i in 1 2 3; do
//!   cargo bench --bench bench_transformer
//!   /work/venv-torch/bin/python tools/bench_transformer_torch.py --threads 2
//! done
//! ```

use nn::layers::EncoderLayerConfig;
use nn::{Forward, ModuleExt, Result, Tensor, TransformerEncoderLayer};

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::Plan;

/// Median and best seconds per call of `f`, `reps` timed calls after a 500 ms warm-up.
fn time(reps: usize, f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    Plan::after_ms(500, reps).run(f)
}

fn main() -> Result<()> {
    nn::manual_seed(0);
    let cfg = EncoderLayerConfig {
        dim_feedforward: 1024,
        batch_first: true,
        ..EncoderLayerConfig::new(256, 4)
    };
    let mut layer = TransformerEncoderLayer::new(&cfg)?;
    let x = Tensor::randn(&[16, 64, 256]);
    let (m, b) = time(20, || {
        layer.zero_grad();
        let xg = x.with_requires_grad(true);
        layer.forward(&xg)?.sum()?.backward()
    })?;
    println!(
        "{{\"peer\": \"nn\", \"w\": \"w7\", \"variant\": \"encoder layer fwd+sum+bwd train\", \"median\": {m:.6}, \"min\": {b:.6}}}"
    );
    layer.eval();
    let (m, b) = time(30, || nn::no_grad(|| layer.forward(&x).map(drop)))?;
    println!(
        "{{\"peer\": \"nn\", \"w\": \"w7i\", \"variant\": \"encoder layer fwd eval no_grad\", \"median\": {m:.6}, \"min\": {b:.6}}}"
    );
    Ok(())
}
