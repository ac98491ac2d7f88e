//! Map-style data sets (PyTorch's `torch.utils.data.Dataset`): [`Dataset`],
//! [`TensorDataset`], [`Subset`], [`ConcatDataset`] and [`random_split`].

use super::seed::{derive_seed, permutation};
use crate::{Error, HostData, Result, Tensor};
use std::sync::Arc;

/// A data set that can be indexed: `len()` samples, sample `i` from `get(i)`.
///
/// The sample type is yours: a [`Tensor`], a tuple of tensors, or any `Send` type (the
/// default collate stacks tensors, tuples and vectors of them, numbers into 1-d
/// tensors; a user collate function takes anything). `get` may be called from several
/// worker threads at once, so a data set is `Send + Sync`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::Dataset;
/// use nn::{Result, Tensor};
/// struct Squares;
/// impl Dataset for Squares {
///     type Item = (Tensor, i64);
///     fn len(&self) -> usize { 10 }
///     fn get(&self, i: usize) -> Result<(Tensor, i64)> {
///         Ok((Tensor::from_vec(vec![i as f32], &[1])?, (i * i) as i64))
///     }
/// }
/// assert_eq!(Squares.get(3)?.1, 9);
/// # Ok::<(), nn::Error>(())
/// ```
pub trait Dataset: Send + Sync {
    /// One sample.
    type Item: Send + 'static;

    /// The number of samples.
    fn len(&self) -> usize;

    /// Whether it holds no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index` (`0..len()`); an out-of-range index is an error, not a panic.
    fn get(&self, index: usize) -> Result<Self::Item>;

    /// Called by the [`super::DataLoader`] before each epoch: data sets whose samples
    /// depend on the epoch (random augmentation, [`super::Transformed`]) follow it.
    fn set_epoch(&self, _epoch: u64) {}
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        (**self).get(index)
    }
    fn set_epoch(&self, epoch: u64) {
        (**self).set_epoch(epoch)
    }
}

impl<D: Dataset + ?Sized> Dataset for Box<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        (**self).get(index)
    }
    fn set_epoch(&self, epoch: u64) {
        (**self).set_epoch(epoch)
    }
}

pub(crate) fn check_index(op: &'static str, index: usize, len: usize) -> Result<()> {
    if index >= len {
        return Err(Error::IndexOutOfRange {
            op,
            index: i64::try_from(index).unwrap_or(i64::MAX),
            size: len,
        });
    }
    Ok(())
}

/// Row `i` of `t` along its first dim, as a new tensor of shape `t.shape()[1..]`: one
/// copy of the row's bytes where the storage is on the host.
pub(crate) fn row(t: &Tensor, i: usize) -> Result<Tensor> {
    let shape = &t.shape()[1..];
    let n: usize = shape.iter().product();
    let r = i * n..(i + 1) * n;
    macro_rules! slice {
        ($($var:ident),*) => {
            match t.storage().as_host() {
                $(Some(HostData::$var(v)) => match v.get(r) {
                    Some(v) => {
                        let mut out = crate::host::try_with_capacity(v.len(), "TensorDataset::get")?;
                        out.extend_from_slice(v);
                        Some(HostData::$var(out))
                    }
                    None => None,
                },)*
                None => None,
            }
        };
    }
    if let Some(host) = slice!(F32, I64, F16, BF16, F64, I32, U8, Bool) {
        return Tensor::from_host(host, shape);
    }
    if let Some(bytes) = t.storage().as_le_bytes() {
        let sz = t.dtype().size_in_bytes();
        if let Some(b) = bytes.get(i * n * sz..(i + 1) * n * sz) {
            return Tensor::from_host(HostData::from_le_bytes(t.dtype(), b)?, shape);
        }
    }
    t.narrow(0, i, 1)?.reshape(shape)
}

/// The tensors of a [`TensorDataset`]: one tensor, a tuple of two to four, or a vector.
pub trait TensorTuple: Clone + Send + Sync + 'static {
    /// The tensors, in order.
    fn tensors(&self) -> Vec<&Tensor>;
    /// Row `i` of each tensor, in the same structure.
    fn row(&self, i: usize) -> Result<Self>;
}

