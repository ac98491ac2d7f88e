//! Command-line flags of the training job (clap, derived), checked here: a bad value is
//! a usage error naming the flag, before any work starts.

use crate::job::{Config, DeviceSpec};
use crate::model::ModelKind;
use crate::recipe::{OptimizerKind, Recipe, SchedulerKind};
use clap::{ArgAction, Parser};
use std::path::PathBuf;

/// Trains an MLP (64-128-64-10, ReLU, Adam) or a small CNN on the UCI handwritten digits.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "train",
    about = "Trains an MLP (64-128-64-10, ReLU, Adam) or a small CNN (--model cnn) on the UCI handwritten digits.",
    override_usage = "cargo run --release --example train -- [OPTIONS]",
    disable_help_flag = true
)]
pub struct Args {
    /// epochs to train
    #[arg(long, value_name = "N", default_value_t = Config::default().epochs)]
    pub epochs: usize,
    /// mlp (64-128-64-10) or cnn (two 3x3 convolutions with batch norm, on 1x8x8)
    #[arg(long, value_name = "M", default_value_t = Config::default().model)]
    pub model: ModelKind,
    /// mini-batch size
    #[arg(long, value_name = "N", default_value_t = Config::default().batch_size, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Adam learning rate
    #[arg(long, value_name = "F", default_value_t = Config::default().lr, value_parser = positive)]
    pub lr: f64,
    /// seed of the split, the init and the batch order
    #[arg(long, value_name = "N", default_value_t = Config::default().seed)]
    pub seed: u64,
    /// where checkpoint.nn and loss.svg go
    #[arg(long, value_name = "DIR", default_value_os_t = Config::default().out_dir)]
    pub out: PathBuf,
    /// continue from DIR/checkpoint.nn
    #[arg(long)]
    pub resume: bool,
    /// cpu, cuda or cuda:N (cuda needs --features cuda)
    #[arg(long, value_name = "D", default_value_t = Config::default().device)]
    pub device: DeviceSpec,
    /// data-parallel over the ranks of `mpirun -np N` (needs --features mpi)
    #[arg(long)]
    pub distributed: bool,
    /// augment the training images: RandomCrop(8, padding=1), seeded per image and epoch
    #[arg(long)]
    pub augment: bool,
    /// data-loader worker threads (the batches are the same for any number)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,
    /// adam, adamw or sgd (momentum 0.9)
    #[arg(long, value_name = "O", default_value_t = OptimizerKind::default())]
    pub optimizer: OptimizerKind,
    /// weight decay, not applied to biases and norms [default: 0.01 for adamw, else 0]
    #[arg(long, value_name = "F", value_parser = non_negative)]
    pub weight_decay: Option<f64>,
    /// lr schedule, stepped every batch: none, cosine (to 0), onecycle, step (x0.1 each third)
    #[arg(long, value_name = "S", default_value_t = SchedulerKind::default())]
    pub scheduler: SchedulerKind,
    /// linear lr warmup from lr/100 over N steps (onecycle: its rising phase)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warmup_steps: usize,
    /// epochs the schedule spans [default: --epochs]; give it to a run you will stop and resume
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub schedule_epochs: Option<usize>,
    /// clip the gradients' total 2-norm to F
    #[arg(long, value_name = "F", value_parser = positive)]
    pub clip_grad_norm: Option<f64>,
    /// cross-entropy label smoothing in [0, 1)
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = fraction)]
    pub label_smoothing: f64,
    /// keep an EMA of the weights with this decay in [0, 1) and evaluate it too
    #[arg(long, value_name = "DECAY", value_parser = fraction)]
    pub ema: Option<f64>,
    /// print this help
    #[arg(short, long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl Args {
    /// The job's configuration.
    pub fn config(&self) -> Config {
        Config {
            epochs: self.epochs,
            batch_size: self.batch_size,
            model: self.model,
            lr: self.lr,
            seed: self.seed,
            out_dir: self.out.clone(),
            resume: self.resume,
            device: self.device,
            augment: self.augment,
            workers: self.workers,
            recipe: Recipe {
                optimizer: self.optimizer,
                weight_decay: self.weight_decay,
                scheduler: self.scheduler,
                warmup_steps: self.warmup_steps,
                schedule_epochs: self.schedule_epochs,
                clip_grad_norm: self.clip_grad_norm,
                label_smoothing: self.label_smoothing,
                ema: self.ema,
            },
        }
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a positive integer".into()),
    }
}

fn positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| "not a positive number".into())
}

fn non_negative(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| "not a non-negative number".into())
}

