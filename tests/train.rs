//! The main job's guarantees on short runs: a resumed run ends with the same weights as
//! an uninterrupted one, a model reloaded from the checkpoint file scores exactly the
//! same, and bad requests are errors. Everything goes through `job::run`, the function
//! `examples/train/main.rs` calls: the example's files are compiled into this test (their
//! own unit tests run here too), not copied.

// the example's modules; the binary uses what this test does not, and the reverse
#[allow(dead_code)]
#[path = "../examples/train/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "../examples/train/digits.rs"]
mod digits;
#[allow(dead_code)]
#[path = "../examples/train/history.rs"]
mod history;
#[allow(dead_code)]
#[path = "../examples/train/job.rs"]
mod job;
#[allow(dead_code)]
#[path = "../examples/train/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../examples/train/plot.rs"]
mod plot;
#[allow(dead_code)]
#[path = "../examples/train/recipe.rs"]
mod recipe;

use digits::Digits;
use job::{accuracy, Config, DeviceSpec, JobError, Result};
use model::{Cnn, Mlp, ModelKind};
use nn::io::TrainingCheckpoint;
use std::path::{Path, PathBuf};

/// A fresh scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nn-train-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A short run: 3 epochs of 12 steps.
/// Runs of the job in one process share `nn::manual_seed`'s process-wide default seed,
/// which the checkpoint records: tests that run it take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static JOB: std::sync::Mutex<()> = std::sync::Mutex::new(());
    JOB.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn short(out: &Scratch, epochs: usize) -> Config {
    Config {
        epochs,
        batch_size: 128,
        lr: 3e-3,
        seed: 11,
        out_dir: out.0.clone(),
        ..Config::default()
    }
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|source| JobError::Io {
        path: p.display().to_string(),
        source,
    })
}

/// Every entry's exact bits (f32 as bit patterns, i64 as is).
fn bits(sd: &nn::StateDict) -> nn::Result<Vec<(String, Vec<u64>)>> {
    sd.iter()
        .map(|(k, t)| {
            let v = match t.dtype() {
                nn::DType::F32 => t
                    .to_vec::<f32>()?
                    .iter()
                    .map(|x| u64::from(x.to_bits()))
                    .collect(),
                nn::DType::I64 => t.to_vec::<i64>()?.iter().map(|&x| x as u64).collect(),
                _ => t
                    .to_host()?
                    .to_le_bytes()
                    .iter()
                    .map(|&b| u64::from(b))
                    .collect(),
            };
            Ok((k.to_string(), v))
        })
        .collect()
}

#[test]
fn resume_equals_uninterrupted() -> Result<()> {
    let _serial = serial();
    let (a, b) = (Scratch::new("straight"), Scratch::new("resumed"));
    let straight = job::run(&short(&a, 3), &mut ())?;

    // "crash" after epoch 1, then resume up to epoch 3
    let first = job::run(&short(&b, 1), &mut ())?;
    assert_eq!(first.history.len(), 1);
    let resumed = job::run(
        &Config {
            resume: true,
            ..short(&b, 3)
        },
        &mut (),
    )?;
    assert_eq!((resumed.start_epoch, resumed.steps), (1, 2 * 12));
    assert_eq!(straight.steps, 3 * 12);

    assert_eq!(bits(&resumed.weights)?, bits(&straight.weights)?);
    let losses = |r: &job::Report| {
        r.history
            .iter()
            .map(|s| s.loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&resumed), losses(&straight));
    assert_eq!(resumed.test_accuracy, straight.test_accuracy);
    let (ca, cb) = (
        TrainingCheckpoint::load(a.0.join(job::CHECKPOINT))?,
        TrainingCheckpoint::load(b.0.join(job::CHECKPOINT))?,
    );
    assert_eq!(ca.epoch, 3);
    assert!(!ca.optimizer.is_empty());
    assert_eq!(bits(&ca.optimizer)?, bits(&cb.optimizer)?);
    assert_eq!(ca.rng, cb.rng);
    // nothing in a checkpoint depends on how the run got there: the files are identical
    assert!(read(&straight.checkpoint)? == read(&resumed.checkpoint)?);
    // the plot covers all three epochs on both sides
    let svg = String::from_utf8_lossy(&read(&resumed.plot)?).into_owned();
    assert_eq!(svg.matches("<circle").count(), 3);
    Ok(())
}

/// The recipe flags of `--optimizer adamw --scheduler cosine --warmup-steps 20
/// --schedule-epochs 3 --clip-grad-norm 1.0 --label-smoothing 0.1 --ema 0.9` (a decay for
/// 36 steps).
fn recipe() -> recipe::Recipe {
    recipe::Recipe {
        optimizer: recipe::OptimizerKind::AdamW,
        scheduler: recipe::SchedulerKind::Cosine,
        warmup_steps: 20,
        schedule_epochs: Some(3),
        clip_grad_norm: Some(1.0),
        label_smoothing: 0.1,
        ema: Some(0.9),
        ..recipe::Recipe::default()
    }
}

