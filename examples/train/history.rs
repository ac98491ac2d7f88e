//! The loss history kept in the checkpoint (for the report and the plot after a
//! resume), as the checkpoint's own tensors.

use crate::job::{JobError, Result};
use nn::io::TrainingCheckpoint;
use nn::{StateDict, Tensor};

/// What the checkpoint remembers of one finished epoch (for the report and the plot).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// Mean training loss.
    pub loss: f32,
    /// Correctly classified test images after the epoch.
    pub test_correct: usize,
    /// Every mini-batch loss, in order.
    pub step_losses: Vec<f32>,
}

/// The history as the checkpoint's own tensors: `history.loss` `[n]`,
/// `history.test_correct` `[n]`, `history.step_loss` `[n, steps]` (every epoch of a run
/// has the same number of steps: the batch size is fixed).
pub fn history_tensors(history: &[EpochRecord]) -> Result<StateDict> {
    let n = history.len();
    let steps = history.first().map_or(0, |h| h.step_losses.len());
    let loss: Vec<f32> = history.iter().map(|h| h.loss).collect();
    let correct: Vec<i64> = history.iter().map(|h| h.test_correct as i64).collect();
    let step_loss: Vec<f32> = history
        .iter()
        .flat_map(|h| h.step_losses.iter().copied())
        .collect();
    let mut sd = StateDict::new();
    sd.insert("history.loss", Tensor::from_vec(loss, &[n])?);
    sd.insert("history.test_correct", Tensor::from_vec(correct, &[n])?);
    sd.insert(
        "history.step_loss",
        Tensor::from_vec(step_loss, &[n, steps])?,
    );
    Ok(sd)
}

/// Reads back [`history_tensors`], checked against the checkpoint's epoch count.
pub fn history_from(ck: &TrainingCheckpoint, path: &str) -> Result<Vec<EpochRecord>> {
    let bad = |msg: String| JobError::BadHistory {
        path: path.to_string(),
        msg,
    };
    let get = |k: &str| {
        ck.tensors
            .get(k)
            .ok_or_else(|| bad(format!("the checkpoint lacks `{k}`")))
    };
    let loss = get("history.loss")?.to_vec::<f32>()?;
    let correct = get("history.test_correct")?.to_vec::<i64>()?;
    let steps_t = get("history.step_loss")?;
    let per = steps_t.shape().get(1).copied().unwrap_or(0);
    let steps = steps_t.to_vec::<f32>()?;
    let epochs = usize::try_from(ck.epoch).map_err(|_| bad(format!("epoch {}", ck.epoch)))?;
    if loss.len() != epochs || correct.len() != epochs || steps.len() != epochs * per {
        return Err(bad(format!(
            "the history covers {} epochs, the checkpoint says {epochs}",
            loss.len()
        )));
    }
    Ok(loss
        .iter()
        .zip(&correct)
        .zip(steps.chunks(per.max(1)).chain(std::iter::repeat(&[][..])))
        .map(|((&loss, &c), s)| EpochRecord {
            loss,
            test_correct: usize::try_from(c).unwrap_or(0),
            step_losses: s.to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nn::optim::Adam;
    use nn::ModuleExt;

    fn record(loss: f32, test_correct: usize, step_losses: Vec<f32>) -> EpochRecord {
        EpochRecord {
            loss,
            test_correct,
            step_losses,
        }
    }

    #[test]
    fn history_round_trips_through_the_checkpoint() -> Result<()> {
        let model = nn::Linear::new(2, 1);
        let opt = Adam::with_lr(model.parameters(), 1e-3)?;
        let history = [
            record(2.0, 100, vec![2.5, 1.5]),
            record(1.0, 200, vec![1.2, 0.8]),
        ];
        let mut ck = TrainingCheckpoint::capture(2, &model, &opt)?;
        ck.tensors = history_tensors(&history)?;
        assert_eq!(history_from(&ck, "ck")?, history);
        let mut wrong = ck.clone();
        wrong.epoch = 3;
        let e = history_from(&wrong, "ck.nn").err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.contains("ck.nn")), "{e:?}");
        let mut missing = ck;
        missing.tensors = StateDict::new();
        let e = history_from(&missing, "ck").err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("history.loss")),
            "{e:?}"
        );
        Ok(())
    }
}
