//! A PyTorch training loop ported line by line: the PyTorch line sits as a comment
//! above each Rust line. Parameter groups (no weight decay for biases and norms),
//! AdamW, a linear warmup then cosine decay, gradient clipping by norm, cross-entropy
//! with label smoothing, EMA weights, a checkpoint saved and resumed; then a run that
//! PyTorch started (`tests/fixtures/training/resume.pt`, saved after step 5 of 12 by
//! `tools/make_training_fixtures.py`) continued here to PyTorch's final weights.
//!
//! ```text
//! cargo run --example 10_training
//! ```

use nn::functional as F;
use nn::io::{self, TrainingCheckpoint};
use nn::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, LrScheduler, SequentialLR};
use nn::optim::swa_utils::{get_ema_multi_avg_fn, AveragedModel};
use nn::optim::{from_torch, partition_by_name, AdamW, AdamWConfig, Optimizer, ParamGroup};
use nn::utils::clip_grad_norm;
use nn::{
    Embedding, Forward, LayerNorm, Linear, LoadOptions, Module, ModuleExt, Param, Reduction,
    Result, StateDict, Tensor,
};
use std::path::{Path, PathBuf};

/// Tokens in the vocabulary, positions per sequence, classes.
const VOCAB: usize = 7;
const LEN: usize = 3;
const CLASSES: usize = 5;
/// Training steps of the from-scratch run, warmup steps, and where it saves.
pub const STEPS: usize = 100;
const WARMUP: usize = 5;
const SAVE_AT: usize = 50;

/// The model of `tools/make_training_fixtures.py`: a class per token from its embedding
/// plus a learned position embedding.
#[derive(Module, Clone)]
pub struct Tiny {
    tok: Embedding,
    pos: Param,
    norm: LayerNorm,
    head: Linear,
}

impl Tiny {
    /// PyTorch: `Tiny()` (its `__init__`).
    pub fn new() -> Result<Tiny> {
        Ok(Tiny {
            tok: Embedding::new(VOCAB, 4)?,
            pos: Param::new(Tensor::zeros(&[LEN, 4]))?,
            norm: LayerNorm::new(&[4])?,
            head: Linear::new(4, CLASSES),
        })
    }
}

impl Forward for Tiny {
    // PyTorch: def forward(self, idx): return self.head(self.norm(self.tok(idx) + self.pos))
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        let x = self.tok.forward(idx)?.add(&self.pos.tensor()?)?;
        self.head.forward(&self.norm.forward(&x)?)
    }
}

/// AdamW over two groups: weight decay 0.1, none for biases and norms.
pub fn optimizer(model: &Tiny, lr: f64, betas: (f64, f64)) -> Result<AdamW> {
    // PyTorch: no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or n.startswith("norm.")]
    let (no_decay, decay) = partition_by_name(model.named_parameters(), &["*bias", "norm.*"])?;
    let cfg = AdamWConfig {
        lr,
        betas,
        weight_decay: 0.1,
        ..Default::default()
    };
    // PyTorch: groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    let groups = vec![
        ParamGroup::new(decay, cfg),
        ParamGroup::new(
            no_decay,
            AdamWConfig {
                weight_decay: 0.0,
                ..cfg
            },
        ),
    ];
    // PyTorch: opt = torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=0.1)
    AdamW::with_groups(groups)
}

/// A linear warmup over `warmup` steps, then cosine decay to `eta_min` by `total`.
pub fn scheduler(
    opt: &mut AdamW,
    warmup: usize,
    total: usize,
    eta_min: f64,
) -> Result<SequentialLR> {
    // PyTorch: warm = LinearLR(opt, start_factor=0.2, end_factor=1.0, total_iters=warmup)
    let warm = LinearLR::new(opt, 0.2, 1.0, warmup)?;
    // PyTorch: cos = CosineAnnealingLR(opt, T_max=total - warmup, eta_min=eta_min)
    let cos = CosineAnnealingLR::new(opt, total - warmup, eta_min)?;
    // PyTorch: sched = SequentialLR(opt, [warm, cos], milestones=[warmup])
    SequentialLR::new(opt, vec![Box::new(warm), Box::new(cos)], &[warmup])
}

