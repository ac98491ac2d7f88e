//! Reading an optimizer's or a scheduler's state out of a PyTorch checkpoint
//! (`torch.save({"model": ..., "optimizer": opt.state_dict(), "scheduler": ...})`)
//! into the dotted layout [`super::Optimizer::load_state_dict`] and
//! [`super::lr_scheduler::LrScheduler::load_state_dict`] take.

use super::group::f64_tensor;
use crate::io::{inspect, load_state_dict_file, select};
use crate::{Result, StateDict, Tensor};
use std::path::Path;

/// The entries under the dotted `prefix` (`"optimizer"`, `"scheduler"`) of a `torch.save`
/// checkpoint, prefix removed: its tensors as they are (`state.0.exp_avg` ...) and its
/// numbers, booleans and lists of numbers as f64 tensors (`param_groups.0.lr`,
/// `param_groups.0.betas`, `last_epoch`, `_schedulers.1.base_lrs` ...; booleans 0 / 1,
/// `params` lists int64). Strings and `None` are left out.
///
/// ```no_run
/// # extern crate nn_core as nn;
/// use nn::optim::{from_torch, AdamW, AdamWConfig, Optimizer};
/// use nn::{Linear, ModuleExt};
/// let net = Linear::new(4, 2);
/// let mut opt = AdamW::new(net.parameters(), AdamWConfig::default())?;
/// opt.load_state_dict(&from_torch("checkpoint.pt", "optimizer")?)?;
/// # Ok::<(), nn::Error>(())
/// ```
pub fn from_torch(path: impl AsRef<Path>, prefix: &str) -> Result<StateDict> {
    let path = path.as_ref();
    let tensors = load_state_dict_file(path)?;
    let others = inspect(path)?.others;
    Ok(from_parts(&tensors, &others, prefix))
}

/// [`from_torch`] over a file's tensors and its non-tensor leaves (`(dotted key,
/// Python-like text)`, as [`crate::io::FileSummary::others`] lists them).
pub(crate) fn from_parts(
    tensors: &StateDict,
    others: &[(String, String)],
    prefix: &str,
) -> StateDict {
    let mut out = select(tensors, prefix, "");
    let dotted = format!("{prefix}.");
    for (key, text) in others {
        let Some(k) = key.strip_prefix(&dotted) else {
            continue;
        };
        if let Some(t) = parse(text, k.ends_with(".params") || k == "params") {
            out.insert(k, t);
        }
    }
    out
}

/// A Python number, boolean or flat list of numbers as a tensor.
fn parse(text: &str, ints: bool) -> Option<Tensor> {
    let number = |s: &str| -> Option<f64> {
        match s.trim() {
            "True" => Some(1.0),
            "False" => Some(0.0),
            s => s.parse::<f64>().ok(),
        }
    };
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let v: Option<Vec<f64>> = if inner.trim().is_empty() {
            Some(Vec::new())
        } else {
            inner.split(',').map(number).collect()
        };
        let v = v?;
        if ints {
            let ids: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            let n = ids.len();
            return Some(Tensor::leaf(
                crate::cpu::storage(crate::HostData::I64(ids)),
                crate::shape::Dims::from_slice(&[n]),
            ));
        }
        return Some(f64_tensor(&v, true));
    }
    number(text).map(|x| f64_tensor(&[x], false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_leaves_become_tensors() -> Result<()> {
        let others: Vec<(String, String)> = [
            ("optimizer.param_groups.0.lr", "0.05"),
            ("optimizer.param_groups.0.betas", "[0.8, 0.99]"),
            ("optimizer.param_groups.0.amsgrad", "False"),
            ("optimizer.param_groups.0.foreach", "None"),
            ("optimizer.param_groups.0.params", "[0, 1, 2]"),
            ("scheduler.best", "inf"),
            ("scheduler.mode", "\"min\""),
            ("epoch", "3"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let sd = from_parts(&StateDict::new(), &others, "optimizer");
        let keys: Vec<&str> = sd.keys().collect();
        assert_eq!(
            keys,
            [
                "param_groups.0.lr",
                "param_groups.0.betas",
                "param_groups.0.amsgrad",
                "param_groups.0.params"
            ]
        );
        let v = |k: &str| sd.get(k).and_then(super::super::group::read_f64s);
        assert_eq!(v("param_groups.0.betas"), Some(vec![0.8, 0.99]));
        assert_eq!(v("param_groups.0.amsgrad"), Some(vec![0.0]));
        assert_eq!(
            sd.get("param_groups.0.params").map(|t| t.dtype()),
            Some(crate::DType::I64)
        );
        let s = from_parts(&StateDict::new(), &others, "scheduler");
        assert_eq!(
            s.get("best").and_then(super::super::group::read_f64s),
            Some(vec![f64::INFINITY])
        );
        assert!(s.get("mode").is_none());
        Ok(())
    }
}