#[test]
fn resume_with_the_recipe_flags_equals_uninterrupted() -> Result<()> {
    let _serial = serial();
    let (a, b) = (
        Scratch::new("recipe-straight"),
        Scratch::new("recipe-resumed"),
    );
    let cfg = |dir: &Scratch, epochs| Config {
        recipe: recipe(),
        ..short(dir, epochs)
    };
    let straight = job::run(&cfg(&a, 3), &mut ())?;
    job::run(&cfg(&b, 1), &mut ())?;
    let resumed = job::run(
        &Config {
            resume: true,
            ..cfg(&b, 3)
        },
        &mut (),
    )?;
    assert_eq!(bits(&resumed.weights)?, bits(&straight.weights)?);
    let (ca, cb) = (
        TrainingCheckpoint::load(&straight.checkpoint)?,
        TrainingCheckpoint::load(&resumed.checkpoint)?,
    );
    // the schedule's state (SequentialLR of LinearLR and CosineAnnealingLR) and the
    // average travel in the checkpoint
    assert_eq!(
        ca.scheduler
            .get("last_epoch")
            .map(|t| t.to_dtype(nn::DType::F32)?.to_vec::<f32>())
            .transpose()?,
        Some(vec![36.0])
    );
    assert!(ca.tensors.get("ema.n_averaged").is_some());
    assert_eq!(bits(&ca.scheduler)?, bits(&cb.scheduler)?);
    assert_eq!(bits(&ca.tensors)?, bits(&cb.tensors)?);
    assert!(read(&straight.checkpoint)? == read(&resumed.checkpoint)?);
    assert_eq!(resumed.ema_test_accuracy, straight.ema_test_accuracy);
    let ema = straight.ema_test_accuracy.map_or(0.0, |a| a.fraction());
    assert!(ema > 0.5, "{:?}", straight.ema_test_accuracy);
    assert!(
        straight.test_accuracy.fraction() > 0.5,
        "{}",
        straight.test_accuracy
    );

    // other flags than the checkpoint's: an error naming both
    let other = job::run(
        &Config {
            resume: true,
            recipe: recipe::Recipe {
                schedule_epochs: None,
                ..recipe()
            },
            ..short(&b, 4)
        },
        &mut (),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        other.contains("--schedule-epochs 3") && other.contains("--schedule-epochs 4"),
        "{other}"
    );
    Ok(())
}

#[test]
fn reload_reproduces_accuracy() -> Result<()> {
    let _serial = serial();
    let dir = Scratch::new("reload");
    let r = job::run(&short(&dir, 2), &mut ())?;
    assert_eq!(r.reloaded_test_accuracy, r.test_accuracy);
    assert!(r.test_accuracy.fraction() > 0.5, "{}", r.test_accuracy);
    assert_eq!(r.test_accuracy.total, job::TEST_LEN);

    // by hand, as a user would: a fresh lazy model, weights from the file
    let ck = TrainingCheckpoint::load(&r.checkpoint)?;
    let fresh = Mlp::new();
    for (name, p) in nn::ModuleExt::named_parameters(&fresh) {
        let t = ck.model.get(&name);
        assert!(t.is_some(), "the checkpoint lacks {name}");
        if let Some(t) = t {
            p.set_data(t)?;
        }
    }
    let (_, test) = Digits::load()?.split(job::TEST_LEN, 11)?;
    let (x, y) = test.tensors()?;
    assert_eq!(accuracy(&fresh, &x, &y)?, r.test_accuracy);
    Ok(())
}

