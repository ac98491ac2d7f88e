//! Printing tensors: PyTorch's layout (`tensor([[1.0000, 2.0000], ...])`), bounded by
//! the element count, with PyTorch's summarization (`...`) above 1000 elements; bools
//! as `True` / `False`.

use crate::{DType, HostData, Tensor};
use std::fmt;

impl fmt::Debug for Tensor {
    /// The same as `Display` (values, then the device and the requires-grad flag where
    /// they are not the defaults), so `{:?}` of a `Vec` or a map of tensors is readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Above this many elements a tensor prints summarized (PyTorch's `threshold`).
const PRINT_THRESHOLD: usize = 1000;
/// Entries kept at each end of a summarized dim (PyTorch's `edgeitems`).
const PRINT_EDGE: usize = 3;

/// Writes one dim of a tensor for `Display`: nested brackets, rows aligned under
/// `tensor(`, and `...` in place of the middle entries of long dims when summarizing.
/// Recursion visits at most `2 * PRINT_EDGE + 1` entries per dim when summarizing and
/// every element otherwise, so its work is bounded by the element count.
fn fmt_dim(
    f: &mut fmt::Formatter<'_>,
    val: &dyn Fn(usize) -> String,
    shape: &[usize],
    offset: usize,
    depth: usize,
    summarize: bool,
) -> fmt::Result {
    let Some((&n, rest)) = shape.split_first() else {
        return f.write_str(&val(offset));
    };
    let inner = crate::shape::numel(rest);
    let picks: Vec<Option<usize>> = if summarize && n > 2 * PRINT_EDGE {
        (0..PRINT_EDGE)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((n - PRINT_EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    };
    f.write_str("[")?;
    for (j, pick) in picks.into_iter().enumerate() {
        if j > 0 {
            if rest.is_empty() {
                f.write_str(", ")?;
            } else {
                write!(f, ",\n{}", " ".repeat(depth + 8))?;
            }
        }
        match pick {
            Some(i) => fmt_dim(f, val, rest, offset + i * inner, depth + 1, summarize)?,
            None => f.write_str("...")?,
        }
    }
    f.write_str("]")
}

impl fmt::Display for Tensor {
    /// PyTorch-like printing: nested brackets, f32 values with 4 decimals; tensors of
    /// more than 1000 elements show 3 entries at each end of every dim around `...`;
    /// empty tensors print as `tensor([], size=(2, 0))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor(")?;
        if self.numel() == 0 {
            f.write_str("[]")?;
            if self.rank() != 1 {
                let dims: Vec<String> = self.shape().iter().map(usize::to_string).collect();
                write!(f, ", size=({})", dims.join(", "))?;
            }
        } else {
            let Ok(host) = self.storage().to_host() else {
                return write!(f, "<unreadable on {}>)", self.device());
            };
            let summarize = self.numel() > PRINT_THRESHOLD;
            match host {
                HostData::F32(v) => {
                    let val = |i: usize| v.get(i).map(|x| format!("{x:.4}")).unwrap_or_default();
                    fmt_dim(f, &val, self.shape(), 0, 0, summarize)?
                }
                HostData::I64(v) => {
                    let val = |i: usize| v.get(i).map(i64::to_string).unwrap_or_default();
                    fmt_dim(f, &val, self.shape(), 0, 0, summarize)?
                }
                HostData::Bool(v) => {
                    let val = |i: usize| match v.get(i) {
                        Some(0) => "False".to_string(),
                        Some(_) => "True".to_string(),
                        None => String::new(),
                    };
                    fmt_dim(f, &val, self.shape(), 0, 0, summarize)?
                }
                other => {
                    let float = other.dtype().is_float();
                    let Ok(HostData::F64(v)) = other.to_dtype(DType::F64) else {
                        return write!(f, "<unreadable {}>)", other.dtype());
                    };
                    let val = |i: usize| {
                        v.get(i)
                            .map(|x| {
                                if float {
                                    format!("{x:.4}")
                                } else {
                                    format!("{x}")
                                }
                            })
                            .unwrap_or_default()
                    };
                    fmt_dim(f, &val, self.shape(), 0, 0, summarize)?
                }
            }
        }
        if !self.device().is_cpu() {
            write!(f, ", device='{}'", self.device())?;
        }
        if self.requires_grad() {
            f.write_str(", requires_grad=True")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod print_tests {
    use crate::{Result, Tensor};

    #[test]
    fn small_tensors_print_every_value() -> Result<()> {
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
        assert_eq!(
            x.to_string(),
            "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]])"
        );
        assert_eq!(format!("{x:?}"), x.to_string());
        assert_eq!(Tensor::scalar(0.5).to_string(), "tensor(0.5000)");
        assert_eq!(Tensor::arange(0, 3).to_string(), "tensor([0, 1, 2])");
        let v = vec![Tensor::scalar(1.0), Tensor::arange(0, 2)];
        assert_eq!(format!("{v:?}"), "[tensor(1.0000), tensor([0, 1])]");
        Ok(())
    }

    #[test]
    fn empty_tensors_print_their_size_without_looping() -> Result<()> {
        assert_eq!(Tensor::zeros(&[0]).to_string(), "tensor([])");
        assert_eq!(
            Tensor::zeros(&[2, 0]).to_string(),
            "tensor([], size=(2, 0))"
        );
        let huge = Tensor::zeros(&[usize::MAX, 0]);
        assert_eq!(
            huge.to_string(),
            format!("tensor([], size=({}, 0))", usize::MAX)
        );
        Ok(())
    }

    #[test]
    fn large_tensors_are_summarized_like_pytorch() -> Result<()> {
        // torch.arange(2000) prints tensor([   0,    1,    2,  ..., 1997, 1998, 1999])
        let s = Tensor::arange(0, 2000).to_string();
        assert_eq!(s, "tensor([0, 1, 2, ..., 1997, 1998, 1999])");
        let m = Tensor::arange(0, 40 * 50).reshape(&[40, 50])?.to_string();
        assert_eq!(m.lines().count(), 7, "{m}");
        assert!(m.starts_with("tensor([[0, 1, 2, ..., 47, 48, 49],"));
        assert!(m.ends_with("[1950, 1951, 1952, ..., 1997, 1998, 1999]])"));
        // exactly the threshold: no summary
        assert!(!Tensor::zeros(&[1000]).to_string().contains("..."));
        Ok(())
    }
}
