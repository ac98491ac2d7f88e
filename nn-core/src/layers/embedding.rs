//! `Embedding`: a lookup table, y[..., :] = W[idx[...], :].
//!
//! Shapes: indices `[*]` (int64, each in `[0, num_embeddings)`), W
//! `[num_embeddings, embedding_dim]`, y `[*, embedding_dim]`. Init is PyTorch's: W ~ N(0, 1),
//! with the `padding_idx` row (if any) zeroed.
//!
//! dL/dW[r] = sum of dL/dy over the positions whose index is r (repeated indices
//! accumulate: the adjoint of the gather is a scatter-add); the `padding_idx` row gets
//! no gradient, as in PyTorch, so it keeps its value while training.
//!
//! ```
//! # extern crate nn_core as nn;
//! use nn::{layers::Embedding, module::Forward, Tensor};
//! let emb = Embedding::new(10, 3)?;
//! let y = emb.forward(&Tensor::from_vec(vec![1i64, 2, 4, 5, 4, 3, 2, 9], &[2, 4])?)?;
//! assert_eq!(y.shape(), &[2, 4, 3]);
//! assert!(emb.forward(&Tensor::from_vec(vec![10i64], &[1])?).is_err()); // out of range
//! # Ok::<(), nn::Error>(())
//! ```

use crate::init::Init;
use crate::module::{Forward, Module, Param, Visitor, VisitorMut};
use crate::{DType, Error, Result, Tensor};

/// A table of `num_embeddings` learned vectors of size `embedding_dim`.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Param,
    num_embeddings: usize,
    embedding_dim: usize,
    padding_idx: Option<usize>,
}

impl Embedding {
    /// `num_embeddings` vectors of size `embedding_dim`, drawn from N(0, 1).
    pub fn new(num_embeddings: usize, embedding_dim: usize) -> Result<Embedding> {
        let weight = Param::init(&[num_embeddings, embedding_dim], Init::normal(0.0, 1.0))?;
        weight.set_name("weight");
        Ok(Embedding {
            weight,
            num_embeddings,
            embedding_dim,
            padding_idx: None,
        })
    }

    /// Like [`Embedding::new`], with row `padding_idx` zeroed and excluded from gradients;
    /// a negative `padding_idx` counts from the end, as in PyTorch.
    pub fn with_padding_idx(
        num_embeddings: usize,
        embedding_dim: usize,
        padding_idx: i64,
    ) -> Result<Embedding> {
        let n = num_embeddings as i64;
        let p = if padding_idx < 0 {
            padding_idx + n
        } else {
            padding_idx
        };
        if !(0..n).contains(&p) {
            return Err(Error::invalid_config(
                "Embedding",
                "padding_idx",
                padding_idx,
                format!("must be within [-{n}, {n})"),
            ));
        }
        let mut e = Embedding::new(num_embeddings, embedding_dim)?;
        e.padding_idx = Some(p as usize);
        e.reset_padding_row()?;
        Ok(e)
    }

    /// Builds from an existing `[num, dim]` weight (PyTorch's `from_pretrained`, trainable).
    pub fn from_weight(weight: Param, padding_idx: Option<usize>) -> Result<Embedding> {
        let Some([num, dim]) = weight.shape().and_then(|s| <[usize; 2]>::try_from(s).ok()) else {
            return Err(Error::invalid_config(
                "Embedding::from_weight",
                "weight shape",
                crate::module::fmt_partial(&weight.partial_shape()),
                "must be a known [num_embeddings, embedding_dim]",
            ));
        };
        if padding_idx.is_some_and(|p| p >= num) {
            return Err(Error::invalid_config(
                "Embedding::from_weight",
                "padding_idx",
                format!("{padding_idx:?}"),
                format!("must be below num_embeddings {num}"),
            ));
        }
        Ok(Embedding {
            weight,
            num_embeddings: num,
            embedding_dim: dim,
            padding_idx,
        })
    }

    fn reset_padding_row(&self) -> Result<()> {
        if let Some(p) = self.padding_idx {
            let d = self.embedding_dim;
            self.weight.with_data_mut(|w| {
                if let Some(row) = w.get_mut(p * d..(p + 1) * d) {
                    row.fill(0.0);
                }
            })?;
        }
        Ok(())
    }

    /// Re-draws the table from N(0, 1) and zeroes the padding row (`reset_parameters`).
    pub fn reset_parameters(&self) -> Result<()> {
        self.weight.reinit(&Init::normal(0.0, 1.0))?;
        self.reset_padding_row()
    }