impl TensorTuple for Tensor {
    fn tensors(&self) -> Vec<&Tensor> {
        vec![self]
    }
    fn row(&self, i: usize) -> Result<Self> {
        row(self, i)
    }
}

impl TensorTuple for Vec<Tensor> {
    fn tensors(&self) -> Vec<&Tensor> {
        self.iter().collect()
    }
    fn row(&self, i: usize) -> Result<Self> {
        self.iter().map(|t| row(t, i)).collect()
    }
}

macro_rules! tuple_impl {
    ($($t:ident $i:tt),+) => {
        impl TensorTuple for ($($t,)+) {
            fn tensors(&self) -> Vec<&Tensor> {
                vec![$(&self.$i),+]
            }
            fn row(&self, i: usize) -> Result<Self> {
                Ok(($(row(&self.$i, i)?,)+))
            }
        }
    };
}
type T = Tensor;
tuple_impl!(T 0, T 1);
tuple_impl!(T 0, T 1, T 2);
tuple_impl!(T 0, T 1, T 2, T 3);

/// Samples are the rows of tensors that share their first dim (PyTorch's
/// `TensorDataset`): `TensorDataset::new((x, y))?.get(i)` is `(x[i], y[i])`.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::{Dataset, TensorDataset};
/// use nn::Tensor;
/// let x = Tensor::arange(0, 6).reshape(&[3, 2])?;
/// let y = Tensor::arange(10, 13);
/// let ds = TensorDataset::new((x, y))?;
/// let (xi, yi) = ds.get(1)?;
/// assert_eq!((xi.to_vec::<i64>()?, yi.to_vec::<i64>()?), (vec![2, 3], vec![11]));
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TensorDataset<Ts: TensorTuple = Vec<Tensor>> {
    tensors: Ts,
    len: usize,
}

impl<Ts: TensorTuple> TensorDataset<Ts> {
    /// A data set over the rows of `tensors`; they must have at least one dim and the
    /// same first dim.
    pub fn new(tensors: Ts) -> Result<Self> {
        let all = tensors.tensors();
        let Some(first) = all.first() else {
            return Err(Error::EmptyInput {
                op: "TensorDataset::new",
                what: "the list of tensors".into(),
            });
        };
        let Some(&len) = first.shape().first() else {
            return Err(Error::bad_shape(
                "TensorDataset::new",
                first.shape(),
                "a tensor of rank 0 has no rows",
            ));
        };
        for t in &all {
            if t.shape().first() != Some(&len) {
                return Err(Error::ShapeMismatch {
                    op: "TensorDataset::new (the first dims must agree)",
                    lhs: first.shape().to_vec(),
                    rhs: t.shape().to_vec(),
                });
            }
        }
        Ok(TensorDataset { tensors, len })
    }

    /// The tensors the rows come from.
    pub fn tensors(&self) -> &Ts {
        &self.tensors
    }
}

impl<Ts: TensorTuple> Dataset for TensorDataset<Ts> {
    type Item = Ts;
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, index: usize) -> Result<Ts> {
        check_index("TensorDataset::get", index, self.len)?;
        self.tensors.row(index)
    }
}

/// The samples of `dataset` at `indices`, in that order (PyTorch's `Subset`).
#[derive(Debug, Clone)]
pub struct Subset<D> {
    dataset: D,
    indices: Vec<usize>,
}

impl<D: Dataset> Subset<D> {
    /// A view of `dataset` at `indices`; each index must be below `dataset.len()`.
    pub fn new(dataset: D, indices: Vec<usize>) -> Result<Self> {
        let len = dataset.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            check_index("Subset::new", bad, len)?;
        }
        Ok(Subset { dataset, indices })
    }

    /// The indices into the underlying data set.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The underlying data set.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        check_index("Subset::get", index, self.indices.len())?;
        self.dataset.get(self.indices[index])
    }
    fn set_epoch(&self, epoch: u64) {
        self.dataset.set_epoch(epoch)
    }
}

