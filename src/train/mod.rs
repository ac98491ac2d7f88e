//! The main job: train an MLP on the UCI digits end to end, with checkpoints that resume
//! exactly, a loss curve and a final reload check. `examples/train.rs` is a thin
//! command-line front end over [`run`]; the integration tests call [`run`] too.
//!
//! Determinism: the split, the initial weights and every epoch's batch order derive from
//! [`Config::seed`] only (the batch order of epoch `e` from `(seed, e)`), so a run resumed
//! from the checkpoint of epoch `k` replays epochs `k+1..` exactly as an uninterrupted
//! run does and ends with bit-identical weights.

pub mod cli;
mod model;
pub mod plot;
mod shim;

pub use model::{Mlp, MlpLayers};

use crate::data::{derive_seed, Digits};
use crate::{Device, Error, Forward, ModuleExt, Result, StateDict, Tensor};
use shim::{Adam, Optimizer};
use std::fmt;
use std::path::{Path, PathBuf};
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

/// Everything a checkpoint holds: enough to continue training exactly.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Epochs completed.
    pub epoch: usize,
    /// The seed of the run (the batch order of later epochs depends on it).
    pub seed: u64,
    /// The batch size of the run.
    pub batch_size: usize,
    /// The model's state dict.
    pub model: StateDict,
    /// The optimizer's state dict.
    pub optimizer: StateDict,
    /// One record per finished epoch.
    pub history: Vec<EpochRecord>,
}

/// What a checkpoint remembers of one finished epoch (for the report and the plot).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// Mean training loss.
    pub loss: f32,
    /// Correctly classified test images after the epoch.
    pub test_correct: usize,
    /// Every mini-batch loss, in order.
    pub step_losses: Vec<f32>,
}

fn scalar_i64(v: i64) -> Result<Tensor> {
    Tensor::from_vec(vec![v], &[])
}

fn read_i64(sd: &StateDict, key: &str, path: &Path) -> Result<i64> {
    sd.get(key)
        .map(|t| t.to_vec::<i64>())
        .transpose()?
        .and_then(|v| v.first().copied())
        .ok_or_else(|| Error::Format {
            path: path.display().to_string(),
            msg: format!("checkpoint lacks `{key}`"),
        })
}

