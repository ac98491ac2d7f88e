//! Test helpers: central-difference gradient checks and PyTorch fixture cases.

use crate::{DType, Error, Result, Tensor};

/// Compares autograd's gradients of `sum(f(x) * u)` (u random) with central differences
/// for inputs of the given shapes drawn from N(0, 1).
pub(crate) fn check_grad(
    shapes: &[&[usize]],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    check_grad_with(shapes, false, f)
}

/// Like [`check_grad`], with inputs drawn from [0.5, 2) (for log, sqrt, pow).
pub(crate) fn check_grad_positive(
    shapes: &[&[usize]],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    check_grad_with(shapes, true, f)
}

fn check_grad_with(
    shapes: &[&[usize]],
    positive: bool,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    let mut rng = crate::rng::stream(shapes.len() as u64 * 7919 + shapes[0].len() as u64);
    use rand::RngExt;
    let vals: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| {
            (0..crate::shape::numel(s))
                .map(|_| {
                    if positive {
                        rng.random_range(0.5f32..2.0)
                    } else {
                        // keep away from kinks (0 for relu/abs) so differences are smooth
                        let v: f32 = rng.random_range(0.1f32..1.5);
                        if rng.random::<bool>() {
                            v
                        } else {
                            -v
                        }
                    }
                })
                .collect()
        })
        .collect();
    let inputs: Vec<Tensor> = vals
        .iter()
        .zip(shapes)
        .map(|(v, s)| Tensor::from_slice(v, s).map(|t| t.with_requires_grad(true)))
        .collect::<Result<_>>()?;
    let out = f(&inputs)?;
    let u: Vec<f32> = (0..out.numel())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let ut = Tensor::from_slice(&u, out.shape())?;
    out.mul(&ut)?.sum()?.backward()?;
    let objective = |xs: &[Tensor]| -> Result<f64> {
        let y = crate::no_grad(|| f(xs))?.to_vec::<f32>()?;
        Ok(y.iter().zip(&u).map(|(a, b)| *a as f64 * *b as f64).sum())
    };
    // f32 forward, f64 objective: eps 1e-3 keeps truncation and rounding error ~1e-4
    let eps = 1e-3f32;

    for (i, s) in shapes.iter().enumerate() {
        let analytic = inputs[i]
            .grad()
            .map(|g| g.to_vec::<f32>())
            .transpose()?
            .unwrap_or_else(|| vec![0.0; vals[i].len()]);
        for j in 0..vals[i].len() {
            let probe = |delta: f32| -> Result<f64> {
                let mut v = vals[i].clone();
                v[j] += delta;
                let mut xs: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
                xs[i] = Tensor::from_slice(&v, s)?;
                objective(&xs)
            };
            let numeric = (probe(eps)? - probe(-eps)?) / (2.0 * eps as f64);
            let a = analytic[j] as f64;
            // written so that a NaN on either side fails (every comparison with NaN is
            // false: `diff > tol` let NaN gradients pass)
            let close = (numeric - a).abs() <= 2e-2 + 2e-2 * numeric.abs();
            if !close {
                return Err(Error::NotClose {
                    what: format!("gradient check, input {i} element {j}"),
                    got: format!("autograd {a}"),
                    expected: format!("finite difference {numeric}"),
                });
            }
        }
    }
    Ok(())
}

fn fixtures() -> Result<Vec<u8>> {
    fixture_file("ops.safetensors")
}

