//! Tests of the backward sweep: accumulation, freed graphs, failing backwards, leaf roots,
//! post-accumulate-grad hooks.

use super::*;

fn leaf(v: &[f32]) -> Result<Tensor> {
    Ok(Tensor::from_vec(v.to_vec(), &[v.len()])?.with_requires_grad(true))
}

/// An op with the value of its input whose backward fails.
fn failing(x: &Tensor) -> Tensor {
    record(x.storage().clone(), x.shape_dims(), &[x], "failing", || {
        backward_fn(|_, _| Err(Error::custom("failing: on purpose")))
    })
}

#[test]
fn reused_intermediates_sum_their_gradients() -> Result<()> {
    // a = x^2 feeds b = a + a and c = b * a = 2 x^4, so dc/dx = 8 x^3
    let x = leaf(&[1.0, -2.0, 0.5])?;
    let a = x.mul(&x)?;
    let c = a.add(&a)?.mul(&a)?;
    c.sum()?.backward()?;
    let g = x.grad().map(|g| g.to_vec::<f32>()).transpose()?;
    assert_eq!(g, Some(vec![8.0, -64.0, 1.0]));
    Ok(())
}

#[test]
fn a_second_backward_adds_to_the_leaf_and_a_freed_graph_is_an_error() -> Result<()> {
    let x = leaf(&[3.0])?;
    x.mul(&x)?.backward()?;
    let y = x.mul(&x)?;
    y.backward()?;
    assert_eq!(
        x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
        Some(vec![12.0])
    );
    let again = y.backward();
    assert!(
        matches!(
            &again,
            Err(Error::Backward {
                op: None,
                problem: BackwardProblem::GraphFreed
            })
        ),
        "{again:?}"
    );
    Ok(())
}

#[test]
fn a_failing_backward_leaves_every_gradient_as_it_was() -> Result<()> {
    // x reaches the root through a good path and a failing one; whichever runs first,
    // no slot is written
    let x = leaf(&[1.0, 2.0])?;
    let w = leaf(&[5.0, 6.0])?;
    let root = x.mul(&w)?.add(&failing(&x))?.sum()?;
    assert!(root.backward().is_err());
    assert!(x.grad().is_none() && w.grad().is_none());
    Ok(())
}

#[test]
fn a_leaf_root_gets_the_output_gradient() -> Result<()> {
    let x = leaf(&[1.0, 2.0])?;
    x.backward_with(&Tensor::from_vec(vec![0.5f32, 4.0], &[2])?)?;
    assert_eq!(
        x.grad().map(|g| g.to_vec::<f32>()).transpose()?,
        Some(vec![0.5, 4.0])
    );
    Ok(())
}

/// `(leaf name, gradient)` per hook call.
type Log = Arc<Mutex<Vec<(&'static str, Vec<f32>)>>>;

/// Records `(name, gradient)` per call of the hook on `t`.
fn log_hook(t: &Tensor, name: &'static str, log: &Log) -> Result<HookHandle> {
    let log = log.clone();
    t.register_post_accumulate_grad_hook(move |g| {
        let v = g.to_vec::<f32>()?;
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, v));
        Ok(())
    })
}

#[test]
fn post_accumulate_hooks_fire_once_per_leaf_with_the_total_last_layer_first() -> Result<()> {
    // h = w1 * x used twice (h * h), then y = (h * h) * w2: w2's gradient is complete
    // after the first node swept, w1's only at the end
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
    let w1 = leaf(&[3.0, -1.0])?;
    let w2 = leaf(&[0.5, 2.0])?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let _h1 = log_hook(&w1, "w1", &log)?;
    let _h2 = log_hook(&w2, "w2", &log)?;
    // a hook that checks the slot already holds the total when it runs
    let w1c = w1.clone();
    let _h3 = w1.register_post_accumulate_grad_hook(move |g| {
        let slot = w1c.grad().map(|s| s.to_vec::<f32>()).transpose()?;
        assert_eq!(slot, Some(g.to_vec::<f32>()?), "the slot holds the total");
        Ok(())
    })?;
    let run = || -> Result<()> {
        let h = w1.mul(&x)?;
        h.mul(&h)?.mul(&w2)?.sum()?.backward()
    };
    run()?;
    // h = [3, -2]: dy/dw2 = h^2 = [9, 4]; dy/dw1 = 2 h x w2 = [3, -16]
    let want1 = vec![("w2", vec![9.0, 4.0]), ("w1", vec![3.0, -16.0])];
    assert_eq!(*log.lock().unwrap_or_else(|e| e.into_inner()), want1);
    // a second backward: the hooks see the accumulated sums, once each again
    run()?;
    let got = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[2..],
        [("w2", vec![18.0, 8.0]), ("w1", vec![6.0, -32.0])]
    );
    Ok(())
}

#[test]
fn post_accumulate_hooks_need_a_leaf_and_can_be_removed() -> Result<()> {
    let x = leaf(&[1.0, 2.0])?;
    let y = x.mul(&x)?;
    let plain = Tensor::from_vec(vec![1.0f32], &[1])?;
    for t in [&y, &plain] {
        let r = t.register_post_accumulate_grad_hook(|_| Ok(()));
        assert!(
            matches!(
                r,
                Err(Error::Backward {
                    problem: BackwardProblem::HookOnNonLeaf,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let h = log_hook(&x, "x", &log)?;
    // a leaf root fires its hooks too
    x.backward_with(&Tensor::from_vec(vec![1.0f32, 1.0], &[2])?)?;
    h.remove();
    h.remove();
    y.sum()?.backward()?;
    assert_eq!(log.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
    Ok(())
}

#[test]
fn a_failing_hook_is_the_backwards_error_and_gradients_are_restored() -> Result<()> {
    let x = leaf(&[1.0, 2.0])?;
    let w = leaf(&[5.0, 6.0])?;
    x.mul(&w)?.sum()?.backward()?;
    let _h = w.register_post_accumulate_grad_hook(|_| Err(Error::custom("hook: no")))?;
    let r = x.mul(&w)?.sum()?.backward();
    assert!(
        matches!(&r, Err(Error::Custom { message, .. }) if message == "hook: no"),
        "{r:?}"
    );
    let get = |t: &Tensor| t.grad().map(|g| g.to_vec::<f32>()).transpose();
    assert_eq!(get(&w)?, Some(vec![1.0, 2.0]), "w as before");
    assert_eq!(get(&x)?, Some(vec![5.0, 6.0]), "x as before");
    // a node failing after a hooked leaf was accumulated restores it too
    let ok = Arc::new(Mutex::new(0));
    let count = ok.clone();
    let v = leaf(&[1.0, 1.0])?;
    let _hv = v.register_post_accumulate_grad_hook(move |_| {
        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Ok(())
    })?;
    let root = failing(&x).mul(&v)?.sum()?;
    assert!(root.backward().is_err());
    assert_eq!(
        *ok.lock().unwrap_or_else(|e| e.into_inner()),
        1,
        "v's hook ran"
    );
    assert!(v.grad().is_none(), "v restored");
    Ok(())
}
