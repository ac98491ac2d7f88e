//! Times W6 and W6f (the convnet workloads of issue 10): ResNet-18 (10 classes,
//! `examples/convnet/resnet.rs`) on the CPU, batch 8 of 3x64x64. W6 is one train step (forward in train mode,
//! cross-entropy, backward, SGD); W6f the forward alone in eval mode, without autograd.
//! Each is timed after a warm-up, as the median (and best) of repeated calls; then a
//! second process that runs only W6 steps reports its peak resident memory (VmHWM).
//!
//! ```text
//! cargo bench --bench bench_convnet [-- --json] [--threads N] [w6 w6f rss]
//! ```
//!
//! `--json` prints one object per line (`workload`, `variant`, `median_s`, `best_s`; the
//! memory line has `peak_rss_mb`), which `benches/side_by_side.py` reads beside
//! `benches/torch_peers.py w6 w6f`. `--threads N` sets `RAYON_NUM_THREADS`. `--calls N`
//! runs each body exactly N times, untimed (for `valgrind --tool=callgrind` or `perf`).

#[allow(dead_code)]
#[path = "../examples/convnet/resnet.rs"]
mod resnet;

use nn::optim::{Optimizer, Sgd};
use nn::{Forward, ModuleExt, Result, Tensor};
use resnet::ResNet;

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::{Plan, Warm};

const BATCH: usize = 8;
const SIDE: usize = 64;

/// Median and best seconds per call of `f`: `warm` untimed calls, then `reps` timed ones
/// (or, with `calls > 0`, exactly `calls` untimed calls and NaNs).
fn time(
    calls: usize,
    warm: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    if calls > 0 {
        for _ in 0..calls {
            f()?;
        }
        return Ok((f64::NAN, f64::NAN));
    }
    Plan {
        warm: Warm::Calls(warm),
        reps,
        inner: 1,
    }
    .run(f)
}

fn print(json: bool, workload: &str, variant: &str, label: &str, (m, b): (f64, f64)) {
    if m.is_nan() {
        return; // --calls: nothing was timed
    }
    if json {
        println!("{{\"workload\":\"{workload}\",\"variant\":\"{variant}\",\"median_s\":{m:e},\"best_s\":{b:e}}}");
    } else {
        println!(
            "{:<62} {:>10.2} ms {:>10.2} ms",
            format!("{workload} {label}"),
            m * 1e3,
            b * 1e3
        );
    }
}

/// The model, one batch and its targets.
fn setup() -> Result<(ResNet, Tensor, Tensor)> {
    nn::manual_seed(0);
    let net = ResNet::resnet18(10);
    let x = Tensor::randn(&[BATCH, 3, SIDE, SIDE]);
    let t = Tensor::randint(&[BATCH], 0, 10)?;
    Ok((net, x, t))
}

fn step(net: &ResNet, opt: &mut Sgd, x: &Tensor, t: &Tensor) -> Result<()> {
    opt.zero_grad();
    let loss = net.forward(x)?.cross_entropy(t)?;
    loss.backward()?;
    opt.step()
}

/// Peak resident set of this process in MiB (Linux's VmHWM), if the system says.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The memory run: only W6 steps (3 of them, so the allocator reaches its steady state).
fn rss_only(json: bool) -> Result<()> {
    let (net, x, t) = setup()?;
    let mut opt = Sgd::with_lr(net.parameters(), 0.01)?;
    for _ in 0..3 {
        step(&net, &mut opt, &x, &t)?;
    }
    let Some(mb) = peak_rss_mb() else {
        eprintln!("no /proc/self/status here: peak memory not measured");
        return Ok(());
    };
    if json {
        println!("{{\"workload\":\"W6\",\"variant\":\"peak-rss\",\"peak_rss_mb\":{mb:.1}}}");
    } else {
        println!(
            "{:<62} {mb:>10.1} MiB",
            "W6 peak RSS of a process running only the step"
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = bench_util::args();
    let json = args.iter().any(|a| a == "--json");
    let mut calls = 0;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &'static str| {
            it.next()
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    nn::Error::invalid_config("bench_convnet", flag, "", "expected a count")
                })
        };
        match a.as_str() {
            "--calls" => calls = value("--calls")?,
            // before the first parallel op, which sizes rayon's pool from the variable
            "--threads" => std::env::set_var("RAYON_NUM_THREADS", value("--threads")?.to_string()),
            "--rss-only" => return rss_only(json),
            "--json" => {}
            name => names.push(name.to_ascii_lowercase()),
        }
    }
    let want = |w: &str| names.is_empty() || names.iter().any(|n| n == w);
    if !json && calls == 0 {
        println!(
            "{:<62} {:>13} {:>13}",
            "workload (batch 8, 3x64x64)", "median", "best"
        );
    }
    let (mut net, x, t) = setup()?;
    if want("w6") {
        let mut opt = Sgd::with_lr(net.parameters(), 0.01)?;
        let r = time(calls, 3, 9, || step(&net, &mut opt, &x, &t))?;
        print(
            json,
            "W6",
            "sgd-step",
            "ResNet-18 train step (fwd, CE, bwd, SGD)",
            r,
        );
    }
    if want("w6f") {
        net.eval();
        let r = time(calls, 3, 15, || nn::no_grad(|| net.forward(&x).map(drop)))?;
        print(
            json,
            "W6f",
            "eval-forward",
            "ResNet-18 forward, eval mode, no grad",
            r,
        );
    }
    if want("rss") && calls == 0 {
        // a fresh process, so that W6f and the timing loops do not count
        let exe = std::env::current_exe().map_err(|e| nn::Error::io("current_exe", e))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--rss-only");
        if json {
            cmd.arg("--json");
        }
        let status = cmd.status().map_err(|e| nn::Error::io(&exe, e))?;
        if !status.success() {
            eprintln!("the memory run failed: {status}");
        }
    }
    Ok(())
}
