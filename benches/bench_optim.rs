//! The optimizer step of the W2 model (784-1024-1024-10 MLP, 1.87 M parameters):
//! `clip_grad_norm` (2-norm, max 1) then AdamW with two parameter groups (weights decayed, biases not) and a warmup + cosine
//! schedule, on gradients already computed. Medians after a warm-up, printed as JSON
//! lines like the other benchmarks; `tools/bench_optim_torch.py` prints PyTorch's
//! (`torch.optim.AdamW`, its default `foreach`).
//!
//! Run beside PyTorch, interleaved, on an otherwise idle machine:
//!
//! ```text
//! cargo bench --bench bench_optim --no-run
//! for i in 1 2 3; do
//!   cargo bench --bench bench_optim
//!   /work/venv-torch/bin/python tools/bench_optim_torch.py --threads 2
//! done
//! ```

use nn::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, LrScheduler, SequentialLR};
use nn::optim::{partition_by_name, AdamW, AdamWConfig, Optimizer, ParamGroup};
use nn::{Linear, ModuleExt, ReLU, Result, Sequential};

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::Plan;

fn main() -> Result<()> {
    nn::manual_seed(0);
    let net = Sequential::new((
        Linear::new(784, 1024),
        ReLU,
        Linear::new(1024, 1024),
        ReLU,
        Linear::new(1024, 10),
    ));
    let (no_decay, decay) = partition_by_name(net.named_parameters(), &["*.bias"])?;
    let cfg = AdamWConfig {
        lr: 1e-3,
        weight_decay: 0.01,
        ..Default::default()
    };
    let mut opt = AdamW::with_groups(vec![
        ParamGroup::new(decay, cfg),
        ParamGroup::new(
            no_decay,
            AdamWConfig {
                weight_decay: 0.0,
                ..cfg
            },
        ),
    ])?;
    let warm = LinearLR::new(&mut opt, 0.1, 1.0, 100)?;
    let cos = CosineAnnealingLR::new(&mut opt, 100_000, 0.0)?;
    let mut sched = SequentialLR::new(&mut opt, vec![Box::new(warm), Box::new(cos)], &[100])?;
    for p in opt.params() {
        p.set_grad(Some(nn::Tensor::randn(&p.shape().unwrap_or_default())));
    }
    let params = opt.params().to_vec();
    let (m, b) = Plan::after_ms(500, 50).run(|| {
        // max_norm 1: after the first step the norm sits at ~1 - 1e-6, so every step
        // scales the gradients, as PyTorch's does
        nn::utils::clip_grad_norm(&params, 1.0, 2.0, false)?;
        opt.step()?;
        sched.step(&mut opt)
    })?;
    println!(
        "{{\"peer\": \"nn\", \"w\": \"optim\", \"variant\": \"clip_grad_norm + AdamW 2 groups + warmup/cosine, W2 params\", \"median\": {m:.6}, \"min\": {b:.6}}}"
    );
    Ok(())
}
