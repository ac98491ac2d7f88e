//! A small causal transformer trained end to end: it learns to reverse a sequence of
//! digits, a task a model can only solve by attending to the right earlier position.
//!
//! Each example is `d1 .. dN SEP rN .. r2` (length 2N) and the model predicts, at
//! positions N .. 2N-1, the reversed digits `rN .. r1` (teacher forcing). Token and
//! learned position embeddings, a 2-layer `TransformerEncoder` with a causal mask, a
//! linear head; Adam; a checkpoint through the crash-safe writer every evaluation; a
//! progress bar on a terminal. Held-out sequences (never trained on) are decoded
//! greedily, one token at a time, and scored on the whole sequence.
//!
//! ```text
//! cargo run --release --example 08_transformer [-- --steps 500 --out DIR]
//! ```

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nn::io::TrainingCheckpoint;
use nn::layers::{causal_mask, EncoderLayerConfig};
use nn::{
    Adam, AdamConfig, Embedding, Forward, Linear, Module, ModuleExt, Optimizer, Result, Tensor,
    TransformerEncoder, TransformerEncoderLayer,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Digits per sequence.
const N: usize = 6;
/// The separator token after the digits (0-9 are the digits).
const SEP: i64 = 10;
const VOCAB: usize = 11;

/// What a run does; `Config::default()` is the example's run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Evaluate and checkpoint every this many steps (and at the end).
    pub eval_every: usize,
    /// Held-out sequences.
    pub held_out: usize,
    /// Where `checkpoint.nn` goes.
    pub out_dir: PathBuf,
    /// Seed of the model, the data and the held-out set.
    pub seed: u64,
    /// Draw a progress bar (on a terminal) and print progress lines.
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            steps: 500,
            batch: 64,
            lr: 2e-3,
            eval_every: 100,
            held_out: 500,
            out_dir: std::env::temp_dir().join("nn-08-transformer"),
            seed: 0,
            verbose: true,
        }
    }
}

/// Token + position embeddings, a causal encoder stack and a linear head.
#[derive(Module)]
pub struct Reverser {
    tok_emb: Embedding,
    pos_emb: Embedding,
    encoder: TransformerEncoder,
    head: Linear,
}

impl Reverser {
    /// `d_model` 64, 4 heads, feed-forward 128, 2 layers, positions for 2N tokens.
    pub fn new() -> Result<Reverser> {
        let cfg = EncoderLayerConfig {
            dim_feedforward: 128,
            dropout: 0.0,
            batch_first: true,
            norm_first: true,
            ..EncoderLayerConfig::new(64, 4)
        };
        let encoder = TransformerEncoder::new(&TransformerEncoderLayer::new(&cfg)?, 2)?;
        // PyTorch's clones start equal; give each layer its own draw
        for l in &encoder.layers {
            l.self_attn
                .in_proj_weight
                .reinit(&nn::Init::xavier_uniform())?;
            l.linear1.reset_parameters()?;
            l.linear2.reset_parameters()?;
        }
        Ok(Reverser {
            tok_emb: Embedding::new(VOCAB, 64)?,
            pos_emb: Embedding::new(2 * N, 64)?,
            encoder,
            head: Linear::new(64, VOCAB),
        })
    }
}

impl Forward for Reverser {
    /// Tokens `[B, T]` (int64) to next-token logits `[B, T, VOCAB]`.
    fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        let t = tokens.shape().last().copied().unwrap_or(0);
        let pos = self.pos_emb.forward(&Tensor::arange(0, t as i64))?;
        let x = self.tok_emb.forward(tokens)?.add(&pos)?;
        let h = self.encoder.forward(&(x, Some(causal_mask(t)?), None))?;
        self.head.forward(&h)
    }
}

/// `count` digit sequences from `rng`, none of them in `exclude`.
fn sequences(rng: &mut StdRng, count: usize, exclude: &HashSet<Vec<i64>>) -> Vec<Vec<i64>> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let s: Vec<i64> = (0..N).map(|_| rng.random_range(0..10)).collect();
        if !exclude.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Model inputs `[B, 2N]` (digits, SEP, reversed digits but the last) and targets
/// `[B * N]` (the reversed digits).
fn batch(seqs: &[Vec<i64>]) -> Result<(Tensor, Tensor)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for s in seqs {
        let rev: Vec<i64> = s.iter().rev().copied().collect();
        x.extend_from_slice(s);
        x.push(SEP);
        x.extend_from_slice(&rev[..N - 1]);
        y.extend_from_slice(&rev);
    }
    Ok((
        Tensor::from_vec(x, &[seqs.len(), 2 * N])?,
        Tensor::from_vec(y, &[seqs.len() * N])?,
    ))
}

/// Mean cross-entropy of the predictions at the answer positions.
fn loss(model: &Reverser, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let logits = model.forward(x)?.narrow(1, N, N)?;
    logits.reshape(&[y.numel(), VOCAB])?.cross_entropy(y)
}

/// Greedy decoding: the model's answer for each sequence, one token at a time.
pub fn decode(model: &Reverser, seqs: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
    nn::no_grad(|| {
        let mut cur: Vec<Vec<i64>> = seqs
            .iter()
            .map(|s| s.iter().copied().chain([SEP]).collect())
            .collect();
        for _ in 0..N {
            let t = cur[0].len();
            let flat: Vec<i64> = cur.iter().flatten().copied().collect();
            let logits = model.forward(&Tensor::from_vec(flat, &[cur.len(), t])?)?;
            let next = logits
                .narrow(1, t - 1, 1)?
                .argmax(-1, false)?
                .to_vec::<i64>()?;
            for (c, n) in cur.iter_mut().zip(next) {
                c.push(n);
            }
        }
        Ok(cur.into_iter().map(|c| c[N + 1..].to_vec()).collect())
    })
}

