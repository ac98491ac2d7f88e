//! The main job: train an MLP on the UCI digits end to end, with checkpoints that resume
//! exactly, a loss curve and a final reload check. `examples/train.rs` is a thin
//! command-line front end over [`run`]; the integration tests call [`run`] too.
//!
//! Determinism: the split, the initial weights and every epoch's batch order derive from
//! [`Config::seed`] only (the batch order of epoch `e` from `(seed, e)`), so a run resumed
//! from the checkpoint of epoch `k` replays epochs `k+1..` exactly as an uninterrupted
//! run does and ends with bit-identical weights.

mod checkpoint;
pub mod cli;
mod model;
pub mod plot;

pub use checkpoint::{Checkpoint, EpochRecord};
pub use model::{Mlp, MlpLayers};

use crate::data::{derive_seed, Digits};
use crate::io::LoadOptions;
use crate::optim::{Adam, Optimizer};
use crate::{Device, Error, Forward, ModuleExt, Result, StateDict, Tensor};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Test images held out of the 1797 (the reference split: 1437 train / 360 test).
pub const TEST_LEN: usize = 360;
/// File name of the checkpoint inside [`Config::out_dir`].
pub const CHECKPOINT: &str = "checkpoint.nn";
/// File name of the loss curve inside [`Config::out_dir`].
pub const PLOT: &str = "loss.svg";

/// Where to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl DeviceSpec {
    /// Opens the device; a clear error where it does not exist or CUDA support is not
    /// compiled in.
    pub fn device(&self) -> Result<Device> {
        match *self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => cuda_device(n),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> Result<Device> {
    crate::cuda::device(n)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: usize) -> Result<Device> {
    Err(Error::DeviceUnavailable(format!(
        "cuda:{n}: this build has no CUDA support; rebuild with `--features cuda` \
         (cargo run --release --features cuda --example train -- --device cuda:{n})"
    )))
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// What to train and where to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Total epochs (a resumed run continues up to this count).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the split, the initial weights and the batch order.
    pub seed: u64,
    /// Where the checkpoint and the plot go.
    pub out_dir: PathBuf,
    /// Continue from the checkpoint in `out_dir`.
    pub resume: bool,
    /// Where to train.
    pub device: DeviceSpec,
}

impl Default for Config {
    /// 20 epochs, batch 64, lr 1e-3, seed 0, `out/train`, CPU.
    fn default() -> Self {
        Config {
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
            out_dir: PathBuf::from("out/train"),
            resume: false,
            device: DeviceSpec::Cpu,
        }
    }
}

impl Config {
    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.out_dir.join(CHECKPOINT)
    }
    /// The loss-curve file.
    pub fn plot_path(&self) -> PathBuf {
        self.out_dir.join(PLOT)
    }
}

/// Correct predictions out of a total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accuracy {
    /// Correctly classified images.
    pub correct: usize,
    /// Images evaluated.
    pub total: usize,
}

impl Accuracy {
    /// `correct / total` (0 when empty).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

impl fmt::Display for Accuracy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2}% ({}/{})",
            100.0 * self.fraction(),
            self.correct,
            self.total
        )
    }
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's mini-batches.
    pub loss: f32,
    /// Test accuracy after the epoch.
    pub test: Accuracy,
    /// Time spent in the epoch's training steps (zero for epochs read from a checkpoint).
    pub time: Duration,
}

/// What the run is about to do (given to [`Observer::start`]).
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The device trained on.
    pub device: String,
    /// Training images.
    pub train_len: usize,
    /// Test images.
    pub test_len: usize,
    /// Epochs already done (from a checkpoint).
    pub start_epoch: usize,
    /// Epochs to reach.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Mini-batches per epoch.
    pub batches_per_epoch: usize,
    /// The model, printed PyTorch-style (input sizes show as `?` until the first forward).
    pub model: String,
}

/// Receives progress; every method has an empty default, and `()` ignores everything.
pub trait Observer {
    /// Before the first epoch.
    fn start(&mut self, _info: &RunInfo) {}
    /// An epoch (1-based) begins with `batches` mini-batches.
    fn epoch_start(&mut self, _epoch: usize, _batches: usize) {}
    /// `done` mini-batches of the epoch are finished; `running_loss` is their mean loss.
    fn batch(&mut self, _done: usize, _running_loss: f32) {}
    /// An epoch ended (its checkpoint is written).
    fn epoch_end(&mut self, _stats: &EpochStats) {}
}

