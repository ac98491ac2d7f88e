//! Collate functions: how a [`super::DataLoader`] turns a list of samples into a batch.
//! [`DefaultCollate`] stacks (PyTorch's `default_collate`), [`PadSequence`] pads
//! variable-length sequences and returns the padding mask, and any
//! `Fn(Vec<Sample>) -> Result<Batch>` is a collate function too.

use crate::{Error, HostData, Result, Tensor};

/// Turns the samples of one batch into the batch.
pub trait Collate<T>: Send + Sync {
    /// The batch type.
    type Batch: Send + 'static;
    /// The batch of `samples` (at least one).
    fn collate(&self, samples: Vec<T>) -> Result<Self::Batch>;
}

impl<T, B, F> Collate<T> for F
where
    F: Fn(Vec<T>) -> Result<B> + Send + Sync,
    B: Send + 'static,
{
    type Batch = B;
    fn collate(&self, samples: Vec<T>) -> Result<B> {
        self(samples)
    }
}

/// Sample types [`DefaultCollate`] knows how to batch: tensors are stacked along a new
/// first dim, numbers become 1-d tensors, tuples and vectors are batched position by
/// position (PyTorch's `default_collate`).
pub trait Stack: Sized + Send + 'static {
    /// What a batch of these is.
    type Batch: Send + 'static;
    /// The batch of `samples`.
    fn stack(samples: Vec<Self>) -> Result<Self::Batch>;
}

/// PyTorch's `default_collate`: `Tensor -> [B, ...]`, `(Tensor, i64) -> ([B, ...], [B])`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultCollate;

impl<T: Stack> Collate<T> for DefaultCollate {
    type Batch = T::Batch;
    fn collate(&self, samples: Vec<T>) -> Result<T::Batch> {
        T::stack(samples)
    }
}

/// Stacks equally shaped tensors of one dtype along a new first dim: one allocation and
/// one copy per sample where they live on the host, [`Tensor::stack`] otherwise.
pub fn stack_tensors(samples: &[Tensor]) -> Result<Tensor> {
    let Some(first) = samples.first() else {
        return Err(Error::EmptyInput {
            op: "default_collate",
            what: "the batch".into(),
        });
    };
    for (i, t) in samples.iter().enumerate() {
        if t.shape() != first.shape() || t.dtype() != first.dtype() {
            return Err(Error::bad_shape(
                "default_collate",
                t.shape(),
                format!(
                    "sample {i} of the batch is {} while sample 0 is {} of shape {:?}: every sample must have the same shape and dtype (use a padding collate for sequences)",
                    t.dtype(),
                    first.dtype(),
                    first.shape()
                ),
            ));
        }
    }
    let mut shape = vec![samples.len()];
    shape.extend_from_slice(first.shape());
    match concat_host(samples) {
        Some(host) => Tensor::from_host(host, &shape),
        None => Tensor::stack(samples, 0),
    }
}

/// The host elements of `samples` one after the other (one copy each, no zero fill), or
/// `None` when one of them is not in host memory of the first one's dtype.
fn concat_host(samples: &[Tensor]) -> Option<HostData> {
    // (an overflowing total falls back to `Tensor::stack`, which refuses it)
    let total = samples
        .iter()
        .try_fold(0usize, |a, t| a.checked_add(t.numel()))?;
    macro_rules! cat {
        ($($var:ident),*) => {
            match samples.first()?.storage().as_host()? {
                $(HostData::$var(_) => {
                    // from this thread's cache of freed buffers when it holds one (a
                    // freed batch is then reused, instead of piling up in the cache)
                    let mut out = crate::host::try_with_capacity(total, "default_collate").ok()?;
                    for t in samples {
                        match t.storage().as_host()? {
                            HostData::$var(v) => out.extend_from_slice(v),
                            _ => return None,
                        }
                    }
                    HostData::$var(out)
                })*
            }
        };
    }
    Some(cat!(F32, I64, F16, BF16, F64, I32, U8, Bool))
}

impl Stack for Tensor {
    type Batch = Tensor;
    fn stack(samples: Vec<Tensor>) -> Result<Tensor> {
        stack_tensors(&samples)
    }
}

impl Stack for i64 {
    type Batch = Tensor;
    fn stack(samples: Vec<i64>) -> Result<Tensor> {
        let n = samples.len();
        Tensor::from_vec(samples, &[n])
    }
}

