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
    use std::sync::{Arc, Barrier, Mutex};

    const THREADS: usize = 8;
    const ROUNDS: usize = 5_000;

    /// Runs `ROUNDS` races of `THREADS` first forwards, each on a fresh layer. The threads
    /// live for all rounds (spawning 8 threads per round cost ~3 ms, the race itself
    /// microseconds): each round they take the fresh layer, line up at a barrier and
    /// forward at once.
    fn race<L: Forward + Send + Sync>(make: impl Fn() -> L, x: &Tensor) -> Result<()> {
        type Outcome = std::result::Result<Vec<f32>, String>;
        let slot: Mutex<Option<Arc<L>>> = Mutex::new(None);
        let outs: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
        // main + the racers: the layer is set (`handed`), everyone holds it (`go`), every
        // forward is done (`done`)
        let (handed, go, done) = (
            Barrier::new(THREADS + 1),
            Barrier::new(THREADS + 1),
            Barrier::new(THREADS + 1),
        );
        let lock = |m: &'_ Mutex<Vec<Outcome>>| {
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *g)
        };
        let mut errors = Vec::new();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..ROUNDS {
                        handed.wait();
                        let layer = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        go.wait();
                        // a panic must not leave the others at the barrier
                        let out: Outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                            || -> Outcome {
                                let layer = layer.ok_or_else(|| "no layer handed".to_string())?;
                                let y = layer.forward(x).map_err(|e| e.to_string())?;
                                y.to_vec::<f32>().map_err(|e| e.to_string())
                            },
                        ))
                        .unwrap_or_else(|_| Err("the forward panicked".into()));
                        outs.lock().unwrap_or_else(|e| e.into_inner()).push(out);
                        done.wait();
                    }
                });
            }
            for _ in 0..ROUNDS {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(make()));
                handed.wait();
                go.wait();
                done.wait();
                let round = lock(&outs);
                assert_eq!(round.len(), THREADS);
                let mut first: Option<Vec<f32>> = None;
                for o in round {
                    match o {
                        Err(e) => errors.push(e),
                        Ok(v) => match &first {
                            None => first = Some(v),
                            Some(f) => assert_eq!(f, &v, "racing forwards disagree"),
                        },
                    }
                }
            }
        });
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
