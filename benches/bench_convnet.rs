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
//! `--layers` times each distinct convolution of W6f alone instead (PyTorch's:
//! `benches/conv_layers.py`).

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

/// ResNet-18's distinct convolutions at batch 8 of 64x64: (label, in channels, out
/// channels, kernel, stride, input side, how many the network has). `benches/conv_layers.py`
/// holds the same list for PyTorch.
const LAYERS: [(&str, usize, usize, usize, usize, usize, usize); 11] = [
    ("stem 7x7/2", 3, 64, 7, 2, 64, 1),
    ("l1 3x3", 64, 64, 3, 1, 16, 4),
    ("l2 3x3/2", 64, 128, 3, 2, 16, 1),
    ("l2 1x1/2", 64, 128, 1, 2, 16, 1),
    ("l2 3x3", 128, 128, 3, 1, 8, 3),
    ("l3 3x3/2", 128, 256, 3, 2, 8, 1),
    ("l3 1x1/2", 128, 256, 1, 2, 8, 1),
    ("l3 3x3", 256, 256, 3, 1, 4, 3),
    ("l4 3x3/2", 256, 512, 3, 2, 4, 1),
    ("l4 1x1/2", 256, 512, 1, 2, 4, 1),
    ("l4 3x3", 512, 512, 3, 1, 2, 3),
];

/// Each of [`LAYERS`] alone, without autograd (W6f's convolutions; padding `k / 2`, no
/// bias): one line per layer with its time per call, and the count-weighted total.
fn layers(json: bool) -> Result<()> {
    let mut total = 0.0;
    for (label, c, o, k, s, side, count) in LAYERS {
        let x = Tensor::randn(&[BATCH, c, side, side]);
        let w = Tensor::randn(&[o, c, k, k]);
        let opts = nn::Conv2dOptions::default()
            .stride([s, s])
            .padding([k / 2, k / 2]);
        let r = nn::no_grad(|| time(0, 5, 31, || x.conv2d(&w, None, &opts).map(drop)))?;
        total += r.0 * count as f64;
        print(json, "conv", label, &format!("conv {label} x{count}"), r);
    }
    print(
        json,
        "conv",
        "total",
        "conv all, count-weighted",
        (total, total),
    );
    Ok(())
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
            "--layers" => return layers(json),
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
