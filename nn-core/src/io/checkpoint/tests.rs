//! Tests of training checkpoints: round trips, resumption, refusals.

use super::*;
use crate::optim::Adam;
use crate::{DType, Dropout, Forward, Linear, ReLU, Sequential};
use std::path::PathBuf;

type Net = Sequential<(Linear, ReLU, Dropout, Linear)>;

/// Input size deferred, so resuming also exercises shapes taken from the file; the
/// dropout draws from the thread generator every step.
fn net() -> Net {
    Sequential::new((Linear::lazy(8), ReLU, Dropout::new(0.5), Linear::new(8, 1)))
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: p.display().to_string(),
        source,
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("nn-ckpt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn steps(net: &Net, opt: &mut Adam, n: usize) -> Result<Vec<f32>> {
    let x = Tensor::from_vec((0..24).map(|i| i as f32 / 24.0).collect(), &[6, 4])?;
    (0..n)
        .map(|_| {
            let loss = net.forward(&x)?.square()?.mean()?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            loss.item()
        })
        .collect()
}

/// Every entry's exact bits.
fn bits(sd: &StateDict) -> Result<Vec<(String, Vec<u64>)>> {
    sd.iter()
        .map(|(k, t)| {
            let v = match t.dtype() {
                DType::F32 => t
                    .to_vec::<f32>()?
                    .iter()
                    .map(|x| u64::from(x.to_bits()))
                    .collect(),
                DType::I64 => t.to_vec::<i64>()?.iter().map(|&x| x as u64).collect(),
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

fn problem(r: Result<impl std::fmt::Debug>) -> Option<CheckpointProblem> {
    match r {
        Err(Error::InvalidCheckpoint { problem, .. }) => Some(problem),
        _ => None,
    }
}

#[test]
fn round_trip_keeps_everything_and_the_bytes() -> Result<()> {
    let dir = Scratch::new("round-trip")?;
    crate::manual_seed(3);
    let model = net();
    let mut opt = Adam::with_lr(model.parameters(), 1e-2)?;
    steps(&model, &mut opt, 2)?;
    let ck = TrainingCheckpoint::capture(2, &model, &opt)?
        .with_meta("seed", 3)
        .with_meta("data", "digits")
        .with_tensor("history.loss", Tensor::from_vec(vec![1.5f32, 0.5], &[2])?);
    let path = dir.0.join("ck.nn");
    ck.save(&path)?;
    let back = TrainingCheckpoint::load(&path)?;
    assert_eq!((back.epoch, back.rng), (2, ck.rng));
    assert_eq!(back.metadata, ck.metadata);
    assert_eq!(back.meta_i64("seed")?, 3);
    assert_eq!(back.meta_str("data")?, "digits");
    assert_eq!(bits(&back.model)?, bits(&ck.model)?);
    assert_eq!(bits(&back.optimizer)?, bits(&ck.optimizer)?);
    assert_eq!(bits(&back.tensors)?, bits(&ck.tensors)?);
    assert!(!back.optimizer.is_empty());
    let again = dir.0.join("again.nn");
    back.save(&again)?;
    let read = |p: &Path| std::fs::read(p).map_err(io(p));
    assert!(read(&path)? == read(&again)?);
    Ok(())
}

#[test]
fn resume_continues_exactly() -> Result<()> {
    let dir = Scratch::new("resume")?;
    let path = dir.0.join("ck.nn");
    crate::manual_seed(5);
    let model = net();
    let mut opt = Adam::with_lr(model.parameters(), 1e-2)?;
    steps(&model, &mut opt, 3)?;
    TrainingCheckpoint::capture(1, &model, &opt)?.save(&path)?;
    let straight = steps(&model, &mut opt, 3)?;

    // another process: other weights, other generator, nothing shaped yet
    crate::manual_seed(99);
    let model2 = net();
    let mut opt2 = Adam::with_lr(model2.parameters(), 1e-2)?;
    let ck = TrainingCheckpoint::resume(&path, &model2, &mut opt2)?;
    assert_eq!(ck.epoch, 1);
    let resumed = steps(&model2, &mut opt2, 3)?;
    let loss_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(loss_bits(&resumed), loss_bits(&straight));
    assert_eq!(bits(&model2.state_dict()?)?, bits(&model.state_dict()?)?);
    assert_eq!(bits(&opt2.state_dict()?)?, bits(&opt.state_dict()?)?);

    // the generator matters here: without it the dropout masks differ
    let model3 = net();
    let mut opt3 = Adam::with_lr(model3.parameters(), 1e-2)?;
    let ck = TrainingCheckpoint::load(&path)?;
    model3.load_state_dict(&ck.model, &LoadOptions::strict())?;
    opt3.load_state_dict(&ck.optimizer)?;
    assert_ne!(
        loss_bits(&steps(&model3, &mut opt3, 3)?),
        loss_bits(&straight)
    );
    Ok(())
}

#[test]
fn bad_checkpoints_are_typed_errors() -> Result<()> {
    let dir = Scratch::new("bad")?;
    crate::manual_seed(1);
    let model = net();
    let mut opt = Adam::with_lr(model.parameters(), 1e-2)?;
    steps(&model, &mut opt, 1)?;
    let path = dir.0.join("ck.nn");
    TrainingCheckpoint::capture(1, &model, &opt)?
        .with_meta("seed", 1)
        .save(&path)?;
    let ck = TrainingCheckpoint::load(&path)?;

    assert_eq!(
        problem(ck.meta_i64("lr")),
        Some(CheckpointProblem::MissingMeta { key: "lr".into() })
    );
    assert_eq!(
        problem(ck.meta_str("seed")),
        Some(CheckpointProblem::MetaType {
            key: "seed".into(),
            expected: "a string",
            found: "an integer"
        })
    );
    let msg = ck.meta_i64("lr").err().map(|e| e.to_string());
    assert_eq!(
        msg.as_deref(),
        Some(
            format!(
                "training checkpoint {}: no metadata entry `lr`",
                path.display()
            )
            .as_str()
        )
    );

    // one flipped byte anywhere in the payload: the checksum says so
    let mut bytes = std::fs::read(&path).map_err(io(&path))?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let flipped = dir.0.join("flipped.nn");
    std::fs::write(&flipped, &bytes).map_err(io(&flipped))?;
    let e = TrainingCheckpoint::load(&flipped);
    assert!(matches!(e, Err(Error::Format { .. })), "{e:?}");

    let plain = dir.0.join("plain.nn");
    model.save(&plain)?;
    assert_eq!(
        problem(TrainingCheckpoint::load(&plain)),
        Some(CheckpointProblem::StateDictFile)
    );
    let other = dir.0.join("other.nn");
    super::super::save(&("not-a-checkpoint".to_string(), 0u64), &other)?;
    assert!(TrainingCheckpoint::load(&other).is_err());

    let e = TrainingCheckpoint::load(dir.0.join("missing.nn"));
    assert!(matches!(e, Err(Error::Io { .. })), "{e:?}");

    // strict: a model of another shape is refused and left as it was
    let small = Linear::new(4, 2);
    let before = small.weight.data()?.to_vec::<f32>()?;
    let mut small_opt = Adam::with_lr(small.parameters(), 1e-2)?;
    let e = ck.restore_into(&small, &mut small_opt);
    assert!(matches!(e, Err(Error::StateDict(_))), "{e:?}");
    assert_eq!(small.weight.data()?.to_vec::<f32>()?, before);
    Ok(())
}

#[test]
fn unknown_format_tags_are_named() -> Result<()> {
    let dir = Scratch::new("tag")?;
    let path = dir.0.join("future.nn");
    let empty = BTreeMap::<String, MetaValue>::new();
    let sd = StateDict::new();
    let wire = WireRef {
        format: "nn-training-checkpoint/3",
        epoch: 0,
        rng_key: 0,
        rng_default_seed: 0,
        metadata: &empty,
        model: &sd,
        optimizer: &sd,
        tensors: &sd,
        scheduler: &sd,
    };
    super::super::save(&wire, &path)?;
    assert_eq!(
        problem(TrainingCheckpoint::load(&path)),
        Some(CheckpointProblem::UnknownFormat {
            found: "nn-training-checkpoint/3".into()
        })
    );
    Ok(())
}