    /// Number of rows.
    pub fn num_embeddings(&self) -> usize {
        self.num_embeddings
    }
    /// Size of each vector.
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }
    /// The row that gets no gradient.
    pub fn padding_idx(&self) -> Option<usize> {
        self.padding_idx
    }

    /// `emb (Embedding(10, 3))`: the layer's path (learned by its weight) and what it is.
    fn layer_name(&self) -> String {
        let desc = format!("Embedding({})", self.extra_repr());
        match self.weight.name().strip_suffix(".weight") {
            Some(owner) if !owner.is_empty() => format!("{owner} ({desc})"),
            _ => desc,
        }
    }

    fn check_indices(&self, idx: &Tensor) -> Result<()> {
        if idx.dtype() != DType::I64 {
            return Err(Error::InputMismatch {
                layer: self.layer_name(),
                expected: format!("int64 indices, not {:?}", idx.dtype()),
                actual: idx.shape().to_vec(),
            });
        }
        let n = self.num_embeddings as i64;
        if let Some(&bad) = idx.to_vec::<i64>()?.iter().find(|&&i| !(0..n).contains(&i)) {
            return Err(Error::InputMismatch {
                layer: self.layer_name(),
                expected: format!("indices in [0, {n}), found {bad}"),
                actual: idx.shape().to_vec(),
            });
        }
        Ok(())
    }
}

impl Module for Embedding {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.param("weight", &self.weight);
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        v.param("weight", &mut self.weight);
    }
    fn module_name(&self) -> String {
        "Embedding".into()
    }
    fn extra_repr(&self) -> String {
        let mut s = format!("{}, {}", self.num_embeddings, self.embedding_dim);
        if let Some(p) = self.padding_idx {
            s.push_str(&format!(", padding_idx={p}"));
        }
        s
    }
}

impl Forward for Embedding {
    /// Looks up every index of `x` (int64, any shape).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check_indices(x)?;
        let w = self.weight.tensor()?;
        match w.shape() {
            [n, d] if *n == self.num_embeddings && *d == self.embedding_dim => {}
            s => {
                return Err(Error::InputMismatch {
                    layer: self.layer_name(),
                    expected: format!(
                        "a weight of shape [{}, {}] (it was replaced)",
                        self.num_embeddings, self.embedding_dim
                    ),
                    actual: s.to_vec(),
                })
            }
        }
        let flat = x.reshape(&[x.numel()])?;
        let rows = w.index_select(0, &flat)?;
        let rows = match self.padding_idx {
            // the padding positions take the detached row: same value, no gradient
            Some(p) => {
                let is_pad = flat.eq_scalar(p as f32)?.unsqueeze(1)?;
                Tensor::where_cond(&is_pad, &rows.detach(), &rows)?
            }
            None => rows,
        };
        let mut shape = x.shape().to_vec();
        shape.push(self.embedding_dim);
        rows.reshape(&shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModuleExt;

    #[test]
    fn repeated_indices_accumulate_and_padding_gets_no_gradient() -> Result<()> {
        let emb = Embedding::with_padding_idx(4, 2, 0)?;
        assert_eq!(emb.weight.data()?.to_vec2::<f32>()?[0], vec![0.0, 0.0]);
        let idx = Tensor::from_vec(vec![1i64, 1, 0, 3, 1], &[5])?;
        let y = emb.forward(&idx)?;
        // y[0] = W[1], hand-checked gather
        let w = emb.weight.data()?.to_vec2::<f32>()?;
        assert_eq!(y.to_vec2::<f32>()?[0], w[1]);
        y.sum()?.backward()?;
        // dL/dW[r] = (count of r in idx) * ones, row 0 (padding) excluded
        let g = emb.weight.grad().map(|g| g.to_vec::<f32>()).transpose()?;
        assert_eq!(g, Some(vec![0., 0., 3., 3., 0., 0., 1., 1.]));
        Ok(())
    }

    #[test]
    fn finite_difference_through_the_table() -> Result<()> {
        let idx = Tensor::from_vec(vec![2i64, 0, 2, 1], &[2, 2])?;
        // (the padding row is left out: its value reaches the output, its gradient is
        // withheld on purpose, see the test above)
        let e = Embedding::new(3, 4)?;
        crate::layers::grad_check::check_param_grads(&e, 12, || e.forward(&idx))?;
        Ok(())
    }

    #[test]
    fn bad_indices_name_the_layer() -> Result<()> {
        #[derive(Debug)]
        struct M(Embedding);
        impl Module for M {
            fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
                v.module("tok", &self.0)
            }
            fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
                v.module("tok", &mut self.0)
            }
        }
        let m = M(Embedding::new(5, 2)?);
        let _ = m.named_parameters();
        for bad in [5i64, -1] {
            let e = m.0.forward(&Tensor::from_vec(vec![0, bad], &[2])?);
            let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.starts_with("tok (Embedding(5, 2))"), "{msg}");
            assert!(msg.contains(&format!("found {bad}")), "{msg}");
        }
        assert!(m.0.forward(&Tensor::zeros(&[2])).is_err());
        assert!(Embedding::with_padding_idx(5, 2, 5).is_err());
        assert!(Embedding::with_padding_idx(5, 2, -1)?.padding_idx() == Some(4));
        Ok(())
    }
}