impl Stack for f32 {
    type Batch = Tensor;
    fn stack(samples: Vec<f32>) -> Result<Tensor> {
        let n = samples.len();
        Tensor::from_vec(samples, &[n])
    }
}

impl<T: Stack> Stack for Vec<T> {
    type Batch = Vec<T::Batch>;
    fn stack(samples: Vec<Vec<T>>) -> Result<Vec<T::Batch>> {
        let width = samples.first().map_or(0, Vec::len);
        if let Some((i, s)) = samples.iter().enumerate().find(|(_, s)| s.len() != width) {
            return Err(Error::invalid_config(
                "default_collate",
                "sample",
                i,
                format!("holds {} items while sample 0 holds {width}", s.len()),
            ));
        }
        let mut cols: Vec<Vec<T>> = (0..width)
            .map(|_| Vec::with_capacity(samples.len()))
            .collect();
        for s in samples {
            for (c, x) in cols.iter_mut().zip(s) {
                c.push(x);
            }
        }
        cols.into_iter().map(T::stack).collect()
    }
}

macro_rules! tuple_stack {
    ($($t:ident $v:ident $i:tt),+) => {
        impl<$($t: Stack),+> Stack for ($($t,)+) {
            type Batch = ($($t::Batch,)+);
            fn stack(samples: Vec<Self>) -> Result<Self::Batch> {
                $(let mut $v = Vec::with_capacity(samples.len());)+
                for s in samples {
                    $($v.push(s.$i);)+
                }
                Ok(($($t::stack($v)?,)+))
            }
        }
    };
}
tuple_stack!(A a 0, B b 1);
tuple_stack!(A a 0, B b 1, C c 2);
tuple_stack!(A a 0, B b 1, C c 2, D d 3);

/// A batch of padded sequences (see [`PadSequence`]).
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// `[B, L_max, ...]`: sequence `b` in rows `0..lengths[b]`, the padding value after.
    pub data: Tensor,
    /// `[B, L_max]` bool, **true at padding** (PyTorch's `key_padding_mask` convention).
    pub padding_mask: Tensor,
    /// `[B]` i64: each sequence's length.
    pub lengths: Tensor,
}

/// Pads sequences `[L_i, ...]` (same trailing dims and dtype) to `[B, L_max, ...]` with
/// `padding_value` (PyTorch's `pad_sequence(batch_first=True)`), and returns the
/// padding mask and lengths with it.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::pad_sequence;
/// use nn::Tensor;
/// let b = pad_sequence(&[Tensor::arange(1, 4), Tensor::arange(7, 8)], 0.0)?;
/// assert_eq!(b.data.to_vec2::<i64>()?, vec![vec![1, 2, 3], vec![7, 0, 0]]);
/// assert_eq!(b.padding_mask.to_dtype(nn::DType::I64)?.to_vec2::<i64>()?, vec![vec![0, 0, 0], vec![0, 1, 1]]);
/// # Ok::<(), nn::Error>(())
/// ```
pub fn pad_sequence(seqs: &[Tensor], padding_value: f32) -> Result<PaddedBatch> {
    const OP: &str = "pad_sequence";
    let Some(first) = seqs.first() else {
        return Err(Error::EmptyInput {
            op: OP,
            what: "the list of sequences".into(),
        });
    };
    if first.rank() == 0 {
        return Err(Error::bad_shape(
            OP,
            first.shape(),
            "a sequence needs at least one dim",
        ));
    }
    let tail = &first.shape()[1..];
    let dtype = first.dtype();
    for (i, s) in seqs.iter().enumerate() {
        if s.rank() == 0 || &s.shape()[1..] != tail || s.dtype() != dtype {
            return Err(Error::bad_shape(
                OP,
                s.shape(),
                format!("sequence {i} ({}) does not fit sequence 0 ({dtype}, shape {:?}): trailing dims and dtype must agree", s.dtype(), first.shape()),
            ));
        }
    }
    let max = seqs.iter().map(|s| s.shape()[0]).max().unwrap_or(0);
    let mut shape = vec![seqs.len(), max];
    shape.extend_from_slice(tail);
    // every count checked, the buffers reserved fallibly: a huge (zero-size) sequence
    // list is an error, never a wrapped size or an abort
    let step = crate::shape::checked_numel(OP, tail)?;
    let total = crate::shape::checked_numel(OP, &shape)?;
    let slots = crate::shape::checked_numel(OP, &shape[..2])?;
    let esz = dtype.size_in_bytes();
    let pad = HostData::F32(vec![padding_value]).to_dtype(dtype)?;
    let pad = pad.le_bytes();
    let mut out = HostData::zeros(total, dtype)?;
    let mut mask = crate::host::try_filled(slots, 0u8, OP)?;
    let bytes = out.bytes_mut();
    for (b, s) in seqs.iter().enumerate() {
        let host = s.to_host()?;
        let src = host.le_bytes();
        let row = max * step * esz;
        let dst = &mut bytes[b * row..(b + 1) * row];
        let used = src.len();
        dst[..used].copy_from_slice(&src);
        for e in dst[used..].chunks_exact_mut(esz) {
            e.copy_from_slice(&pad);
        }
        for m in &mut mask[b * max + s.shape()[0]..(b + 1) * max] {
            *m = 1;
        }
    }
    let lengths: Vec<i64> = seqs.iter().map(|s| s.shape()[0] as i64).collect();
    Ok(PaddedBatch {
        data: Tensor::from_host(out, &shape)?,
        padding_mask: Tensor::from_host(HostData::Bool(mask), &[seqs.len(), max])?,
        lengths: Tensor::from_vec(lengths, &[seqs.len()])?,
    })
}

