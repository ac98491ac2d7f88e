//! The digits job: train the MLP, evaluate, checkpoint every epoch, plot, and check
//! that a model reloaded from the checkpoint file scores exactly the same. `main.rs`
//! is a command-line front end over [`run`]; `tests/train.rs` calls [`run`] too.
//!
//! Determinism: the split, the initial weights and every epoch's batch order derive from
//! [`Config::seed`] only (the batch order of epoch `e` from `(seed, e)`, through
//! `nn::data`'s `DataLoader` and `RandomSampler`; `--augment`'s crops from `(seed, e,
//! image)`, whatever `--workers`), and the
//! checkpoint ([`nn::io::TrainingCheckpoint`]) holds the model, Adam's state and the
//! generator state, so a run resumed from the checkpoint of epoch `k` replays epochs
//! `k+1..` exactly as an uninterrupted run does and ends with bit-identical weights and
//! a byte-identical checkpoint file.

use crate::digits::{derive_seed, DataError, Digits};
use crate::history::{history_from, history_tensors, EpochRecord};
use crate::model::{ModelKind, Net};
use crate::plot::{self, PlotError};
use crate::recipe::{Recipe, Trainer};
use nn::data::{
    Compose, DataLoader, Dataset, Lambda, RandomCrop, RandomSampler, Sampler, TensorDataset,
    Transformed,
};
use nn::io::{LoadOptions, TrainingCheckpoint};
use nn::{Device, Forward, ModuleExt, StateDict, Tensor};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Why the job stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// `--resume` without a checkpoint to resume from.
    #[error("--resume: no checkpoint at {path} (train without --resume first)")]
    NoCheckpoint {
        /// Where it was looked for.
        path: String,
    },
    /// `--resume` with flags that would not replay the same run.
    #[error(
        "{path}: written with --seed {seed} --batch-size {batch_size}; resume with the same \
         values (given --seed {given_seed} --batch-size {given_batch_size})"
    )]
    ResumeMismatch {
        /// The checkpoint.
        path: String,
        /// Its seed.
        seed: i64,
        /// Its batch size.
        batch_size: i64,
        /// The seed asked for.
        given_seed: u64,
        /// The batch size asked for.
        given_batch_size: usize,
    },
    /// `--resume` with another `--model` than the checkpoint's.
    #[error("{path}: written with --model {written}; resume with the same model (given --model {given})")]
    ModelMismatch {
        /// The checkpoint.
        path: String,
        /// Its model.
        written: String,
        /// The model asked for.
        given: ModelKind,
    },
    /// The checkpoint's loss history does not fit its epoch count.
    #[error("{path}: {msg}")]
    BadHistory {
        /// The checkpoint.
        path: String,
        /// What does not fit.
        msg: String,
    },
    /// `--resume` with `--augment` other than the checkpoint's.
    #[error("{path}: written {}; resume with the same flag", if *written { "with --augment" } else { "without --augment" })]
    AugmentMismatch {
        /// The checkpoint.
        path: String,
        /// Whether it was written with `--augment`.
        written: bool,
    },
    /// A batch size of 0.
    #[error("the batch size must be at least 1")]
    ZeroBatch,
    /// Training diverged.
    #[error("epoch {epoch}, step {step}: the loss is {loss}; lower --lr")]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step of the epoch.
        step: usize,
        /// The loss.
        loss: f32,
    },
    /// The reload check failed.
    #[error(
        "the model reloaded from {path} scores {reloaded} on the test set, the trained one {trained}"
    )]
    ReloadMismatch {
        /// The checkpoint.
        path: String,
        /// Accuracy of the reloaded model.
        reloaded: Accuracy,
        /// Accuracy of the trained model.
        trained: Accuracy,
    },
    /// CUDA asked for in a build without it.
    #[cfg(not(feature = "cuda"))]
    #[error(
        "cuda:{0}: this build has no CUDA support; rebuild with `--features cuda` \
         (cargo run --release --features cuda --example train -- --device cuda:{0})"
    )]
    NoCuda(usize),
    /// The output directory or the plot could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// From the data set.
    #[error(transparent)]
    Data(#[from] DataError),
    /// From the plot.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// From the library.
    #[error(transparent)]
    Nn(#[from] nn::Error),
}

/// Results of the job.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

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
    Ok(nn::cuda::device(n)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: usize) -> Result<Device> {
    Err(JobError::NoCuda(n))
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    /// `cpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<DeviceSpec, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device (cpu, cuda or cuda:N)")),
        }
    }
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
    /// Which classifier to train.
    pub model: ModelKind,
    /// Seed of the split, the initial weights and the batch order.
    pub seed: u64,
    /// Where the checkpoint and the plot go.
    pub out_dir: PathBuf,
    /// Continue from the checkpoint in `out_dir`.
    pub resume: bool,
    /// Where to train.
    pub device: DeviceSpec,
    /// Random-crop augmentation of the training images (`RandomCrop(8, padding=1)`,
    /// seeded per sample by the seed, the epoch and the image: `--augment`).
    pub augment: bool,
    /// Data-loader worker threads (`--workers`; the batches are the same for any count).
    pub workers: usize,
    /// Optimizer, schedule, clipping, label smoothing, averaged weights.
    pub recipe: Recipe,
}

