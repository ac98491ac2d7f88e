//! Times the benchmark workloads (W1, W2, W3, W5 of benches/PEERS.md) with warm-up and medians,
//! and prints them next to PyTorch's figures on the same kind of 2-core machine.
//!
//! Run: `cargo run --release --example bench_report` (about 20 s); name workloads to run
//! only those (`... -- w1 w5`), e.g. under `valgrind --tool=callgrind`.

use nn::optim::{Optimizer, Sgd};
use nn::{DynSequential, Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};
use std::time::{Duration, Instant};

/// Median and best seconds per call of `f`, timed in `reps` batches of `inner` calls after
/// a warm-up.
fn time(reps: usize, inner: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        f()?;
    }
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..inner {
            f()?;
        }
        v.push(t.elapsed().as_secs_f64() / inner as f64);
    }
    v.sort_by(f64::total_cmp);
    Ok((v[v.len() / 2], v[0]))
}

fn main() -> Result<()> {
    nn::manual_seed(0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |w: &str| args.is_empty() || args.iter().any(|a| a.eq_ignore_ascii_case(w));
    println!(
        "{:<58} {:>12} {:>12} {:>14}",
        "workload", "ours (med)", "best", "PyTorch / target"
    );

    if want("w1") {
        w1()?;
    }
    if want("w2") {
        w2()?;
    }
    if want("w3") {
        w3()?;
    }
    if want("w5") {
        w5()?;
    }
    Ok(())
}

fn w1() -> Result<()> {
    // W1: forward of the book's MLP, batch 2, grad tracking on
    let net = Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)));
    let x = Tensor::rand(&[2, 20]);
    let (m, b) = time(30, 2000, || net.forward(&x).map(drop))?;
    println!(
        "{:<58} {:>9.2} µs {:>9.2} µs {:>14}",
        "W1 forward 20-256-10 batch 2 (layers)",
        m * 1e6,
        b * 1e6,
        "36.7 µs / ≤2"
    );
    // the same weights as plain leaves requiring grad, pre-transposed to [in, out]
    let leaf = |t: Tensor| t.detach().with_requires_grad(true);
    let w0 = leaf(net.0.weight.data()?.t()?);
    let w2 = leaf(net.2.weight.data()?.t()?);
    let b0 = leaf(Tensor::zeros(&[256]));
    let b2 = leaf(Tensor::zeros(&[10]));
    let (m, b) = time(30, 2000, || {
        let h = x.matmul(&w0)?.add(&b0)?.relu()?;
        h.matmul(&w2)?.add(&b2).map(drop)
    })?;
    println!(
        "{:<58} {:>9.2} µs {:>9.2} µs {:>14}",
        "W1 raw ops (matmul, add, relu)",
        m * 1e6,
        b * 1e6,
        "13.8 µs"
    );

    Ok(())
}

fn w2() -> Result<()> {
    // W2: train step 784-1024-1024-10, batch 128
    let net = Sequential::new((
        Linear::new(784, 1024),
        ReLU,
        Linear::new(1024, 1024),
        ReLU,
        Linear::new(1024, 10),
    ));
    let x = Tensor::rand(&[128, 784]);
    let t = Tensor::randint(&[128], 0, 10)?;
    let mut opt = Sgd::with_lr(net.parameters(), 0.01)?;
    let (m, b) = time(7, 10, || {
        opt.zero_grad();
        let loss = net.forward(&x)?.cross_entropy(&t)?;
        loss.backward()?;
        opt.step()
    })?;
    println!(
        "{:<58} {:>6.1} steps/s {:>6.1} steps/s {:>14}",
        "W2 train step 784-1024-1024-10 batch 128 (CE+bwd+SGD)",
        1.0 / m,
        1.0 / b,
        "87 / ≥115"
    );

    Ok(())
}

fn w3() -> Result<()> {
    // W3: 1024^3 matmul
    let a = Tensor::rand(&[1024, 1024]);
    let c = Tensor::rand(&[1024, 1024]);
    let (m, b) = time(9, 3, || a.matmul(&c).map(drop))?;
    let flop = 2.0 * 1024f64.powi(3);
    println!(
        "{:<58} {:>6.1} GFLOP/s {:>6.1} GFLOP/s {:>14}",
        "W3 matmul 1024^3 f32",
        flop / m / 1e9,
        flop / b / 1e9,
        "179 / ≥178"
    );

    Ok(())
}

fn w5() -> Result<()> {
    // W5: 100 x (Linear(64,64) + ReLU), batch 8, forward + sum + backward
    let mut deep = DynSequential::new();
    for _ in 0..100 {
        deep.push(Linear::new(64, 64));
        deep.push(ReLU);
    }
    let x = Tensor::rand(&[8, 64]);
    let (m, b) = time(15, 20, || {
        deep.zero_grad();
        deep.forward(&x)?.sum()?.backward()
    })?;
    println!(
        "{:<58} {:>9.3} ms {:>9.3} ms {:>14}",
        "W5 100x(Linear(64,64)+ReLU) batch 8 fwd+sum+bwd",
        m * 1e3,
        b * 1e3,
        "6.28 ms / ≤0.6"
    );
    Ok(())
}
