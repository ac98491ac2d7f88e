//! Command-line flags of the training job, parsed by hand (no argument-parser crate:
//! build time), with errors that name the flag.

use super::{Config, DeviceSpec};
use crate::{Error, Result};
use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Train with this configuration.
    Run(Config),
    /// Print [`USAGE`] and exit.
    Help,
}

/// The `--help` text.
pub const USAGE: &str = "\
Trains an MLP (64-128-64-10, ReLU, Adam) on the UCI handwritten digits.

Usage: cargo run --release --example train -- [OPTIONS]

Options:
  --epochs N          epochs to train (default 20)
  --batch-size N      mini-batch size (default 64)
  --lr F              Adam learning rate (default 0.001)
  --seed N            seed of the split, the init and the batch order (default 0)
  --out DIR           where checkpoint.nn and loss.svg go (default out/train)
  --resume            continue from DIR/checkpoint.nn
  --device D          cpu, cuda or cuda:N (default cpu; cuda needs --features cuda)
  -h, --help          print this help
";

/// Parses the arguments after the program name.
///
/// ```
/// use nn::train::{cli::{parse_args, Command}, Config};
/// let cmd = parse_args(["--epochs", "5", "--lr=0.01"].map(String::from))?;
/// let Command::Run(cfg) = cmd else { unreachable!() };
/// assert_eq!((cfg.epochs, cfg.lr, cfg.batch_size), (5, 0.01, Config::default().batch_size));
/// # Ok::<(), nn::Error>(())
/// ```
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command> {
    let mut cfg = Config::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage(format!("{flag} needs {what}")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--epochs" => cfg.epochs = number(&flag, &value("a number of epochs")?)?,
            "--batch-size" => {
                cfg.batch_size = number(&flag, &value("a batch size")?)?;
                if cfg.batch_size == 0 {
                    return Err(usage("--batch-size must be at least 1".into()));
                }
            }
            "--lr" => {
                let v = value("a learning rate")?;
                cfg.lr = v
                    .parse::<f64>()
                    .ok()
                    .filter(|lr| lr.is_finite() && *lr > 0.0)
                    .ok_or_else(|| usage(format!("--lr: `{v}` is not a positive number")))?;
            }
            "--seed" => cfg.seed = number(&flag, &value("a seed")?)?,
            "--out" => cfg.out_dir = PathBuf::from(value("a directory")?),
            "--resume" if inline.is_none() => cfg.resume = true,
            "--device" => cfg.device = value("a device")?.parse()?,
            _ => return Err(usage(format!("unknown argument `{arg}`"))),
        }
    }
    Ok(Command::Run(cfg))
}

fn usage(msg: String) -> Error {
    Error::Msg(format!("{msg} (see --help)"))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| usage(format!("{flag}: `{v}` is not a non-negative integer")))
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;

    /// `cpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<DeviceSpec> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| {
                    usage(format!(
                        "--device: `{s}` is not a device (cpu, cuda or cuda:N)"
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn err(args: &[&str]) -> String {
        parse(args).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn defaults_and_every_flag() -> Result<()> {
        assert_eq!(parse(&[])?, Command::Run(Config::default()));
        assert_eq!(parse(&["--help"])?, Command::Help);
        let Command::Run(c) = parse(&[
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
        ])?
        else {
            return Err(Error::Msg("expected a run".into()));
        };
        assert_eq!(
            (c.epochs, c.batch_size, c.lr, c.seed, c.resume),
            (3, 32, 0.01, 7, true)
        );
        assert_eq!(c.out_dir, PathBuf::from("x/y"));
        assert_eq!(c.device, DeviceSpec::Cuda(1));
        Ok(())
    }

    #[test]
    fn bad_flags_name_the_flag() {
        assert!(err(&["--epochs"]).contains("--epochs needs"));
        assert!(err(&["--epochs", "-1"]).contains("--epochs: `-1`"));
        assert!(err(&["--batch-size", "0"]).contains("at least 1"));
        assert!(err(&["--lr", "nan"]).contains("--lr"));
        assert!(err(&["--device", "tpu"]).contains("`tpu` is not a device"));
        assert!(err(&["--frobnicate"]).contains("unknown argument `--frobnicate`"));
        assert!(err(&["--resume=yes"]).contains("unknown argument"));
    }
}
