//! `--distributed`: the same job, data-parallel over MPI ranks (build with `--features mpi`):
//!
//! ```text
//! cargo build --release --features mpi --example train
//! mpirun -np 2 target/release/examples/train --distributed            # one host
//! mpirun -H a,b -np 2 target/release/examples/train --distributed     # two hosts
//! ```
//!
//! Same defaults and accuracy target as the single-process job: `--batch-size` is the
//! global batch, split evenly over the ranks (it must be a multiple of the world size);
//! each rank trains on its [`nn::distributed::DistributedSampler`] shard of the epoch
//! (seeded by `--seed`), gradients are averaged over the ranks, rank 0 prints and writes
//! the checkpoint (which records the world size: `--resume` needs the same `-np`).

use crate::job::JobError;

/// Why a distributed run stopped.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The global batch cannot be split evenly.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    #[error("--batch-size {batch_size} is not a multiple of the world size {world_size} (mpirun -np); the global batch is split evenly over the ranks")]
    Indivisible {
        /// The global batch.
        batch_size: usize,
        /// The ranks.
        world_size: usize,
    },
    /// `--distributed` in a build without MPI.
    #[cfg_attr(feature = "mpi", allow(dead_code))]
    #[error("--distributed: this build has no MPI support; rebuild with `--features mpi` (cargo build --release --features mpi --example train) and start it with mpirun")]
    NoMpi,
    /// From the job (boxed: the job's error is large, and this one travels by value).
    #[error(transparent)]
    Job(Box<JobError>),
    /// From the library.
    #[error(transparent)]
    Nn(#[from] nn::Error),
}

impl From<JobError> for DistError {
    fn from(e: JobError) -> Self {
        DistError::Job(Box::new(e))
    }
}

/// Runs the job on this rank; the report on rank 0, `None` on the others (which print
/// nothing).
#[cfg(not(feature = "mpi"))]
pub fn run(
    _cfg: &crate::job::Config,
    _obs: &mut dyn crate::job::Observer,
) -> Result<Option<crate::job::Report>, DistError> {
    Err(DistError::NoMpi)
}

#[cfg(feature = "mpi")]
#[allow(unused_imports)] // run_in: tests/distributed.rs
pub use imp::{run, run_in};

#[cfg(feature = "mpi")]
mod imp {
    use super::DistError;
    use crate::digits::Digits;
    use crate::history::{history_from, history_tensors, EpochRecord};
    use crate::job::{
        accuracy, Config, EpochStats, JobError, Observer, Report, RunInfo, Timings, TEST_LEN,
    };
    use crate::model::Mlp;
    use crate::plot;
    use nn::distributed::{
        check_world_size, save_checkpoint, DistributedDataParallel, DistributedSampler,
        ProcessGroup, ReduceOp,
    };
    use nn::io::{LoadOptions, TrainingCheckpoint};
    use nn::optim::{Adam, Optimizer};
    use nn::{Forward, ModuleExt, Tensor};
    use std::time::Instant;

    type Result<T> = std::result::Result<T, DistError>;

    /// Runs the job on this rank (see the module docs); `obs` hears from rank 0 only.
    pub fn run(cfg: &Config, obs: &mut dyn Observer) -> Result<Option<Report>> {
        let group = ProcessGroup::init()?;
        let mut quiet = ();
        let obs: &mut dyn Observer = if group.is_root() { obs } else { &mut quiet };
        let out = run_in(&group, cfg, obs);
        if let Err(e) = &out {
            if !group.is_root() {
                eprintln!("rank {}: error: {e}", group.rank());
            }
        }
        out.map(|r| group.is_root().then_some(r))
    }