/// Data sets one after the other (PyTorch's `ConcatDataset`): index `i` of the whole is
/// found by a binary search of the cumulative sizes.
#[derive(Debug, Clone)]
pub struct ConcatDataset<D> {
    datasets: Vec<D>,
    /// `cumulative[k]`: samples in `datasets[..=k]`.
    cumulative: Vec<usize>,
}

impl<D: Dataset> ConcatDataset<D> {
    /// The concatenation of `datasets` (at least one).
    pub fn new(datasets: Vec<D>) -> Result<Self> {
        if datasets.is_empty() {
            return Err(Error::EmptyInput {
                op: "ConcatDataset::new",
                what: "the list of data sets".into(),
            });
        }
        let mut cumulative = Vec::with_capacity(datasets.len());
        let mut total = 0usize;
        for d in &datasets {
            total = total.checked_add(d.len()).ok_or_else(|| {
                Error::invalid_config("ConcatDataset::new", "len", total, "overflows usize")
            })?;
            cumulative.push(total);
        }
        Ok(ConcatDataset {
            datasets,
            cumulative,
        })
    }

    /// The cumulative sizes (PyTorch's `cumulative_sizes`).
    pub fn cumulative_sizes(&self) -> &[usize] {
        &self.cumulative
    }
}

impl<D: Dataset> Dataset for ConcatDataset<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        self.cumulative.last().copied().unwrap_or(0)
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        check_index("ConcatDataset::get", index, self.len())?;
        let k = self.cumulative.partition_point(|&c| c <= index);
        let start = if k == 0 { 0 } else { self.cumulative[k - 1] };
        self.datasets[k].get(index - start)
    }
    fn set_epoch(&self, epoch: u64) {
        self.datasets.iter().for_each(|d| d.set_epoch(epoch))
    }
}

/// How [`random_split`] sizes its parts.
#[derive(Debug, Clone, PartialEq)]
pub enum Split {
    /// Exact lengths summing to the data set's length.
    Lengths(Vec<usize>),
    /// Fractions summing to 1, rounded as PyTorch does: `floor(len * f)` each, then the
    /// remainder handed out one by one round-robin from the first part.
    Fractions(Vec<f64>),
}

impl Split {
    /// The lengths of the parts for a data set of `len` samples.
    pub fn lengths(&self, len: usize) -> Result<Vec<usize>> {
        const OP: &str = "random_split";
        match self {
            Split::Lengths(l) => {
                let sum = l.iter().try_fold(0usize, |a, &b| a.checked_add(b));
                if sum != Some(len) {
                    return Err(Error::invalid_config(
                        OP,
                        "lengths",
                        format!("{l:?}"),
                        format!("must sum to the data set's length {len}"),
                    ));
                }
                Ok(l.clone())
            }
            Split::Fractions(f) => {
                let sum: f64 = f.iter().sum();
                if f.iter().any(|x| !(0.0..=1.0).contains(x)) || (sum - 1.0).abs() > 1e-6 {
                    return Err(Error::invalid_config(
                        OP,
                        "fractions",
                        format!("{f:?}"),
                        "each must lie in [0, 1] and they must sum to 1",
                    ));
                }
                let mut l: Vec<usize> = f
                    .iter()
                    .map(|x| (len as f64 * x).floor() as usize)
                    .collect();
                // fractions within 1e-6 of 1 may floor to more than `len` in all (as
                // PyTorch, whose remainder is then negative and its sum check fails)
                let floors = l.iter().try_fold(0usize, |a, &b| a.checked_add(b));
                let Some(rest) = floors.and_then(|s| len.checked_sub(s)) else {
                    return Err(Error::invalid_config(
                        OP,
                        "fractions",
                        format!("{f:?}"),
                        format!("their parts of {len} sum to more than {len}"),
                    ));
                };
                let k = l.len();
                for i in 0..rest {
                    l[i % k] += 1;
                }
                Ok(l)
            }
        }
    }
}

