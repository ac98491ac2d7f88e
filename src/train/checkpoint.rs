//! Checkpoints of the training job: the model, the optimizer, the epoch and the loss
//! history in one state dict, written with the crash-safe writer.

use crate::{Error, Result, StateDict, Tensor};
use std::path::Path;

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
        crate::io::save_state_dict(&self.to_state_dict()?, path)
    }

    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        Self::from_state_dict(&crate::io::load_state_dict_file(path)?, path)
    }
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
}