impl Default for Config {
    /// 20 epochs, batch 64, lr 1e-3, seed 0, `out/train`, CPU.
    fn default() -> Self {
        Config {
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            model: ModelKind::Mlp,
            seed: 0,
            out_dir: PathBuf::from("out/train"),
            resume: false,
            device: DeviceSpec::Cpu,
            augment: false,
            workers: 0,
            recipe: Recipe::default(),
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

/// The stats of the epochs a resumed run has already done (their times are not kept).
pub fn resumed_stats(history: &[EpochRecord], test_len: usize) -> Vec<EpochStats> {
    history
        .iter()
        .enumerate()
        .map(|(e, h)| EpochStats {
            epoch: e + 1,
            loss: h.loss,
            test: Accuracy {
                correct: h.test_correct,
                total: test_len,
            },
            time: Duration::ZERO,
        })
        .collect()
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
    #[allow(dead_code)] // read by tests/train.rs
    pub start_epoch: usize,
    /// Every epoch so far, resumed ones included.
    #[allow(dead_code)] // read by tests/train.rs
    pub history: Vec<EpochStats>,
    /// Optimizer steps taken in this run.
    pub steps: usize,
    /// Final accuracy on the training images.
    pub train_accuracy: Accuracy,
    /// Final accuracy on the test images.
    pub test_accuracy: Accuracy,
    /// Final test accuracy of the averaged weights (`--ema`).
    pub ema_test_accuracy: Option<Accuracy>,
    /// Test accuracy of a fresh model loaded from the checkpoint file (must equal
    /// `test_accuracy`: [`run`] fails otherwise).
    pub reloaded_test_accuracy: Accuracy,
    /// The final weights (CPU copies, as saved).
    #[allow(dead_code)] // read by tests/train.rs
    pub weights: StateDict,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// The loss curve (SVG).
    pub plot: PathBuf,
    /// Where the time went.
    pub timings: Timings,
}

/// The seed stream of the augmentation (its crops differ from the split's stream).
const AUGMENT_STREAM: u64 = 0x4155_474d;

/// The training data as the loop sees it: `(images [64], label)` rows, augmented with
/// `--augment` (each image as `[1, 8, 8]` through `RandomCrop(8, padding=1)`).
pub type TrainSet = Box<dyn Dataset<Item = (Tensor, Tensor)>>;

/// The training batches: a [`DataLoader`] over the training split in the order of
/// `sampler` (set its epoch with `set_epoch`). With a [`RandomSampler`] seeded by
/// `cfg.seed`, epoch `e` visits the permutation seeded by `derive_seed(seed, e)`, the
/// order this job has always used, so the default results are unchanged.
pub fn train_loader(
    train: &Digits,
    cfg: &Config,
    sampler: impl Sampler + 'static,
    batch_size: usize,
) -> Result<DataLoader<TrainSet>> {
    let rows = TensorDataset::new(train.tensors()?)?;
    let set: TrainSet = if cfg.augment {
        let crop = Compose(vec![
            Box::new(Lambda(|x: Tensor| x.reshape(&[1, 8, 8]))),
            Box::new(RandomCrop::new(8, 1)),
            Box::new(Lambda(|x: Tensor| x.reshape(&[Digits::FEATURES]))),
        ]);
        Box::new(Transformed::new(
            rows,
            crop,
            derive_seed(cfg.seed, AUGMENT_STREAM),
        ))
    } else {
        Box::new(rows)
    };
    Ok(DataLoader::builder(set)
        .batch_size(batch_size)
        .sampler(sampler)
        .num_workers(cfg.workers)
        .build()?)
}

/// The checkpoint after `epoch` epochs: model, optimizer, generator state, the flags a
/// resume must repeat, and the history.
fn checkpoint(
    epoch: usize,
    model: &Net,
    trainer: &Trainer,
    cfg: &Config,
    history: &[EpochRecord],
) -> Result<TrainingCheckpoint> {
    let mut ck = TrainingCheckpoint::capture(epoch as u64, model, &*trainer.opt)?
        .with_meta("seed", cfg.seed as i64)
        .with_meta("batch_size", cfg.batch_size as i64)
        .with_meta("model", cfg.model.to_string().as_str());
    if cfg.augment {
        ck = ck.with_meta("augment", 1i64);
    }
    ck.tensors = history_tensors(history)?;
    Ok(trainer.save_into(ck, cfg.epochs)?)
}

/// The model's predictions on `x` compared with `y`, without recording a graph.
pub fn accuracy(model: &impl Forward, x: &Tensor, y: &Tensor) -> Result<Accuracy> {
    let pred = nn::no_grad(|| model.forward(x)?.argmax(-1, false))?.to_vec::<i64>()?;
    let want = y.to_vec::<i64>()?;
    Ok(Accuracy {
        correct: pred.iter().zip(&want).filter(|(a, b)| a == b).count(),
        total: want.len(),
    })
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Trains, evaluates, checkpoints every epoch, plots, and checks that a fresh model
/// loaded from the final checkpoint reproduces the test accuracy exactly.
pub fn run(cfg: &Config, obs: &mut dyn Observer) -> Result<Report> {
    let t_total = Instant::now();
    if cfg.batch_size == 0 {
        return Err(JobError::ZeroBatch);
    }
    let device = cfg.device.device()?;
    let t_data = Instant::now();
    let (train, test) = Digits::load()?.split(TEST_LEN, cfg.seed)?;
    let data_time = t_data.elapsed();
    let (x_test, y_test) = test.tensors()?;
    let (x_test, y_test) = (x_test.to_device(&device)?, y_test.to_device(&device)?);
    std::fs::create_dir_all(&cfg.out_dir).map_err(io_err(&cfg.out_dir))?;
    let ck_path = cfg.checkpoint_path();
    let ck_name = ck_path.display().to_string();

    nn::manual_seed(cfg.seed);
    let mut model = Net::new(cfg.model);
    let model_repr = model.repr();
    model.to_device(&device)?;
    let schedule_epochs = cfg.recipe.schedule_epochs.unwrap_or(cfg.epochs);
    let total_steps = train.len().div_ceil(cfg.batch_size) * schedule_epochs;
    let mut trainer = Trainer::new(&cfg.recipe, &model, cfg.lr, total_steps)?;
    let mut history: Vec<EpochRecord> = Vec::new();
    if cfg.resume {
        if !ck_path.exists() {
            return Err(JobError::NoCheckpoint { path: ck_name });
        }
        let ck = TrainingCheckpoint::load(&ck_path)?;
        // checkpoints written before --model existed hold the MLP
        let written = ck.meta_str("model").unwrap_or("mlp").to_string();
        if written != cfg.model.to_string() {
            return Err(JobError::ModelMismatch {
                path: ck_name,
                written,
                given: cfg.model,
            });
        }
        let (seed, batch_size) = (ck.meta_i64("seed")?, ck.meta_i64("batch_size")?);
        if ck.meta_i64("augment").unwrap_or(0) != i64::from(cfg.augment) {
            return Err(JobError::AugmentMismatch {
                path: ck_name,
                written: ck.meta_i64("augment").unwrap_or(0) != 0,
            });
        }
        if seed != cfg.seed as i64 || batch_size != cfg.batch_size as i64 {
            return Err(JobError::ResumeMismatch {
                path: ck_name,
                seed,
                batch_size,
                given_seed: cfg.seed,
                given_batch_size: cfg.batch_size,
            });
        }
        history = history_from(&ck, &ck_name)?;
        ck.restore_into(&model, &mut *trainer.opt)?;
        trainer.restore(&ck, &model, cfg.epochs)?;
    }

    let start_epoch = history.len();
    let mut loader = train_loader(
        &train,
        cfg,
        RandomSampler::new(train.len(), cfg.seed),
        cfg.batch_size,
    )?;
    let batches_per_epoch = loader.len();
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

    let mut stats = resumed_stats(&history, test.len());
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
        loader.set_epoch(epoch as u64);
        for batch in &loader {
            let (x, y) = batch?;
            let (x, y) = (x.to_device(&device)?, y.to_device(&device)?);
            let loss = trainer.step(&model, &x, &y)?;
            let l = loss.item()?;
            if !l.is_finite() {
                return Err(JobError::NonFiniteLoss {
                    epoch,
                    step: losses.len() + 1,
                    loss: l,
                });
            }
            losses.push(l);
            sum += f64::from(l);
            steps += 1;
            obs.batch(losses.len(), (sum / losses.len() as f64) as f32);
        }
        let time = t.elapsed();
        timings.train_loop += time;

        let t = Instant::now();
        // evaluation mode: batch norms use their running statistics
        model.eval();
        let test_acc = accuracy(&model, &x_test, &y_test)?;
        model.train();
        timings.eval += t.elapsed();
        let mean = (sum / losses.len().max(1) as f64) as f32;
        history.push(EpochRecord {
            loss: mean,
            test_correct: test_acc.correct,
            step_losses: losses,
        });

        let t = Instant::now();
        checkpoint(epoch, &model, &trainer, cfg, &history)?.save(&ck_path)?;
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
    model.eval();
    let train_accuracy = accuracy(
        &model,
        &x_train.to_device(&device)?,
        &y_train.to_device(&device)?,
    )?;
    let test_accuracy = accuracy(&model, &x_test, &y_test)?;
    let ema_test_accuracy = match trainer.ema() {
        Some(ema) => Some(accuracy(ema, &x_test, &y_test)?),
        None => None,
    };
    if !saved && !cfg.resume {
        // zero epochs asked: still leave a checkpoint of the initial model
        checkpoint(0, &model, &trainer, cfg, &[])?.save(&ck_path)?;
    }

    let step_losses: Vec<Vec<f32>> = history.iter().map(|h| h.step_losses.clone()).collect();
    let epoch_losses: Vec<f32> = history.iter().map(|h| h.loss).collect();
    let plot_path = cfg.plot_path();
    std::fs::write(
        &plot_path,
        plot::loss_curve_svg(&step_losses, &epoch_losses)?,
    )
    .map_err(io_err(&plot_path))?;

    // the reload check: a fresh lazy model, shapes and values from the file only
    let ck = TrainingCheckpoint::load(&ck_path)?;
    let mut fresh = Net::new(cfg.model);
    fresh.load_state_dict(&ck.model, &LoadOptions::strict())?;
    fresh.to_device(&device)?;
    fresh.eval();
    let reloaded_test_accuracy = accuracy(&fresh, &x_test, &y_test)?;
    if reloaded_test_accuracy != test_accuracy {
        return Err(JobError::ReloadMismatch {
            path: ck_name,
            reloaded: reloaded_test_accuracy,
            trained: test_accuracy,
        });
    }
    timings.total = t_total.elapsed();
    Ok(Report {
        start_epoch,
        history: stats,
        steps,
        train_accuracy,
        test_accuracy,
        ema_test_accuracy,
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