impl Checkpoint {
    /// Flattens into one state dict: `epoch`, `seed`, `batch_size`, `model.*`,
    /// `optimizer.*`, `history.*`.
    pub fn to_state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        sd.insert("epoch", scalar_i64(self.epoch as i64)?);
        sd.insert("seed", scalar_i64(self.seed as i64)?);
        sd.insert("batch_size", scalar_i64(self.batch_size as i64)?);
        for (k, t) in self.model.iter() {
            sd.insert(format!("model.{k}"), t.clone());
        }
        for (k, t) in self.optimizer.iter() {
            sd.insert(format!("optimizer.{k}"), t.clone());
        }
        let n = self.history.len();
        let loss: Vec<f32> = self.history.iter().map(|h| h.loss).collect();
        let correct: Vec<i64> = self.history.iter().map(|h| h.test_correct as i64).collect();
        // every epoch has the same number of steps (the batch size is fixed for a run)
        let steps = self.history.first().map_or(0, |h| h.step_losses.len());
        if self.history.iter().any(|h| h.step_losses.len() != steps) {
            return Err(Error::Msg(
                "checkpoint: epochs with different numbers of steps".into(),
            ));
        }
        let step_loss: Vec<f32> = self
            .history
            .iter()
            .flat_map(|h| h.step_losses.iter().copied())
            .collect();
        sd.insert("history.loss", Tensor::from_vec(loss, &[n])?);
        sd.insert("history.test_correct", Tensor::from_vec(correct, &[n])?);
        sd.insert(
            "history.step_loss",
            Tensor::from_vec(step_loss, &[n, steps])?,
        );
        Ok(sd)
    }

    /// Reads back [`Checkpoint::to_state_dict`]; `path` names the file in errors.
    pub fn from_state_dict(sd: &StateDict, path: &Path) -> Result<Checkpoint> {
        let bad = |msg: String| Error::Format {
            path: path.display().to_string(),
            msg,
        };
        let epoch = usize::try_from(read_i64(sd, "epoch", path)?)
            .map_err(|_| bad("negative epoch".into()))?;
        let seed = read_i64(sd, "seed", path)? as u64;
        let batch_size = usize::try_from(read_i64(sd, "batch_size", path)?)
            .map_err(|_| bad("negative batch size".into()))?;
        let sub = |prefix: &str| -> StateDict {
            sd.iter()
                .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
                .collect()
        };
        let get = |k: &str| {
            sd.get(k)
                .ok_or_else(|| bad(format!("checkpoint lacks `{k}`")))
        };
        let loss = get("history.loss")?.to_vec::<f32>()?;
        let correct = get("history.test_correct")?.to_vec::<i64>()?;
        let steps_t = get("history.step_loss")?;
        let steps = steps_t.to_vec::<f32>()?;
        let per = steps_t.shape().get(1).copied().unwrap_or(0);
        if loss.len() != epoch || correct.len() != epoch || steps.len() != epoch * per {
            return Err(bad(format!(
                "history covers {} epochs, the checkpoint says {epoch}",
                loss.len()
            )));
        }
        let history = (0..epoch)
            .map(|e| EpochRecord {
                loss: loss[e],
                test_correct: correct[e].max(0) as usize,
                step_losses: steps[e * per..(e + 1) * per].to_vec(),
            })
            .collect();
        Ok(Checkpoint {
            epoch,
            seed,
            batch_size,
            model: sub("model."),
            optimizer: sub("optimizer."),
            history,
        })
    }

    /// Writes the checkpoint through the crash-safe writer (the previous file survives a
    /// crash during the write).
    pub fn save(&self, path: &Path) -> Result<()> {
        shim::save(path, &self.to_state_dict()?)
    }

    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        Self::from_state_dict(&shim::load(path)?, path)
    }
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
        shim::load_state_dict(&model, &ck.model)?;
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
    shim::load_state_dict(&fresh, &ck.model)?;
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

    fn sample() -> Result<Checkpoint> {
        let mut model = StateDict::new();
        model.insert("layers.0.weight", Tensor::rand(&[3, 2]));
        let mut optimizer = StateDict::new();
        optimizer.insert("step", scalar_i64(7)?);
        Ok(Checkpoint {
            epoch: 2,
            seed: u64::MAX,
            batch_size: 64,
            model,
            optimizer,
            history: vec![
                EpochRecord {
                    loss: 2.0,
                    test_correct: 100,
                    step_losses: vec![2.5, 1.5],
                },
                EpochRecord {
                    loss: 1.0,
                    test_correct: 200,
                    step_losses: vec![1.2, 0.8],
                },
            ],
        })
    }

    #[test]
    fn checkpoint_round_trips_through_a_state_dict() -> Result<()> {
        let ck = sample()?;
        let sd = ck.to_state_dict()?;
        let keys: Vec<&str> = sd.keys().collect();
        assert!(keys.contains(&"model.layers.0.weight") && keys.contains(&"optimizer.step"));
        let back = Checkpoint::from_state_dict(&sd, Path::new("ck"))?;
        assert_eq!((back.epoch, back.seed, back.batch_size), (2, u64::MAX, 64));
        assert_eq!(back.history, ck.history);
        assert_eq!(back.model.keys().collect::<Vec<_>>(), ["layers.0.weight"]);
        assert_eq!(
            back.model
                .get("layers.0.weight")
                .map(|t| t.to_vec::<f32>())
                .transpose()?,
            ck.model
                .get("layers.0.weight")
                .map(|t| t.to_vec::<f32>())
                .transpose()?
        );
        Ok(())
    }

    #[test]
    fn inconsistent_checkpoints_are_errors() -> Result<()> {
        let sd = sample()?.to_state_dict()?;
        let without = |key: &str| -> StateDict {
            sd.iter()
                .filter(|(k, _)| *k != key)
                .map(|(k, t)| (k.to_string(), t.clone()))
                .collect()
        };
        for key in ["epoch", "seed", "history.loss", "history.step_loss"] {
            let e = Checkpoint::from_state_dict(&without(key), Path::new("ck.nn"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("ck.nn") && e.contains(key), "{key}: {e}");
        }
        let mut wrong = sd.clone();
        wrong.insert("epoch", scalar_i64(3)?);
        assert!(Checkpoint::from_state_dict(&wrong, Path::new("ck")).is_err());
        let mut ragged = sample()?;
        ragged.history[1].step_losses.pop();
        assert!(ragged.to_state_dict().is_err());
        Ok(())
    }

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