/// A fixed data set: random tokens, the class of a token is `(token + position) % 5`.
pub fn data(n: usize) -> Result<(Tensor, Tensor)> {
    // PyTorch: x = torch.randint(0, 7, (n, 3))
    let x = Tensor::randint(&[n, LEN], 0, VOCAB as i64)?;
    let y: Vec<i64> = (x.to_vec::<i64>()?.iter().enumerate())
        .map(|(i, t)| (t + (i % LEN) as i64) % CLASSES as i64)
        .collect();
    // PyTorch: y = (x + torch.arange(3)) % 5
    Ok((x, Tensor::from_vec(y, &[n, LEN])?))
}

/// One optimizer step on `(x, y)`; returns the loss before the step.
pub fn train_step(
    model: &Tiny,
    opt: &mut AdamW,
    sched: &mut SequentialLR,
    ema: &mut AveragedModel<Tiny>,
    (x, y): (&Tensor, &Tensor),
) -> Result<f32> {
    // PyTorch: opt.zero_grad()
    opt.zero_grad();
    // PyTorch: logits = model(x).flatten(0, 1)
    let logits = model.forward(x)?.reshape(&[y.numel(), CLASSES])?;
    // PyTorch: loss = F.cross_entropy(logits, y.flatten(), label_smoothing=0.1)
    let loss = F::cross_entropy(
        &logits,
        &y.reshape(&[y.numel()])?,
        None,
        -100,
        Reduction::Mean,
        0.1,
    )?;
    // PyTorch: loss.backward()
    loss.backward()?;
    // PyTorch: torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    clip_grad_norm(&model.parameters(), 1.0, 2.0, false)?;
    // PyTorch: opt.step()
    opt.step()?;
    // PyTorch: sched.step()
    sched.step(opt)?;
    // PyTorch: ema.update_parameters(model)
    ema.update_parameters(model)?;
    loss.item()
}

/// Share of positions whose argmax is the target.
pub fn accuracy(model: &impl Forward, x: &Tensor, y: &Tensor) -> Result<f32> {
    // PyTorch: (model(x).argmax(-1) == y).float().mean().item()
    let hit = model.forward(x)?.argmax(-1, false)?.eq(y)?;
    let hits = hit.to_vec::<bool>()?.iter().filter(|h| **h).count();
    Ok(hits as f32 / y.numel() as f32)
}

/// Trains from scratch for [`STEPS`] steps, saving a checkpoint at [`SAVE_AT`]; then
/// resumes that checkpoint into fresh objects and finishes the run again. Returns both
/// runs' final weights.
pub fn from_scratch(dir: &Path) -> Result<(StateDict, StateDict)> {
    // PyTorch: torch.manual_seed(0)
    nn::manual_seed(0);
    let (x, y) = data(64)?;
    // PyTorch: model = Tiny()
    let model = Tiny::new()?;
    let mut opt = optimizer(&model, 0.1, (0.9, 0.999))?;
    let mut sched = scheduler(&mut opt, WARMUP, STEPS, 0.001)?;
    // PyTorch: ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    let mut ema = AveragedModel::new(&model, get_ema_multi_avg_fn(0.9), false);
    let ckpt = dir.join("mid.ckpt");
    for step in 1..=STEPS {
        let loss = train_step(&model, &mut opt, &mut sched, &mut ema, (&x, &y))?;
        if step % 20 == 0 {
            println!(
                "step {step:>3}  lr {:.4}  loss {loss:.4}  acc {:.2}  ema acc {:.2}",
                opt.group_lr(0).unwrap_or(0.0),
                accuracy(&model, &x, &y)?,
                accuracy(&ema, &x, &y)?
            );
        }
        if step == SAVE_AT {
            // PyTorch: torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
            //                      "scheduler": sched.state_dict(), "step": step}, path)
            TrainingCheckpoint::capture(step as u64, &model, &opt)?
                .with_scheduler(sched.state_dict())
                .save(&ckpt)?;
            // PyTorch: torch.save(ema.state_dict(), ema_path)
            ema.save(dir.join("mid.ema.safetensors"))?;
        }
    }

    // A new process: build everything from code, then load the state.
    let resumed = Tiny::new()?;
    let mut opt2 = optimizer(&resumed, 0.1, (0.9, 0.999))?;
    let mut sched2 = scheduler(&mut opt2, WARMUP, STEPS, 0.001)?;
    let mut ema2 = AveragedModel::new(&resumed, get_ema_multi_avg_fn(0.9), false);
    // PyTorch: ck = torch.load(path); model.load_state_dict(ck["model"]); opt.load_state_dict(ck["optimizer"])
    let ck = TrainingCheckpoint::resume(&ckpt, &resumed, &mut opt2)?;
    // PyTorch: sched.load_state_dict(ck["scheduler"])
    sched2.load_state_dict(&ck.scheduler)?;
    // PyTorch: ema.load_state_dict(torch.load(ema_path))
    ema2.load(dir.join("mid.ema.safetensors"))?;
    for _ in ck.epoch as usize + 1..=STEPS {
        train_step(&resumed, &mut opt2, &mut sched2, &mut ema2, (&x, &y))?;
    }
    Ok((model.state_dict()?, resumed.state_dict()?))
}