/// Splits `dataset` into non-overlapping random [`Subset`]s (PyTorch's `random_split`):
/// the parts take consecutive runs of a permutation seeded by `seed` only.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::{random_split, Dataset, Split, TensorDataset};
/// use nn::Tensor;
/// let ds = TensorDataset::new(Tensor::arange(0, 10))?;
/// let parts = random_split(ds, Split::Fractions(vec![0.7, 0.3]), 42)?;
/// assert_eq!((parts[0].len(), parts[1].len()), (7, 3));
/// # Ok::<(), nn::Error>(())
/// ```
pub fn random_split<D: Dataset + Clone>(
    dataset: D,
    split: Split,
    seed: u64,
) -> Result<Vec<Subset<D>>> {
    let lengths = split.lengths(dataset.len())?;
    let order = permutation(dataset.len(), derive_seed(seed, 0x0053_504c_4954));
    let mut at = 0;
    lengths
        .into_iter()
        .map(|n| {
            let part = order[at..at + n].to_vec();
            at += n;
            Subset::new(dataset.clone(), part)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_dataset_rows_and_errors() -> Result<()> {
        let x = Tensor::arange(0, 12)
            .to_dtype(crate::DType::F32)?
            .reshape(&[4, 3])?;
        let y = Tensor::arange(0, 4);
        let ds = TensorDataset::new((x.clone(), y.clone()))?;
        assert_eq!(ds.len(), 4);
        let (a, b) = ds.get(2)?;
        assert_eq!(
            (a.shape(), a.to_vec::<f32>()?),
            (&[3][..], vec![6.0, 7.0, 8.0])
        );
        assert_eq!((b.shape(), b.to_vec::<i64>()?), (&[][..], vec![2]));
        assert!(ds.get(4).is_err());
        assert!(TensorDataset::new((x, Tensor::arange(0, 3))).is_err());
        assert!(TensorDataset::new(Vec::new()).is_err());
        Ok(())
    }

    #[test]
    fn subset_and_concat_index_through() -> Result<()> {
        let a = TensorDataset::new(Tensor::arange(0, 3))?;
        let b = TensorDataset::new(Tensor::arange(10, 15))?;
        let c = ConcatDataset::new(vec![a.clone(), b])?;
        assert_eq!(c.cumulative_sizes(), &[3, 8]);
        let got: Vec<i64> = (0..c.len())
            .map(|i| c.get(i)?.item().map(|v| v as i64))
            .collect::<Result<_>>()?;
        assert_eq!(got, vec![0, 1, 2, 10, 11, 12, 13, 14]);
        assert!(c.get(8).is_err());
        let s = Subset::new(c, vec![7, 0])?;
        assert_eq!(s.get(0)?.item()?, 14.0);
        assert!(Subset::new(a, vec![3]).is_err());
        Ok(())
    }

    #[test]
    fn split_rounds_like_pytorch_and_is_seeded() -> Result<()> {
        // torch.utils.data.random_split(range(10), [0.33, 0.33, 0.34]) -> lengths [4, 3, 3]
        assert_eq!(
            Split::Fractions(vec![0.33, 0.33, 0.34]).lengths(10)?,
            vec![4, 3, 3]
        );
        assert_eq!(Split::Fractions(vec![0.5, 0.5]).lengths(5)?, vec![3, 2]);
        assert!(Split::Fractions(vec![0.5, 0.6]).lengths(5).is_err());
        assert!(Split::Lengths(vec![2, 2]).lengths(5).is_err());
        let ds = TensorDataset::new(Tensor::arange(0, 20))?;
        let p = random_split(ds.clone(), Split::Lengths(vec![15, 5]), 1)?;
        let q = random_split(ds.clone(), Split::Lengths(vec![15, 5]), 1)?;
        let r = random_split(ds, Split::Lengths(vec![15, 5]), 2)?;
        assert_eq!(p[1].indices(), q[1].indices());
        assert_ne!(p[1].indices(), r[1].indices());
        let mut all = [p[0].indices(), p[1].indices()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        Ok(())
    }
}