impl Observer for () {}

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Decompressing, parsing and splitting the data set.
    pub data: Duration,
    /// Training steps of this run (forward, loss, backward, optimizer), batching included.
    pub train_loop: Duration,
    /// Per-epoch test evaluation.
    pub eval: Duration,
    /// Writing checkpoints.
    pub checkpoint: Duration,
    /// The whole [`run`] call, data loading and the reload check included.
    pub total: Duration,
}

/// The outcome of [`run`].
#[derive(Debug, Clone)]
pub struct Report {
    /// Epochs that were already done when this run started (0 unless resumed).
    pub start_epoch: usize,
    /// Every epoch so far, resumed ones included.
    pub history: Vec<EpochStats>,
    /// Optimizer steps taken in this run.
    pub steps: usize,
    /// Final accuracy on the training images.
    pub train_accuracy: Accuracy,
    /// Final accuracy on the test images.
    pub test_accuracy: Accuracy,
    /// Test accuracy of a fresh model loaded from the checkpoint file (must equal
    /// `test_accuracy`: [`run`] fails otherwise).
    pub reloaded_test_accuracy: Accuracy,
    /// The final weights (CPU copies, as saved).
    pub weights: StateDict,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// The loss curve (SVG).
    pub plot: PathBuf,
    /// Where the time went.
    pub timings: Timings,
}

/// The model's predictions on `x` compared with `y`, without recording a graph.
pub fn accuracy(model: &impl Forward, x: &Tensor, y: &Tensor) -> Result<Accuracy> {
    let pred = crate::no_grad(|| model.forward(x)?.argmax(-1, false))?.to_vec::<i64>()?;
    let want = y.to_vec::<i64>()?;
    Ok(Accuracy {
        correct: pred.iter().zip(&want).filter(|(a, b)| a == b).count(),
        total: want.len(),
    })
}

