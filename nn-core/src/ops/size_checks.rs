//! Regression tests: sizes computed from user shapes never overflow, wrap or abort;
//! each op answers `Err(BadShape)` instead (issue: hostile sizes).

#[cfg(test)]
mod tests {
    use crate::{Error, Result, Tensor};

    fn is_bad_shape<T: std::fmt::Debug>(r: Result<T>) -> bool {
        matches!(
            r,
            Err(Error::BadShape { .. }) | Err(Error::ShapeMismatch { .. })
        )
    }

    #[test]
    fn overflowing_shapes_are_errors() -> Result<()> {
        let empty = Tensor::zeros(&[usize::MAX, 0]);
        assert!(is_bad_shape(Tensor::zeros(&[4]).reshape(&[1 << 62, 4])));
        // a zero dim makes any shape hold nothing: fine, as in PyTorch
        assert!(Tensor::zeros(&[0])
            .reshape(&[1 << 62, 4, 0, 1 << 62])
            .is_ok());
        assert!(is_bad_shape(Tensor::cat(
            &[empty.clone(), empty.clone()],
            0
        )));
        assert!(is_bad_shape(empty.matmul(&Tensor::zeros(&[0, usize::MAX]))));
        assert!(is_bad_shape(Tensor::zeros(&[0, usize::MAX]).sum(0, false)));
        assert!(is_bad_shape(
            Tensor::zeros(&[1]).broadcast_as(&[1 << 40, 1 << 40])
        ));
        // [2^31, 0, 1] + [0, 1, 2^31] does not broadcast (2^31 vs 0 in dim 0)
        let col = Tensor::zeros(&[1 << 31, 0]).reshape(&[1 << 31, 0, 1])?;
        let row = Tensor::zeros(&[0, 1 << 31]).reshape(&[0, 1, 1 << 31])?;
        assert!(is_bad_shape(col.add(&row)));
        assert!(is_bad_shape(Tensor::zeros(&[2]).reshape_infer(&[
            -1,
            1 << 62,
            1 << 62
        ])));
        Ok(())
    }

    #[test]
    fn zero_sized_results_stay_cheap() -> Result<()> {
        // [0, MAX] @ [MAX, 0]-style products with a zero-size result need no work
        let y = Tensor::zeros(&[1 << 40, 0, 3]).matmul(&Tensor::zeros(&[3, 0]))?;
        assert_eq!(y.shape(), &[1 << 40, 0, 0]);
        let z = Tensor::zeros(&[0, 5]).matmul(&Tensor::zeros(&[5, 7]))?;
        assert_eq!((z.shape(), z.numel()), (&[0, 7][..], 0));
        Ok(())
    }
}