/// The fixtures of `tools/make_training_fixtures.py`.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/training"
    ))
    .join(name)
}

/// Loads PyTorch's checkpoint saved after step 5 (model, optimizer and scheduler),
/// runs steps 6 to 12 as PyTorch did and returns the largest difference from
/// PyTorch's final weights.
pub fn resume_pytorch() -> Result<f32> {
    let pt = fixture("resume.pt");
    let fx = io::load_state_dict_file(fixture("resume.safetensors"))?;
    let get = |k: &str| {
        fx.get(k).cloned().ok_or_else(|| nn::Error::MissingKey {
            container: "resume.safetensors".into(),
            key: k.into(),
        })
    };
    let (idx, targets) = (get("idx")?, get("targets")?);
    let model = Tiny::new()?;
    // PyTorch: ck = torch.load("resume.pt"); model.load_state_dict(ck["model"])
    let model_sd = io::select(&io::load_state_dict_file(&pt)?, "model", "");
    model.load_state_dict(&model_sd, &LoadOptions::strict())?;
    let mut opt = optimizer(&model, 0.05, (0.8, 0.99))?;
    let mut sched = scheduler(&mut opt, 3, 12, 0.001)?;
    // PyTorch: opt.load_state_dict(ck["optimizer"])
    opt.load_state_dict(&from_torch(&pt, "optimizer")?)?;
    // PyTorch: sched.load_state_dict(ck["scheduler"])
    sched.load_state_dict(&from_torch(&pt, "scheduler")?)?;
    println!(
        "resume.pt: step {}, lr {:?}",
        sched.last_epoch(),
        sched.get_last_lr()
    );
    // PyTorch: for step in range(sched.last_epoch + 1, 13):
    for step in sched.last_epoch() + 1..=12 {
        // PyTorch: opt.zero_grad()
        opt.zero_grad();
        // PyTorch: loss = F.cross_entropy(model(idx).reshape(12, 5), targets.reshape(12))
        let logits = model.forward(&idx)?.reshape(&[targets.numel(), CLASSES])?;
        let loss = logits.cross_entropy(&targets.reshape(&[targets.numel()])?)?;
        // PyTorch: loss.backward(); opt.step(); sched.step()
        loss.backward()?;
        opt.step()?;
        sched.step(&mut opt)?;
        println!("step {step:>2}  loss {:.4}", loss.item()?);
    }
    let mut worst = 0.0f32;
    for (name, t) in model.state_dict()?.iter() {
        let want = get(&format!("final.{name}"))?.to_vec::<f32>()?;
        for (a, b) in t.to_vec::<f32>()?.iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
    }
    Ok(worst)
}

/// The largest difference between two state dicts with the same keys.
pub fn max_diff(a: &StateDict, b: &StateDict) -> Result<f32> {
    let mut worst = 0.0f32;
    for (name, t) in a.iter() {
        let other = b.get(name).ok_or_else(|| nn::Error::MissingKey {
            container: "state dict".into(),
            key: name.to_string(),
        })?;
        for (x, y) in t.to_vec::<f32>()?.iter().zip(&other.to_vec::<f32>()?) {
            worst = worst.max((x - y).abs());
        }
    }
    Ok(worst)
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nn-10-training-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    println!("-- training from scratch (checkpoint at step {SAVE_AT})");
    let (whole, resumed) = from_scratch(&dir)?;
    println!(
        "resumed at step {SAVE_AT}: final weights differ by {}",
        max_diff(&whole, &resumed)?
    );
    println!("-- continuing PyTorch's run from resume.pt");
    let off = resume_pytorch()?;
    println!("final weights vs PyTorch's: max difference {off:.1e}");
    std::fs::remove_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    Ok(())
}
