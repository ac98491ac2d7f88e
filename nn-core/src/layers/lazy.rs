//! The first forward of a lazy layer: every pending parameter materialized, race-free.

use crate::init::Fans;
use crate::module::Param;
use crate::Result;

/// Materializes each parameter that is still pending, with its shape and the fans its
/// initializer sees (`None`: the fans of its own shape).
///
/// NOTE: decide per parameter, never on "the input size is known". That size is read
/// from one parameter (the weight), and a thread racing another one's first forward can
/// see the weight materialized and the bias not yet; skipping the bias then reads an
/// uninitialized parameter. [`Param::materialize`] is idempotent and draws from each
/// parameter's own stream, so whoever gets there first fills a parameter and every
/// thread sees the same values.
pub(crate) fn materialize_pending<'a>(
    params: impl IntoIterator<Item = (&'a Param, &'a [usize], Option<Fans>)>,
) -> Result<()> {
    for (p, shape, fans) in params {
        if !p.is_initialized() {
            p.materialize(shape, fans)?;
        }
    }
    Ok(())
}

/// Whether any of `params` is still pending (the cheap test before building shapes).
pub(crate) fn any_pending<'a>(mut params: impl Iterator<Item = &'a Param>) -> bool {
    params.any(|p| !p.is_initialized())
}

#[cfg(test)]
mod tests {
    //! 8 threads race the first forward of every lazy layer; all must succeed alike.
    use crate::layers::{BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Linear};
    use crate::module::Forward;
    use crate::{Result, Tensor};
    use std::sync::{Arc, Barrier};

    const THREADS: usize = 8;
    const ROUNDS: usize = 5_000;

    /// Runs `ROUNDS` races of `THREADS` first forwards, each on a fresh layer.
    fn race<L: Forward + Send + Sync>(make: impl Fn() -> L, x: &Tensor) -> Result<()> {
        let mut errors = Vec::new();
        for _ in 0..ROUNDS {
            let layer = Arc::new(make());
            let start = Arc::new(Barrier::new(THREADS));
            let outs: Vec<Result<Vec<f32>>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let (layer, start) = (layer.clone(), start.clone());
                        s.spawn(move || {
                            start.wait();
                            layer.forward(x)?.to_vec::<f32>()
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Ok(Vec::new())))
                    .collect()
            });
            let mut first: Option<Vec<f32>> = None;
            for o in outs {
                match o {
                    Err(e) => errors.push(e.to_string()),
                    Ok(v) => match &first {
                        None => first = Some(v),
                        Some(f) => assert_eq!(f, &v, "racing forwards disagree"),
                    },
                }
            }
        }
        assert!(
            errors.is_empty(),
            "{} errors, first: {:?}",
            errors.len(),
            errors.first()
        );
        Ok(())
    }

    #[test]
    fn racing_first_forwards_of_lazy_linear_and_convs() -> Result<()> {
        race(|| Linear::lazy(3), &Tensor::ones(&[2, 5]))?;
        race(|| Conv2d::lazy(2, 3), &Tensor::ones(&[1, 2, 3, 3]))?;
        race(|| Conv1d::lazy(2, 2), &Tensor::ones(&[1, 2, 3]))?;
        Ok(())
    }

    #[test]
    fn racing_first_forwards_of_lazy_batch_norms() -> Result<()> {
        let x1 = Tensor::arange_f32(0.0, 6.0, 1.0)?.reshape(&[3, 2])?;
        race(BatchNorm1d::lazy, &x1)?;
        let x2 = Tensor::arange_f32(0.0, 16.0, 1.0)?.reshape(&[2, 2, 2, 2])?;
        race(BatchNorm2d::lazy, &x2)
    }
}