#[test]
fn bad_requests_are_errors() -> Result<()> {
    let _serial = serial();
    let dir = Scratch::new("bad");
    let msg = |cfg: &Config| {
        job::run(cfg, &mut ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let none = msg(&Config {
        resume: true,
        ..short(&dir, 1)
    });
    assert!(none.contains(job::CHECKPOINT), "{none}");
    job::run(&short(&dir, 1), &mut ())?;
    let other_seed = msg(&Config {
        resume: true,
        seed: 12,
        ..short(&dir, 2)
    });
    assert!(other_seed.contains("--seed 11"), "{other_seed}");
    // no GPU here (or no CUDA support compiled in): a clear error naming the device
    if DeviceSpec::Cuda(0).device().is_err() {
        let gpu = msg(&Config {
            device: DeviceSpec::Cuda(0),
            ..short(&dir, 1)
        });
        assert!(gpu.contains("cuda:0"), "{gpu}");
        if !cfg!(feature = "cuda") {
            assert!(gpu.contains("--features cuda"), "{gpu}");
        }
    }
    Ok(())
}

#[test]
fn defaults_reach_95_percent() -> Result<()> {
    let _serial = serial();
    let dir = Scratch::new("defaults");
    let cfg = Config {
        out_dir: dir.0.clone(),
        ..Config::default()
    };
    let r = job::run(&cfg, &mut ())?;
    assert_eq!(r.history.len(), 20);
    assert!(r.test_accuracy.fraction() >= 0.95, "{}", r.test_accuracy);
    Ok(())
}

#[test]
fn cnn_resumes_exactly_and_reloads() -> Result<()> {
    let _serial = serial();
    let (a, b) = (Scratch::new("cnn-straight"), Scratch::new("cnn-resumed"));
    let cnn = |dir: &Scratch, epochs| Config {
        model: ModelKind::Cnn,
        ..short(dir, epochs)
    };
    let straight = job::run(&cnn(&a, 2), &mut ())?;
    job::run(&cnn(&b, 1), &mut ())?;
    let resumed = job::run(
        &Config {
            resume: true,
            ..cnn(&b, 2)
        },
        &mut (),
    )?;
    // weights and batch-norm buffers (running stats, counters) bit for bit
    assert_eq!(bits(&resumed.weights)?, bits(&straight.weights)?);
    let (ca, cb) = (
        TrainingCheckpoint::load(&straight.checkpoint)?,
        TrainingCheckpoint::load(&resumed.checkpoint)?,
    );
    assert_eq!(bits(&ca.model)?, bits(&cb.model)?);
    assert_eq!(bits(&ca.optimizer)?, bits(&cb.optimizer)?);
    assert_eq!(bits(&ca.tensors)?, bits(&cb.tensors)?);
    assert_eq!(ca.rng, cb.rng);
    assert_eq!(ca.metadata, cb.metadata);
    assert!(read(&straight.checkpoint)? == read(&resumed.checkpoint)?);
    assert!(resumed.weights.get("layers.1.running_var").is_some());
    let nbt = resumed.weights.get("layers.4.num_batches_tracked").cloned();
    assert_eq!(nbt.map(|t| t.to_vec::<i64>()).transpose()?, Some(vec![24]));
    assert_eq!(straight.reloaded_test_accuracy, straight.test_accuracy);
    assert!(
        straight.test_accuracy.fraction() > 0.8,
        "{}",
        straight.test_accuracy
    );

    // by hand: a fresh lazy CNN, strictly loaded, in eval mode, scores the same
    let ck = TrainingCheckpoint::load(&straight.checkpoint)?;
    let mut fresh = Cnn::new();
    nn::ModuleExt::load_state_dict(&fresh, &ck.model, &nn::LoadOptions::strict())?;
    nn::ModuleExt::eval(&mut fresh);
    let (_, test) = Digits::load()?.split(job::TEST_LEN, 11)?;
    let (x, y) = test.tensors()?;
    assert_eq!(accuracy(&fresh, &x, &y)?, straight.test_accuracy);

    // resuming with the other model is refused, naming both
    let other = job::run(
        &Config {
            resume: true,
            ..short(&b, 3)
        },
        &mut (),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        other.contains("--model cnn") && other.contains("--model mlp"),
        "{other}"
    );
    Ok(())
}

#[test]
fn cnn_defaults_reach_98_percent() -> Result<()> {
    let _serial = serial();
    let dir = Scratch::new("cnn-defaults");
    let cfg = Config {
        model: ModelKind::Cnn,
        out_dir: dir.0.clone(),
        ..Config::default()
    };
    let r = job::run(&cfg, &mut ())?;
    assert_eq!(r.history.len(), 20);
    assert!(r.test_accuracy.fraction() >= 0.98, "{}", r.test_accuracy);
    Ok(())
}

#[test]
fn augmented_runs_resume_exactly_whatever_the_workers() -> Result<()> {
    let _serial = serial();
    let (a, b) = (Scratch::new("aug-straight"), Scratch::new("aug-resumed"));
    let aug = |dir: &Scratch, epochs, workers| Config {
        augment: true,
        workers,
        ..short(dir, epochs)
    };
    let straight = job::run(&aug(&a, 2, 0), &mut ())?;
    job::run(&aug(&b, 1, 2), &mut ())?;
    let resumed = job::run(
        &Config {
            resume: true,
            ..aug(&b, 2, 1)
        },
        &mut (),
    )?;
    assert_eq!(bits(&resumed.weights)?, bits(&straight.weights)?);
    assert!(read(&straight.checkpoint)? == read(&resumed.checkpoint)?);
    // the crops change the run
    let plain = job::run(&short(&Scratch::new("aug-plain"), 2), &mut ())?;
    assert_ne!(bits(&plain.weights)?, bits(&straight.weights)?);
    // a checkpoint written with --augment refuses a resume without it
    let e = job::run(
        &Config {
            resume: true,
            augment: false,
            ..aug(&b, 3, 0)
        },
        &mut (),
    );
    assert!(matches!(e, Err(JobError::AugmentMismatch { .. })));
    Ok(())
}