/// The fraction of `seqs` whose whole reversal the model decodes correctly.
pub fn sequence_accuracy(model: &Reverser, seqs: &[Vec<i64>]) -> Result<f64> {
    let answers = decode(model, seqs)?;
    let right = seqs
        .iter()
        .zip(&answers)
        .filter(|(s, a)| s.iter().rev().eq(a.iter()))
        .count();
    Ok(right as f64 / seqs.len().max(1) as f64)
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The model after the last step.
    pub model: Reverser,
    /// Mean training loss of the first and the last `eval_every` steps.
    pub first_loss: f32,
    /// See `first_loss`.
    pub last_loss: f32,
    /// Held-out sequence accuracy at the end.
    pub accuracy: f64,
    /// The held-out set.
    pub held_out: Vec<Vec<i64>>,
    /// Where the last checkpoint went.
    pub checkpoint: PathBuf,
}

impl std::fmt::Debug for Reverser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Trains with `cfg`, evaluating and checkpointing along the way.
pub fn run(cfg: &Config) -> Result<Outcome> {
    nn::manual_seed(cfg.seed);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let held_out = sequences(
        &mut StdRng::seed_from_u64(cfg.seed ^ 0x5eed),
        cfg.held_out,
        &HashSet::new(),
    );
    let exclude: HashSet<Vec<i64>> = held_out.iter().cloned().collect();
    let model = Reverser::new()?;
    let mut opt = Adam::new(
        model.parameters(),
        AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        },
    )?;
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| nn::Error::io(&cfg.out_dir, e))?;
    let checkpoint = cfg.out_dir.join("checkpoint.nn");
    if cfg.verbose {
        println!("{model}");
        println!(
            "{} parameters; reverse {N} digits; {} steps of {} sequences; {} held out",
            model.num_parameters(),
            cfg.steps,
            cfg.batch,
            held_out.len()
        );
    }
    let bar = if cfg.verbose && std::io::stderr().is_terminal() {
        let b = ProgressBar::with_draw_target(Some(cfg.steps as u64), ProgressDrawTarget::stderr());
        if let Ok(s) =
            ProgressStyle::with_template("[{bar:30.cyan/blue}] {pos}/{len} loss {msg} ({elapsed})")
        {
            b.set_style(s.progress_chars("=> "));
        }
        Some(b)
    } else {
        None
    };
    let (mut first_loss, mut window, mut last_loss) = (None, Vec::new(), f32::NAN);
    let mut accuracy = 0.0;
    let start = Instant::now();
    for step in 1..=cfg.steps {
        let (x, y) = batch(&sequences(&mut rng, cfg.batch, &exclude))?;
        opt.zero_grad();
        let l = loss(&model, &x, &y)?;
        l.backward()?;
        opt.step()?;
        window.push(l.item()?);
        if let Some(b) = &bar {
            b.set_position(step as u64);
            b.set_message(format!("{:.4}", window.last().copied().unwrap_or(f32::NAN)));
        }
        if step % cfg.eval_every == 0 || step == cfg.steps {
            last_loss = window.iter().sum::<f32>() / window.len().max(1) as f32;
            first_loss.get_or_insert(last_loss);
            window.clear();
            accuracy = sequence_accuracy(&model, &held_out)?;
            TrainingCheckpoint::capture(step as u64, &model, &opt)?
                .with_meta("seed", cfg.seed as i64)
                .save(&checkpoint)?;
            if cfg.verbose {
                let line = format!(
                    "step {step:>4}  loss {last_loss:.4}  held-out sequence accuracy {:.1}%  ({:.1} s)",
                    accuracy * 100.0,
                    start.elapsed().as_secs_f64()
                );
                match &bar {
                    Some(b) => b.println(line),
                    None => println!("{line}"),
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(Outcome {
        model,
        first_loss: first_loss.unwrap_or(f32::NAN),
        last_loss,
        accuracy,
        held_out,
        checkpoint,
    })
}

fn arg<T: std::str::FromStr>(args: &[String], flag: &str) -> Option<T> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.parse().ok()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut cfg = Config::default();
    if let Some(s) = arg(&args, "--steps") {
        cfg.steps = s;
    }
    if let Some(d) = arg::<String>(&args, "--out") {
        cfg.out_dir = d.into();
    }
    let start = Instant::now();
    let out = run(&cfg)?;
    println!(
        "trained in {:.1} s; checkpoint {}",
        start.elapsed().as_secs_f64(),
        out.checkpoint.display()
    );
    let some = &out.held_out[..5];
    for (s, a) in some.iter().zip(decode(&out.model, some)?) {
        let show = |v: &[i64]| v.iter().map(|d| d.to_string()).collect::<String>();
        let ok = if s.iter().rev().eq(a.iter()) {
            "ok"
        } else {
            "WRONG"
        };
        println!("  {} -> {}  {ok}", show(s), show(&a));
    }
    println!("held-out sequence accuracy {:.1}%", out.accuracy * 100.0);
    Ok(())
}
