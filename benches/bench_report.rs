//! Times the benchmark workloads (W1, W2, W3, W5 of benches/PEERS.md) with warm-up and medians.
//!
//! Run: `cargo bench --bench bench_report` (about 20 s) for a table, or with `-- --json`
//! for one JSON object per line (`workload`, `variant`, `median_s`, `best_s`, and `gflops` where
//! it means something), which `benches/side_by_side.py` reads to put PyTorch's figures beside
//! ours from the same run. Name workloads to run only those (`... -- w1 w5`), e.g. under
//! `valgrind --tool=callgrind $(benches/bench_bin.sh bench_report) w5`; `--calls N` then runs
//! each workload's body exactly N times with no warm-up and no timing, so instruction counts
//! divide evenly. Threads: `RAYON_NUM_THREADS=1` runs everything on one core.

use nn::optim::{Optimizer, Sgd};
use nn::{DynSequential, Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::{Plan, Warm};

/// `--calls N`: run each body exactly N times, untimed (0: time as usual).
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Median and best seconds per call of `f`, timed in `reps` batches of `inner` calls after
/// a 300 ms warm-up (with `--calls N`: N untimed calls, NaN figures).
fn time(reps: usize, inner: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let calls = CALLS.load(Ordering::Relaxed);
    if calls > 0 {
        for _ in 0..calls {
            f()?;
        }
        return Ok((f64::NAN, f64::NAN));
    }
    Plan {
        warm: Warm::For(Duration::from_millis(300)),
        reps,
        inner,
    }
    .run(f)
}

/// One measured variant of a workload.
struct Row {
    workload: &'static str,
    variant: &'static str,
    label: &'static str,
    median_s: f64,
    best_s: f64,
    /// Floating-point operations per call, where a GFLOP/s figure means something.
    flop: Option<f64>,
}

impl Row {
    fn print(&self, json: bool) {
        let gflops = |s: f64| self.flop.map(|f| f / s / 1e9);
        if json {
            let mut line = format!(
                "{{\"workload\":\"{}\",\"variant\":\"{}\",\"median_s\":{:e},\"best_s\":{:e}",
                self.workload, self.variant, self.median_s, self.best_s
            );
            if let (Some(m), Some(b)) = (gflops(self.median_s), gflops(self.best_s)) {
                line.push_str(&format!(",\"gflops\":{m:.2},\"gflops_best\":{b:.2}"));
            }
            println!("{line}}}");
            return;
        }
        let unit = |s: f64| match (gflops(s), s) {
            (Some(g), _) => format!("{g:.1} GFLOP/s"),
            (None, s) if s < 1e-3 => format!("{:.2} µs", s * 1e6),
            (None, s) => format!("{:.3} ms", s * 1e3),
        };
        println!(
            "{:<58} {:>16} {:>16}",
            format!("{} {}", self.workload, self.label),
            unit(self.median_s),
            unit(self.best_s)
        );
    }
}

/// A workload: runs and returns its measured variants.
type Workload = fn() -> Result<Vec<Row>>;

fn main() -> Result<()> {
    nn::manual_seed(0);
    let args = bench_util::args();
    let json = args.iter().any(|a| a == "--json");
    let mut names: Vec<&String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--calls" {
            let n = it.next().and_then(|n| n.parse().ok()).ok_or_else(|| {
                nn::Error::invalid_config("bench_report", "--calls", "", "expected a count")
            })?;
            CALLS.store(n, Ordering::Relaxed);
        } else if !a.starts_with("--") {
            names.push(a);
        }
    }
    let want = |w: &str| names.is_empty() || names.iter().any(|a| a.eq_ignore_ascii_case(w));
    if !json {
        println!("{:<58} {:>16} {:>16}", "workload", "median", "best");
    }
    let workloads: [(&str, Workload); 4] = [("w1", w1), ("w2", w2), ("w3", w3), ("w5", w5)];
    for (name, run) in workloads {
        if want(name) {
            for row in run()? {
                row.print(json);
            }
        }
    }
    Ok(())
}

fn w1() -> Result<Vec<Row>> {
    // W1: forward of the book's MLP, batch 2, grad tracking on
    let net = Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)));
    let x = Tensor::rand(&[2, 20]);
    let (m, b) = time(30, 2000, || net.forward(&x).map(drop))?;
    let layers = Row {
        workload: "W1",
        variant: "layers",
        label: "forward 20-256-10 batch 2 (layers)",
        median_s: m,
        best_s: b,
        flop: None,
    };
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
    let raw = Row {
        workload: "W1",
        variant: "raw ops",
        label: "raw ops (matmul, add, relu)",
        median_s: m,
        best_s: b,
        flop: None,
    };
    Ok(vec![layers, raw])
}

fn w2() -> Result<Vec<Row>> {
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
    Ok(vec![Row {
        workload: "W2",
        variant: "sgd-step",
        label: "train step 784-1024-1024-10 batch 128 (CE+bwd+SGD)",
        median_s: m,
        best_s: b,
        flop: None,
    }])
}

fn w3() -> Result<Vec<Row>> {
    // W3: 1024^3 matmul
    let a = Tensor::rand(&[1024, 1024]);
    let c = Tensor::rand(&[1024, 1024]);
    let (m, b) = time(9, 3, || a.matmul(&c).map(drop))?;
    Ok(vec![Row {
        workload: "W3",
        variant: "matmul1024",
        label: "matmul 1024^3 f32",
        median_s: m,
        best_s: b,
        flop: Some(2.0 * 1024f64.powi(3)),
    }])
}

fn w5() -> Result<Vec<Row>> {
    // W5: 100 x (Linear(64,64) + ReLU), batch 8, forward + sum + backward
    let mut deep = DynSequential::new();
    for _ in 0..100 {
        deep.push(Linear::new(64, 64));
        deep.push(ReLU);
    }
    let x = Tensor::rand(&[8, 64]);
    let mut step = || {
        deep.zero_grad();
        deep.forward(&x)?.sum()?.backward()
    };
    let (m, b) = time(15, 20, &mut step)?;
    let plain = Row {
        workload: "W5",
        variant: "fwd+bwd",
        label: "100x(Linear(64,64)+ReLU) batch 8 fwd+sum+bwd",
        median_s: m,
        best_s: b,
        flop: None,
    };
    // At the default init the first layers' gradients are subnormal, which x86 computes
    // on through slow microcode assists: the same step with them flushed to zero
    // (`torch.set_flush_denormal(True)` is PyTorch's twin of the switch).
    nn::cpu::set_flush_denormal(true);
    let ftz = time(15, 20, &mut step);
    nn::cpu::set_flush_denormal(false);
    let (m, b) = ftz?;
    Ok(vec![
        plain,
        Row {
            workload: "W5",
            variant: "fwd+bwd flush-denormal",
            label: "the same, subnormals flushed to zero",
            median_s: m,
            best_s: b,
            flop: None,
        },
    ])
}
