//! Ops checked against PyTorch on the project's own fixtures (tools/make_fixtures.py,
//! torch 2.15.0): values, and gradients of sum(out * upstream) for every input.

mod common;

use common::assert_close;
use nn::{io, Result, StateDict, Tensor};

fn close(what: &str, got: &Tensor, want: &Tensor) -> Result<()> {
    assert_close(what, got, want, 1e-5)
}

fn fixtures() -> Result<StateDict> {
    io::load_safetensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/project.safetensors"
    ))
}

/// Runs `f` on the case's inputs and compares its output and input gradients.
fn case(sd: &StateDict, name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<()> {
    let get = |k: String| {
        sd.get(&k)
            .cloned()
            .unwrap_or_else(|| panic!("fixture has no `{k}`: rerun tools/make_fixtures.py"))
    };
    let n = (0..)
        .take_while(|i| sd.get(&format!("{name}.in{i}")).is_some())
        .count();
    assert!(n > 0, "no inputs for case {name}");
    let inputs: Vec<Tensor> = (0..n)
        .map(|i| get(format!("{name}.in{i}")).with_requires_grad(true))
        .collect();
    let out = f(&inputs)?;
    close(&format!("{name}.out"), &out, &get(format!("{name}.out")))?;
    out.mul(&get(format!("{name}.upstream")))?
        .sum()?
        .backward()?;
    for (i, x) in inputs.iter().enumerate() {
        let g = x
            .grad()
            .unwrap_or_else(|| panic!("{name}: no gradient for input {i}"));
        close(
            &format!("{name}.grad{i}"),
            &g,
            &get(format!("{name}.grad{i}")),
        )?;
    }
    Ok(())
}

#[test]
fn max_and_min_over_a_dim_route_the_gradient_to_the_returned_index() -> Result<()> {
    let sd = fixtures()?;
    case(&sd, "max_dim_ties", |x| x[0].max_dim(1, false))?;
    case(&sd, "min_dim0_ties", |x| x[0].min_dim(0, false))?;
    case(&sd, "max_dim_keepdim_ties", |x| x[0].max_dim(-1, true))
}

#[test]
fn amax_amin_and_full_max_split_the_gradient_between_ties() -> Result<()> {
    let sd = fixtures()?;
    case(&sd, "amax_ties", |x| x[0].amax(&[1], false))?;
    case(&sd, "amin_dims_ties", |x| x[0].amin(&[0, 2], false))?;
    case(&sd, "max_all_ties", |x| x[0].max())
}

#[test]
fn scalar_operators() -> Result<()> {
    let sd = fixtures()?;
    case(&sd, "scalar_left_ops", |x| {
        ((1.0 - &x[0])? / &x[1])? + (2.0 / &x[1])?
    })
}