    /// The job on `group` (every rank returns a report; only rank 0 writes files).
    pub fn run_in(group: &ProcessGroup, cfg: &Config, obs: &mut dyn Observer) -> Result<Report> {
        let t_total = Instant::now();
        let world = group.world_size();
        if cfg.batch_size == 0 {
            return Err(JobError::ZeroBatch.into());
        }
        if !cfg.batch_size.is_multiple_of(world) {
            return Err(DistError::Indivisible {
                batch_size: cfg.batch_size,
                world_size: world,
            });
        }
        let local_batch = cfg.batch_size / world;
        let device = cfg.device.device()?;
        let t_data = Instant::now();
        let (train, test) = Digits::load()
            .map_err(JobError::from)?
            .split(TEST_LEN, cfg.seed)
            .map_err(JobError::from)?;
        let data_time = t_data.elapsed();
        let (x_test, y_test) = test.tensors().map_err(JobError::from)?;
        let (x_test, y_test) = (x_test.to_device(&device)?, y_test.to_device(&device)?);
        if group.is_root() {
            std::fs::create_dir_all(&cfg.out_dir).map_err(|source| JobError::Io {
                path: cfg.out_dir.display().to_string(),
                source,
            })?;
        }
        group.barrier()?;
        let ck_path = cfg.checkpoint_path();
        let ck_name = ck_path.display().to_string();

        nn::manual_seed(cfg.seed);
        let mut model = Mlp::new();
        let model_repr = model.repr();
        // the input size is inferred at the first forward: materialize before wrapping
        nn::no_grad(|| model.forward(&x_test.narrow(0, 0, 1)?.to_device(&nn::Device::Cpu)?))?;
        model.to_device(&device)?;
        // each gradient bucket's all-reduce starts inside `ddp.backward`, as soon as the
        // bucket is complete (DdpOptions::overlap); it returns with every gradient averaged
        let ddp = DistributedDataParallel::new(model, group)?;
        let mut opt = Adam::with_lr(ddp.parameters(), cfg.lr)?;
        let mut history: Vec<EpochRecord> = Vec::new();
        if cfg.resume {
            if !ck_path.exists() {
                return Err(JobError::NoCheckpoint { path: ck_name }.into());
            }
            let ck = TrainingCheckpoint::load(&ck_path)?;
            let (seed, batch_size) = (ck.meta_i64("seed")?, ck.meta_i64("batch_size")?);
            if seed != cfg.seed as i64 || batch_size != cfg.batch_size as i64 {
                return Err(JobError::ResumeMismatch {
                    path: ck_name,
                    seed,
                    batch_size,
                    given_seed: cfg.seed,
                    given_batch_size: cfg.batch_size,
                }
                .into());
            }
            check_world_size(group, &ck, &ck_path)?;
            history = history_from(&ck, &ck_name)?;
            ck.restore_into(&ddp, &mut opt)?;
        }

        let start_epoch = history.len();
        let sampler = DistributedSampler::new(train.len(), world, group.rank(), Some(cfg.seed))?;
        let mut loader = crate::job::train_loader(&train, cfg, sampler, local_batch)?;
        let batches_per_epoch = loader.len();
        obs.start(&RunInfo {
            device: format!("{device} x {world} ranks (mpi)"),
            train_len: train.len(),
            test_len: test.len(),
            start_epoch,
            epochs: cfg.epochs,
            batch_size: cfg.batch_size,
            batches_per_epoch,
            model: model_repr,
        });
        let mut stats = crate::job::resumed_stats(&history, test.len());
        let mut timings = Timings {
            data: data_time,
            ..Timings::default()
        };
        let mut steps = 0;
        let mut saved = false;
        for epoch in start_epoch + 1..=cfg.epochs {
            obs.epoch_start(epoch, batches_per_epoch);
            let t = Instant::now();
            let mut local_losses = Vec::with_capacity(batches_per_epoch);
            loader.set_epoch(epoch as u64);
            for batch in &loader {
                let (x, y) = batch?;
                let (x, y) = (x.to_device(&device)?, y.to_device(&device)?);
                let loss = ddp.forward(&x)?.cross_entropy(&y)?;
                opt.zero_grad();
                ddp.backward(&loss)?;
                opt.step()?;
                local_losses.push(loss.item()?);
                steps += 1;
                let mean = local_losses.iter().sum::<f32>() / local_losses.len() as f32;
                obs.batch(local_losses.len(), mean);
            }
            // the global loss of every step (the mean over ranks), in one message
            let n = local_losses.len();
            let losses = group
                .all_reduce(&Tensor::from_vec(local_losses, &[n])?, ReduceOp::Mean)?
                .to_vec::<f32>()?;
            if let Some((step, &loss)) = losses.iter().enumerate().find(|(_, l)| !l.is_finite()) {
                return Err(JobError::NonFiniteLoss {
                    epoch,
                    step: step + 1,
                    loss,
                }
                .into());
            }
            let time = t.elapsed();
            timings.train_loop += time;

            let t = Instant::now();
            let test_acc = accuracy(&ddp, &x_test, &y_test)?;
            timings.eval += t.elapsed();
            let mean = (losses.iter().map(|&l| f64::from(l)).sum::<f64>() / n.max(1) as f64) as f32;
            history.push(EpochRecord {
                loss: mean,
                test_correct: test_acc.correct,
                step_losses: losses,
            });

            let t = Instant::now();
            let mut ck = TrainingCheckpoint::capture(epoch as u64, &ddp, &opt)?
                .with_meta("seed", cfg.seed as i64)
                .with_meta("batch_size", cfg.batch_size as i64);
            ck.tensors = history_tensors(&history)?;
            save_checkpoint(group, ck, &ck_path)?;
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

        let (x_train, y_train) = train.tensors().map_err(JobError::from)?;
        let train_accuracy = accuracy(
            &ddp,
            &x_train.to_device(&device)?,
            &y_train.to_device(&device)?,
        )?;
        let test_accuracy = accuracy(&ddp, &x_test, &y_test)?;
        if !saved && !cfg.resume {
            // zero epochs asked: still leave a checkpoint of the initial model
            let mut ck = TrainingCheckpoint::capture(0, &ddp, &opt)?
                .with_meta("seed", cfg.seed as i64)
                .with_meta("batch_size", cfg.batch_size as i64);
            ck.tensors = history_tensors(&[])?;
            save_checkpoint(group, ck, &ck_path)?;
        }
        let plot_path = cfg.plot_path();
        if group.is_root() {
            let step_losses: Vec<Vec<f32>> =
                history.iter().map(|h| h.step_losses.clone()).collect();
            let epoch_losses: Vec<f32> = history.iter().map(|h| h.loss).collect();
            let svg = plot::loss_curve_svg(&step_losses, &epoch_losses).map_err(JobError::from)?;
            std::fs::write(&plot_path, svg).map_err(|source| JobError::Io {
                path: plot_path.display().to_string(),
                source,
            })?;
        }
        // the reload check, on every rank: a fresh lazy model from the file only
        let ck = TrainingCheckpoint::load(&ck_path)?;
        let mut fresh = Mlp::new();
        fresh.load_state_dict(&ck.model, &LoadOptions::strict())?;
        fresh.to_device(&device)?;
        let reloaded_test_accuracy = accuracy(&fresh, &x_test, &y_test)?;
        if reloaded_test_accuracy != test_accuracy {
            return Err(JobError::ReloadMismatch {
                path: ck_name,
                reloaded: reloaded_test_accuracy,
                trained: test_accuracy,
            }
            .into());
        }
        group.barrier()?;
        timings.total = t_total.elapsed();
        Ok(Report {
            start_epoch,
            history: stats,
            steps,
            train_accuracy,
            test_accuracy,
            ema_test_accuracy: None,
            reloaded_test_accuracy,
            weights: ck.model,
            checkpoint: ck_path,
            plot: plot_path,
            timings,
        })
    }
}
