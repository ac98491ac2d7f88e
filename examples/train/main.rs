//! The main job: train an MLP on the UCI handwritten digits, end to end.
//!
//! ```text
//! cargo run --release --example train                      # 20 epochs, about 97% test accuracy
//! cargo run --release --example train -- --epochs 5        # stop early ...
//! cargo run --release --example train -- --epochs 20 --resume   # ... and continue
//! cargo run --release --example train -- --help
//! mpirun -np 2 target/release/examples/train --distributed    # data-parallel (--features mpi)
//! ```
//!
//! Writes `out/train/checkpoint.nn` (an [`nn::io::TrainingCheckpoint`]: model, optimizer,
//! epoch and generator state, every epoch) and `out/train/loss.svg`.
//!
//! The files: `cli.rs` (flags), `job.rs` (the run itself, which `tests/train.rs` calls
//! too), `digits.rs` (the data set), `history.rs` (the loss history in the checkpoint), `model.rs` (the MLP), `plot.rs` (the loss curve),
//! `recipe.rs` (optimizer, lr schedule, clipping, label smoothing, EMA);
//! this one draws progress and prints the summary.

mod cli;
mod digits;
mod distributed;
mod history;
mod job;
mod model;
mod plot;
mod recipe;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use job::{EpochStats, Observer, RunInfo};
use std::io::IsTerminal;
use std::process::ExitCode;

/// One progress bar per epoch on a terminal; one line per epoch otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
    terminal: bool,
}

impl Observer for Progress {
    fn start(&mut self, info: &RunInfo) {
        self.epochs = info.epochs;
        println!("{}", info.model);
        println!(
            "device {}, {} train / {} test images, batch {} ({} steps per epoch)",
            info.device, info.train_len, info.test_len, info.batch_size, info.batches_per_epoch
        );
        if info.start_epoch > 0 {
            println!("resumed after epoch {}", info.start_epoch);
        }
    }

    fn epoch_start(&mut self, epoch: usize, batches: usize) {
        if !self.terminal {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30.cyan/blue}] {pos:>2}/{len} loss {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{epoch:>2}/{}", self.epochs));
        self.bar = Some(bar);
    }

    fn batch(&mut self, done: usize, running_loss: f32) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{running_loss:.4}"));
        }
    }

    fn epoch_end(&mut self, s: &EpochStats) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {:>2}/{}  loss {:.4}  test {}  ({:.1} ms)",
            s.epoch,
            self.epochs,
            s.loss,
            s.test,
            s.time.as_secs_f64() * 1e3
        );
    }
}

fn main() -> ExitCode {
    // a usage error or --help: clap prints it and exits (status 2, or 0 for --help)
    let args = cli::Args::parse();
    let cfg = args.config();
    let mut progress = Progress {
        bar: None,
        epochs: cfg.epochs,
        terminal: std::io::stderr().is_terminal(),
    };
    if !cfg.recipe.is_default() {
        if args.distributed {
            eprintln!("error: --distributed trains with the default recipe (Adam, constant lr); drop `{}`", cfg.recipe.describe(cfg.epochs));
            return ExitCode::FAILURE;
        }
        println!("recipe {}", cfg.recipe.describe(cfg.epochs));
    }
    let outcome = match args.distributed {
        true => distributed::run(&cfg, &mut progress),
        false => job::run(&cfg, &mut progress).map(Some).map_err(Into::into),
    };
    let r = match outcome {
        Ok(Some(r)) => r,
        Ok(None) => return ExitCode::SUCCESS, // a rank other than 0: rank 0 reports
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t = r.timings;
    println!("train accuracy {}", r.train_accuracy);
    println!("test accuracy  {}", r.test_accuracy);
    if let Some(ema) = r.ema_test_accuracy {
        println!("test accuracy  {ema} with the EMA weights");
    }
    println!(
        "reloaded from {}: test accuracy {} (identical)",
        r.checkpoint.display(),
        r.reloaded_test_accuracy
    );
    println!("loss curve     {}", r.plot.display());
    let per_step = t.train_loop.as_secs_f64() * 1e3 / r.steps.max(1) as f64;
    println!(
        "time: data {:.1} ms, training loop {:.1} ms ({} steps, {:.3} ms/step), eval {:.1} ms, checkpoints {:.1} ms, total {:.1} ms",
        t.data.as_secs_f64() * 1e3,
        t.train_loop.as_secs_f64() * 1e3,
        r.steps,
        per_step,
        t.eval.as_secs_f64() * 1e3,
        t.checkpoint.as_secs_f64() * 1e3,
        t.total.as_secs_f64() * 1e3
    );
    ExitCode::SUCCESS
}