/// A collate function for variable-length sequences: samples `Tensor [L_i, ...]` give a
/// [`PaddedBatch`]; samples `(Tensor [L_i, ...], label)` give `(PaddedBatch, labels
/// batched by` [`DefaultCollate`]`)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PadSequence {
    /// The value written after each sequence (PyTorch's `padding_value`, default 0).
    pub padding_value: f32,
}

impl Collate<Tensor> for PadSequence {
    type Batch = PaddedBatch;
    fn collate(&self, samples: Vec<Tensor>) -> Result<PaddedBatch> {
        pad_sequence(&samples, self.padding_value)
    }
}

impl<L: Stack> Collate<(Tensor, L)> for PadSequence {
    type Batch = (PaddedBatch, L::Batch);
    fn collate(&self, samples: Vec<(Tensor, L)>) -> Result<(PaddedBatch, L::Batch)> {
        let (seqs, labels): (Vec<Tensor>, Vec<L>) = samples.into_iter().unzip();
        Ok((pad_sequence(&seqs, self.padding_value)?, L::stack(labels)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn default_collate_stacks_tuples_and_numbers() -> Result<()> {
        let s = vec![
            (Tensor::from_vec(vec![1.0f32, 2.0], &[2])?, 3i64),
            (Tensor::from_vec(vec![4.0f32, 5.0], &[2])?, 6i64),
        ];
        let (x, y) = DefaultCollate.collate(s)?;
        assert_eq!(
            (x.shape(), x.to_vec::<f32>()?),
            (&[2, 2][..], vec![1.0, 2.0, 4.0, 5.0])
        );
        assert_eq!(y.to_vec::<i64>()?, vec![3, 6]);
        let v = DefaultCollate.collate(vec![vec![1.0f32, 2.0], vec![3.0, 4.0]])?;
        assert_eq!(v[1].to_vec::<f32>()?, vec![2.0, 4.0]);
        let bad = DefaultCollate.collate(vec![Tensor::zeros(&[2]), Tensor::zeros(&[3])]);
        assert!(bad
            .err()
            .is_some_and(|e| e.to_string().contains("sample 1")));
        Ok(())
    }

    #[test]
    fn pad_sequence_pads_2d_items_and_labels() -> Result<()> {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
        let b = Tensor::from_vec(vec![5.0f32, 6.0], &[1, 2])?;
        let (p, y) = PadSequence {
            padding_value: -1.0,
        }
        .collate(vec![(a, 0i64), (b, 1i64)])?;
        assert_eq!(p.data.shape(), &[2, 2, 2]);
        assert_eq!(
            p.data.to_vec::<f32>()?,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, -1.0]
        );
        assert_eq!(p.padding_mask.dtype(), DType::Bool);
        assert_eq!(p.lengths.to_vec::<i64>()?, vec![2, 1]);
        assert_eq!(y.to_vec::<i64>()?, vec![0, 1]);
        assert!(pad_sequence(&[Tensor::zeros(&[2, 2]), Tensor::zeros(&[2, 3])], 0.0).is_err());
        Ok(())
    }
}
