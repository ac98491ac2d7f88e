//! Tests of `Param`: copies, dtypes, re-entrant calls and initializers.

use super::*;

#[test]
fn deep_copy_is_independent() -> Result<()> {
    let p = Param::new(Tensor::from_vec(vec![1.0f32, 2.0], &[2])?)?;
    let q = p.deep_copy();
    assert!(!q.ptr_eq(&p));
    assert_eq!(q.data()?.to_vec::<f32>()?, vec![1.0, 2.0]);
    q.set_item(&[0], 5.0)?;
    assert_eq!(p.data()?.to_vec::<f32>()?, vec![1.0, 2.0]);
    // the copy's gradient lands in its own slot
    q.tensor()?.sum()?.backward()?;
    assert!(q.grad().is_some() && p.grad().is_none());
    let d = Param::deferred(&[Some(3), None], Init::Ones).deep_copy();
    assert!(!d.is_initialized());
    Ok(())
}

#[test]
fn only_float_data_makes_a_parameter() {
    assert!(matches!(
        Param::new(Tensor::arange(0, 3)),
        Err(Error::DType {
            op: "Param::new",
            ..
        })
    ));
}

#[test]
fn calls_from_inside_with_data_mut_never_block() -> Result<()> {
    let p = Param::new(Tensor::ones(&[2, 3]))?;
    let p2 = p.clone();
    let seen = p.with_data_mut(|v| {
        v[0] = 7.0;
        // metadata works; whatever needs the data is refused, not a deadlock
        let meta = (p2.shape(), p2.is_initialized(), p2.numel(), p2.device());
        let data = p2.data().map(|_| ());
        let write = p2.set_data(&Tensor::zeros(&[2, 3]));
        let nested = p2.with_data_mut(|_| ()).map(|_| ());
        (meta, data, write, nested, format!("{p2:?}"))
    })?;
    let Some((meta, data, write, nested, dbg)) = seen else {
        panic!("CPU f32 data not lent");
    };
    assert_eq!(meta, (Some(vec![2, 3]), true, 6, Device::Cpu));
    for r in [data, write, nested] {
        assert!(matches!(r, Err(Error::Reentrant { .. })), "{r:?}");
    }
    assert!(dbg.contains("shape=[2, 3]"), "{dbg}");
    // afterwards everything works again, and the write inside took effect
    assert_eq!(p.data()?.to_vec::<f32>()?[0], 7.0);
    p.set_data(&Tensor::zeros(&[2, 3]))?;
    Ok(())
}

#[test]
fn a_custom_initializer_reading_its_own_parameter_gets_an_error() -> Result<()> {
    let slot: Arc<std::sync::Mutex<Option<Param>>> = Arc::default();
    let seen = slot.clone();
    let init = Init::custom(move |shape, _| {
        let me = seen.lock().ok().and_then(|g| g.clone());
        match me {
            // reads itself while being materialized: no deadlock, an error
            Some(p) => p.data().map(|_| Tensor::zeros(shape)),
            None => Ok(Tensor::zeros(shape)),
        }
    });
    let p = Param::deferred(&[Some(2), None], init.clone());
    if let Ok(mut g) = slot.lock() {
        *g = Some(p.clone());
    }
    assert!(matches!(
        p.materialize(&[2, 4], None),
        Err(Error::Uninitialized { .. })
    ));
    assert!(!p.is_initialized());
    // the same for a re-initialization of a ready parameter: no deadlock
    let q = Param::new(Tensor::ones(&[3]))?;
    let seen_q = q.clone();
    let r = q.reinit(&Init::custom(move |shape, _| {
        let v = seen_q.data()?;
        v.add(&Tensor::ones(shape))
    }));
    r?;
    assert_eq!(q.data()?.to_vec::<f32>()?, vec![2.0; 3]);
    Ok(())
}