fn fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..1.0).contains(v))
        .ok_or_else(|| "not a number in [0, 1)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("train").chain(args.iter().copied()))
    }

    fn err(args: &[&str]) -> String {
        parse(args).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn defaults_and_every_flag() -> Result<(), clap::Error> {
        assert_eq!(parse(&[])?.config(), Config::default());
        let c = parse(&[
            "--epochs",
            "3",
            "--batch-size=32",
            "--lr",
            "0.01",
            "--seed",
            "7",
            "--out",
            "x/y",
            "--resume",
            "--device",
            "cuda:1",
            "--model",
            "cnn",
        ])?
        .config();
        assert_eq!(
            (c.epochs, c.batch_size, c.lr, c.seed, c.resume),
            (3, 32, 0.01, 7, true)
        );
        assert_eq!(c.out_dir, PathBuf::from("x/y"));
        assert_eq!(c.device, DeviceSpec::Cuda(1));
        assert_eq!(c.model, ModelKind::Cnn);
        assert_eq!(parse(&["--device", "cuda"])?.device, DeviceSpec::Cuda(0));
        let r = parse(&[
            "--optimizer=adamw",
            "--weight-decay",
            "0.05",
            "--scheduler",
            "cosine",
            "--warmup-steps",
            "20",
            "--schedule-epochs",
            "30",
            "--clip-grad-norm",
            "1",
            "--label-smoothing",
            "0.1",
            "--ema",
            "0.99",
        ])?
        .config()
        .recipe;
        assert_eq!(
            r,
            Recipe {
                optimizer: OptimizerKind::AdamW,
                weight_decay: Some(0.05),
                scheduler: SchedulerKind::Cosine,
                warmup_steps: 20,
                schedule_epochs: Some(30),
                clip_grad_norm: Some(1.0),
                label_smoothing: 0.1,
                ema: Some(0.99),
            }
        );
        assert_eq!(
            r.describe(20),
            "--optimizer adamw --weight-decay 0.05 --scheduler cosine --warmup-steps 20 \
             --schedule-epochs 30 --clip-grad-norm 1 --label-smoothing 0.1 --ema 0.99"
        );
        assert_eq!(
            parse(&["--scheduler", "onecycle"])?.scheduler,
            SchedulerKind::OneCycle
        );
        assert_eq!(
            parse(&["--optimizer", "sgd"])?.optimizer,
            OptimizerKind::Sgd
        );
        Ok(())
    }

    #[test]
    fn help_lists_every_flag() {
        let help = parse(&["--help"]).err();
        assert_eq!(
            help.as_ref().map(|e| e.kind()),
            Some(clap::error::ErrorKind::DisplayHelp)
        );
        let text = help.map(|e| e.to_string()).unwrap_or_default();
        for flag in [
            "--epochs <N>",
            "--batch-size <N>",
            "--lr <F>",
            "--seed <N>",
            "--out <DIR>",
            "--resume",
            "--device <D>",
            "--model <M>",
            "[default: mlp]",
            "-h, --help",
            "[default: out/train]",
            "[default: 0.001]",
            "--optimizer <O>",
            "[default: adam]",
            "--weight-decay <F>",
            "--scheduler <S>",
            "[default: none]",
            "--warmup-steps <N>",
            "--schedule-epochs <N>",
            "--clip-grad-norm <F>",
            "--label-smoothing <F>",
            "--ema <DECAY>",
        ] {
            assert!(text.contains(flag), "{flag} missing from\n{text}");
        }
        assert_eq!(
            parse(&["-h"]).err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::DisplayHelp)
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        for (args, want) in [
            (&["--epochs"][..], "--epochs <N>"),
            (&["--epochs=-1"], "--epochs <N>"),
            (&["--epochs", "two"], "--epochs <N>"),
            (&["--batch-size", "0"], "at least 1"),
            (&["--lr", "nan"], "--lr <F>"),
            (&["--lr=-1e-3"], "--lr <F>"),
            (&["--device", "tpu"], "`tpu` is not a device"),
            (&["--model", "rnn"], "`rnn` is not a model"),
            (&["--frobnicate"], "--frobnicate"),
            (&["--resume=yes"], "--resume"),
            (
                &["--optimizer", "lion"],
                "`lion` is not an optimizer (adam, adamw, sgd)",
            ),
            (&["--scheduler", "linear"], "`linear` is not a scheduler"),
            (&["--weight-decay=-1"], "--weight-decay <F>"),
            (&["--clip-grad-norm", "0"], "--clip-grad-norm <F>"),
            (&["--label-smoothing", "1"], "--label-smoothing <F>"),
            (&["--ema", "nan"], "--ema <DECAY>"),
            (&["--warmup-steps=-3"], "--warmup-steps <N>"),
        ] {
            let e = err(args);
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
