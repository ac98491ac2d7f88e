//! `Reduction`: how a loss turns its per-element values into its result (PyTorch's
//! `reduction='none' | 'mean' | 'sum'`, and `'batchmean'` for `kl_div`).

use crate::{Error, Result, Tensor};

/// How a loss reduces its per-element values (PyTorch's `reduction` argument; the
/// default is `Mean`, as PyTorch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Every value, in the shape of the input (`'none'`).
    None,
    /// The mean (`'mean'`; weighted losses divide by the sum of the weights used).
    #[default]
    Mean,
    /// The sum (`'sum'`).
    Sum,
    /// The sum divided by the batch size, dim 0 (`'batchmean'`, [`crate::functional::kl_div`] only).
    BatchMean,
}

impl Reduction {
    /// PyTorch's name: `none`, `mean`, `sum`, `batchmean`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::BatchMean => "batchmean",
        }
    }

    /// The reduction named `s` as PyTorch spells it.
    pub fn from_name(s: &str) -> Option<Reduction> {
        Some(match s {
            "none" => Reduction::None,
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            "batchmean" => Reduction::BatchMean,
            _ => return None,
        })
    }

    /// `loss` reduced: itself, its mean or its sum; `BatchMean` is refused naming `op`
    /// (only `kl_div` takes it, as in PyTorch).
    pub(crate) fn apply(self, op: &'static str, loss: Tensor) -> Result<Tensor> {
        match self {
            Reduction::None => Ok(loss),
            Reduction::Mean => loss.mean(),
            Reduction::Sum => loss.sum(),
            Reduction::BatchMean => Err(Error::invalid_config(
                op,
                "reduction",
                "batchmean",
                "only kl_div takes it; use mean, sum or none",
            )),
        }
    }
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