/// Trains, evaluates, checkpoints every epoch, plots, and checks that a fresh model
/// loaded from the final checkpoint reproduces the test accuracy exactly.
pub fn run(cfg: &Config, obs: &mut dyn Observer) -> Result<Report> {
    let t_total = Instant::now();
    if cfg.batch_size == 0 {
        return Err(Error::Msg("batch size must be at least 1".into()));
    }
    let device = cfg.device.device()?;
    let t_data = Instant::now();
    let (train, test) = Digits::load()?.split(TEST_LEN, cfg.seed)?;
    let data_time = t_data.elapsed();
    let (x_test, y_test) = test.tensors()?;
    let (x_test, y_test) = (x_test.to_device(&device)?, y_test.to_device(&device)?);
    std::fs::create_dir_all(&cfg.out_dir).map_err(|source| Error::Io {
        path: cfg.out_dir.display().to_string(),
        source,
    })?;
    let ck_path = cfg.checkpoint_path();

    crate::manual_seed(cfg.seed);
    let mut model = Mlp::new();
    let model_repr = model.repr();
    let mut history: Vec<EpochRecord> = Vec::new();
    let opt_state = if cfg.resume {
        if !ck_path.exists() {
            return Err(Error::Msg(format!(
                "--resume: no checkpoint at {} (train without --resume first)",
                ck_path.display()
            )));
        }
        let ck = Checkpoint::load(&ck_path)?;
        if ck.seed != cfg.seed || ck.batch_size != cfg.batch_size {
            return Err(Error::Msg(format!(
                "{}: written with --seed {} --batch-size {}; resume with the same values \
                 (given --seed {} --batch-size {})",
                ck_path.display(),
                ck.seed,
                ck.batch_size,
                cfg.seed,
                cfg.batch_size
            )));
        }
        model.load_state_dict(&ck.model, &LoadOptions::strict())?;
        history = ck.history;
        Some(ck.optimizer)
    } else {
        None
    };
    model.to_device(&device)?;
    let mut opt = Adam::with_lr(model.parameters(), cfg.lr)?;
    if let Some(state) = &opt_state {
        opt.load_state_dict(state)?;
    }

    let start_epoch = history.len();
    let batches_per_epoch = train.len().div_ceil(cfg.batch_size);
    obs.start(&RunInfo {
        device: device.to_string(),
        train_len: train.len(),
        test_len: test.len(),
        start_epoch,
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        batches_per_epoch,
        model: model_repr,
    });

    let mut stats: Vec<EpochStats> = history
        .iter()
        .enumerate()
        .map(|(e, h)| EpochStats {
            epoch: e + 1,
            loss: h.loss,
            test: Accuracy {
                correct: h.test_correct,
                total: test.len(),
            },
            time: Duration::ZERO,
        })
        .collect();
    let mut timings = Timings {
        data: data_time,
        ..Timings::default()
    };
    let mut steps = 0;
    let mut saved = false;
    for epoch in start_epoch + 1..=cfg.epochs {
        obs.epoch_start(epoch, batches_per_epoch);
        let t = Instant::now();
        let mut losses = Vec::with_capacity(batches_per_epoch);
        let mut sum = 0.0f64;
        for batch in train.batches(cfg.batch_size, Some(derive_seed(cfg.seed, epoch as u64)))? {
            let (x, y) = batch?;
            let (x, y) = (x.to_device(&device)?, y.to_device(&device)?);
            let loss = model.forward(&x)?.cross_entropy(&y)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            let l = loss.item()?;
            if !l.is_finite() {
                return Err(Error::Msg(format!(
                    "epoch {epoch}, step {}: the loss is {l}; lower --lr",
                    losses.len() + 1
                )));
            }
            losses.push(l);
            sum += f64::from(l);
            steps += 1;
            obs.batch(losses.len(), (sum / losses.len() as f64) as f32);
        }
        let time = t.elapsed();
        timings.train_loop += time;

        let t = Instant::now();
        let test_acc = accuracy(&model, &x_test, &y_test)?;
        timings.eval += t.elapsed();
        let mean = (sum / losses.len().max(1) as f64) as f32;
        history.push(EpochRecord {
            loss: mean,
            test_correct: test_acc.correct,
            step_losses: losses,
        });

        let t = Instant::now();
        Checkpoint {
            epoch,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            model: model.state_dict()?,
            optimizer: opt.state_dict(),
            history: history.clone(),
        }
        .save(&ck_path)?;
        saved = true;
        timings.checkpoint += t.elapsed();

        let s = EpochStats {
            epoch,
            loss: mean,
            test: test_acc,
            time,
        };
        obs.epoch_end(&s);
        stats.push(s);
    }

    let (x_train, y_train) = train.tensors()?;
    let train_accuracy = accuracy(
        &model,
        &x_train.to_device(&device)?,
        &y_train.to_device(&device)?,
    )?;
    let test_accuracy = accuracy(&model, &x_test, &y_test)?;
    if !saved && !cfg.resume {
        // zero epochs asked: still leave a checkpoint of the initial model
        Checkpoint {
            epoch: 0,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            model: model.state_dict()?,
            optimizer: opt.state_dict(),
            history: Vec::new(),
        }
        .save(&ck_path)?;
    }

    let step_losses: Vec<Vec<f32>> = history.iter().map(|h| h.step_losses.clone()).collect();
    let epoch_losses: Vec<f32> = history.iter().map(|h| h.loss).collect();
    let plot_path = cfg.plot_path();
    std::fs::write(
        &plot_path,
        plot::loss_curve_svg(&step_losses, &epoch_losses),
    )
    .map_err(|source| Error::Io {
        path: plot_path.display().to_string(),
        source,
    })?;

    // the reload check: a fresh lazy model, shapes and values from the file only
    let ck = Checkpoint::load(&ck_path)?;
    let mut fresh = Mlp::new();
    fresh.load_state_dict(&ck.model, &LoadOptions::strict())?;
    fresh.to_device(&device)?;
    let reloaded_test_accuracy = accuracy(&fresh, &x_test, &y_test)?;
    if reloaded_test_accuracy != test_accuracy {
        return Err(Error::Msg(format!(
            "the model reloaded from {} scores {reloaded_test_accuracy} on the test set, \
             the trained one {test_accuracy}",
            ck_path.display()
        )));
    }
    timings.total = t_total.elapsed();
    Ok(Report {
        start_epoch,
        history: stats,
        steps,
        train_accuracy,
        test_accuracy,
        reloaded_test_accuracy,
        weights: ck.model,
        checkpoint: ck_path,
        plot: plot_path,
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_display() {
        let a = Accuracy {
            correct: 349,
            total: 360,
        };
        assert_eq!(a.to_string(), "96.94% (349/360)");
        assert_eq!(Accuracy::default().fraction(), 0.0);
    }
}