/// The bytes of `tests/fixtures/<file>`.
pub(crate) fn fixture_file(file: &str) -> Result<Vec<u8>> {
    let path = format!("{}/../tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).map_err(|e| Error::Io { path, source: e })
}

pub(crate) fn load(st: &safetensors::SafeTensors<'_>, name: &str) -> Result<Tensor> {
    let v = st.tensor(name).map_err(|e| Error::MissingKey {
        container: format!("ops fixtures ({e})"),
        key: name.into(),
    })?;
    let dtype = match v.dtype() {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::I64 => DType::I64,
        d => {
            return Err(Error::Format {
                path: format!("ops fixtures, `{name}`"),
                msg: format!("unsupported dtype {d:?}"),
            })
        }
    };
    Tensor::from_host(crate::HostData::from_le_bytes(dtype, v.data())?, v.shape())
}

pub(crate) fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> Result<()> {
    if got.shape() != want.shape() {
        return Err(Error::mismatch("assert_close", got.shape(), want.shape()));
    }
    let (g, w) = (got.to_vec::<f32>()?, want.to_vec::<f32>()?);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if (a - b).abs() > 1e-4 + 1e-4 * b.abs() {
            return Err(Error::NotClose {
                what: format!("{what}[{i}]"),
                got: a.to_string(),
                expected: format!("{b} (PyTorch)"),
            });
        }
    }
    Ok(())
}

/// Checks `f` on the fixture case `name`: output and every input gradient (for the
/// fixture's upstream gradient) against PyTorch's.
pub(crate) fn fixture_case(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<()> {
    fixture_case_in("ops.safetensors", name, f)
}

/// [`fixture_case`] on the fixture file `tests/fixtures/<file>`.
pub(crate) fn fixture_case_in(
    file: &str,
    name: &str,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    let bytes = fixture_file(file)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
        path: "ops fixtures".into(),
        msg: e.to_string(),
    })?;
    let mut inputs = Vec::new();
    while let Ok(t) = load(&st, &format!("{name}.in{}", inputs.len())) {
        inputs.push(t.with_requires_grad(true));
    }
    let out = f(&inputs)?;
    assert_close(
        &format!("{name}.out"),
        &out,
        &load(&st, &format!("{name}.out"))?,
    )?;
    let up = load(&st, &format!("{name}.upstream"))?;
    out.backward_with(&up)?;
    for (k, x) in inputs.iter().enumerate() {
        if let Ok(want) = load(&st, &format!("{name}.grad{k}")) {
            let got = x.grad().ok_or_else(|| Error::MissingKey {
                container: format!("{name} gradients"),
                key: format!("input {k}"),
            })?;
            assert_close(&format!("{name}.grad{k}"), &got, &want)?;
        }
    }
    Ok(())
}

/// The cross-entropy fixture: logits, int64 targets, mean loss and its gradient.
pub(crate) fn fixture_ce() -> Result<()> {
    let bytes = fixtures()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
        path: "ops fixtures".into(),
        msg: e.to_string(),
    })?;
    let x = load(&st, "cross_entropy.in0")?.with_requires_grad(true);
    let t = load(&st, "cross_entropy.target")?;
    let l = x.cross_entropy(&t)?;
    assert_close("cross_entropy.out", &l, &load(&st, "cross_entropy.out")?)?;
    l.backward()?;
    let g = x.grad().ok_or_else(|| Error::MissingKey {
        container: "cross_entropy gradients".into(),
        key: "input 0".into(),
    })?;
    assert_close(
        "cross_entropy.grad0",
        &g,
        &load(&st, "cross_entropy.grad0")?,
    )
}

#[cfg(test)]
mod tests {
    use super::check_grad;
    use crate::Tensor;

    #[test]
    fn a_nan_gradient_fails_the_check() {
        // 0 * sqrt(x - x) is 0 everywhere (finite difference 0), but autograd's gradient
        // is 0 * inf = NaN: a `diff > tol` comparison with NaN is false and let it pass
        let r = check_grad(&[&[3]], |x| {
            x[0].sub(&x[0].detach())?.sqrt()?.mul_scalar(0.0)
        });
        assert!(r.is_err(), "{r:?}");
        // and a smooth function still passes
        check_grad(&[&[3]], |x: &[Tensor]| x[0].mul(&x[0])).expect("x^2 passes");
    }
}
