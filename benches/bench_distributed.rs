//! W8 (benches/PEERS.md): the W2 train step (784-1024-1024-10 ReLU MLP, cross-entropy,
//! SGD, global batch 128) data-parallel over MPI ranks vs one process with the whole batch.
//!
//! ```text
//! BIN=$(benches/bench_bin.sh bench_distributed --features mpi)
//! RAYON_NUM_THREADS=1 $BIN --single --json
//! mpirun --oversubscribe -np 2 -x RAYON_NUM_THREADS=1 $BIN --json
//! ```
//!
//! `--single`: one process, no MPI, the plain W2 step on the whole batch (the baseline).
//! Otherwise each of the `world` ranks trains a `DistributedDataParallel` replica on its
//! `128 / world` rows and the gradients (7.5 MB) are averaged; rank 0 prints.
//! Figures: the step's median and best time, the time the step spent in all-reduce and
//! the bytes it moved (the group's counters), and a lone all-reduce of the same bytes.
//! The scaling efficiency (PyTorch's definition: speedup / world size at the same global
//! batch, i.e. `t_single / t_world / world`) needs both runs: `benches/bench_w8.sh` runs
//! them, and PyTorch's DDP on Gloo (`tools/bench_ddp_torch.py`), interleaved.
//! `--json` prints one JSON object per line, as `bench_report --json` does.
//!
//! `--configs overlap:bucket_mib:first_bucket_mib[:mpi],...` (default
//! [`DEFAULT_CONFIGS`]): the DDP set-ups timed one after the other in the same job
//! (`overlap` is `off`, `nonblocking` or `thread`, see `nn::distributed::Overlap`; `mpi`
//! turns `DdpOptions::shared_memory` off, so the sums go through MPI messages even on
//! one host; `default` is `DdpOptions::default()`); the first one is the `2ranks` row,
//! each other one a `2ranks:<config>` row.

use nn::distributed::{DdpOptions, DistributedDataParallel, Overlap, ProcessGroup, ReduceOp};
use nn::optim::{Optimizer, Sgd};
use nn::{Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};
use std::time::Instant;

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::{Plan, Warm};

const GLOBAL_BATCH: usize = 128;
const REPS: usize = 7;
const INNER: usize = 10;
const WARM: usize = 10;
/// The DDP set-ups timed by default, in this order (`--configs` to pick others): the
/// defaults of `DistributedDataParallel::new` (the `2ranks` row: PyTorch's bucket
/// sizes, sums through shared memory on one host), the same buckets through MPI's
/// non-blocking all-reduces overlapped with backward, and the blocking all-reduce after
/// backward (the set-up before overlap).
const DEFAULT_CONFIGS: &str = "default,nonblocking:25:1:mpi,off:25:25";

type Mlp = Sequential<(Linear, ReLU, Linear, ReLU, Linear)>;

fn mlp() -> Mlp {
    Sequential::new((
        Linear::new(784, 1024),
        ReLU,
        Linear::new(1024, 1024),
        ReLU,
        Linear::new(1024, 10),
    ))
}

/// Median and best seconds per call of `f`, in `REPS` batches of `INNER` calls after
/// `WARM` warm-up calls (a count, not a time as in bench_report: every rank must make the
/// same collective calls). `sync` runs before each batch (a barrier: the ranks start each
/// batch together).
fn time(f: impl FnMut() -> Result<()>, sync: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    Plan {
        warm: Warm::Calls(WARM),
        reps: REPS,
        inner: INNER,
    }
    .run_with(f, sync)
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn print(json: bool, variant: &str, world: usize, fields: &[(&str, f64)]) {
    if json {
        let mut line = format!(
            "{{\"workload\":\"W8\",\"impl\":\"nn\",\"variant\":\"{variant}\",\"world\":{world},\
             \"global_batch\":{GLOBAL_BATCH},\"threads_per_rank\":{}",
            threads()
        );
        for (k, v) in fields {
            line.push_str(&format!(",\"{k}\":{v:e}"));
        }
        println!("{line}}}");
    } else {
        let rest: Vec<String> = fields
            .iter()
            .map(|(k, v)| match *k {
                k if k.ends_with("_s") => format!("{k} {:.3} ms", v * 1e3),
                k => format!("{k} {v}"),
            })
            .collect();
        println!("W8 {variant} (world {world}): {}", rest.join(", "));
    }
}

fn single(json: bool) -> Result<()> {
    nn::manual_seed(0);
    let net = mlp();
    let x = Tensor::rand(&[GLOBAL_BATCH, 784]);
    let t = Tensor::randint(&[GLOBAL_BATCH], 0, 10)?;
    let mut opt = Sgd::with_lr(net.parameters(), 0.01)?;
    let (m, b) = time(
        || {
            opt.zero_grad();
            let loss = net.forward(&x)?.cross_entropy(&t)?;
            loss.backward()?;
            opt.step()
        },
        || Ok(()),
    )?;
    print(json, "1proc", 1, &[("median_s", m), ("best_s", b)]);
    Ok(())
}

/// One DDP set-up to time: `overlap:bucket_mib:first_bucket_mib` (`--configs`).
struct Config {
    spec: String,
    options: DdpOptions,
}

fn parse_config(spec: &str) -> Result<Config> {
    if spec == "default" {
        return Ok(Config {
            spec: spec.to_string(),
            options: DdpOptions::default(),
        });
    }
    let bad = || {
        nn::Error::custom(format!(
            "--configs: `{spec}` is not overlap:bucket_mib:first_bucket_mib[:mpi] \
             (overlap off, nonblocking or thread)"
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (mode, bucket, first, shared_memory) = match parts[..] {
        [mode, bucket, first] => (mode, bucket, first, true),
        [mode, bucket, first, "mpi"] => (mode, bucket, first, false),
        _ => return Err(bad()),
    };
    let overlap = match mode {
        "off" => Overlap::Off,
        "nonblocking" => Overlap::Nonblocking,
        "thread" => Overlap::Thread,
        _ => return Err(bad()),
    };
    let mib = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|v| *v > 0.0)
            .map(|v| (v * (1 << 20) as f64) as usize)
            .ok_or_else(bad)
    };
    Ok(Config {
        spec: spec.to_string(),
        options: DdpOptions {
            bucket_bytes: mib(bucket)?,
            first_bucket_bytes: mib(first)?,
            overlap,
            shared_memory,
        },
    })
}

fn ranks(json: bool, configs: &[Config]) -> Result<()> {
    let group = ProcessGroup::init()?;
    let world = group.world_size();
    let local = GLOBAL_BATCH / world;
    nn::manual_seed(0);
    // every rank draws the same global batch and takes its rows
    let x = Tensor::rand(&[GLOBAL_BATCH, 784]).narrow(0, group.rank() * local, local)?;
    let t = Tensor::randint(&[GLOBAL_BATCH], 0, 10)?.narrow(0, group.rank() * local, local)?;
    for (i, config) in configs.iter().enumerate() {
        nn::manual_seed(1);
        let ddp = DistributedDataParallel::with_options(mlp(), &group, config.options)?;
        let mut opt = Sgd::with_lr(ddp.parameters(), 0.01)?;
        let bytes: usize = ddp.parameters().iter().map(|p| p.numel() * 4).sum();
        let mut step = || {
            opt.zero_grad();
            let loss = ddp.forward(&x)?.cross_entropy(&t)?;
            ddp.backward(&loss)?;
            opt.step()
        };
        // warm-up before the counters are read, so they cover exactly the timed steps
        for _ in 0..3 {
            step()?;
        }
        group.barrier()?;
        let before = group.stats();
        let t0 = Instant::now();
        for _ in 0..REPS * INNER {
            step()?;
        }
        let steps = (REPS * INNER) as f64;
        let wall = t0.elapsed().as_secs_f64() / steps;
        let after = group.stats();
        let reduce_in_step = (after.nanos - before.nanos) as f64 * 1e-9 / steps;
        let bytes_per_step = (after.bytes - before.bytes) as f64 / steps;
        let (m, b) = time(&mut step, || group.barrier())?;
        let mut fields = vec![
            ("median_s", m),
            ("best_s", b),
            ("mean_s", wall),
            ("allreduce_in_step_s", reduce_in_step),
            ("bytes_per_step", bytes_per_step),
            ("buckets", ddp.bucket_count() as f64),
        ];
        if i == 0 {
            // a lone all-reduce of the gradients' size (the same message as PyTorch's figure)
            let flat = Tensor::rand(&[bytes / 4]);
            let (ar, ar_best) = time(
                || group.all_reduce(&flat, ReduceOp::Sum).map(drop),
                || group.barrier(),
            )?;
            fields.extend([
                ("allreduce_s", ar),
                ("allreduce_best_s", ar_best),
                ("allreduce_bytes", bytes as f64),
                ("allreduce_gbps", bytes as f64 / ar / 1e9),
            ]);
        }
        if group.is_root() {
            // the first configuration is the plain `{world}ranks` row
            let variant = match i {
                0 => format!("{world}ranks"),
                _ => format!("{world}ranks:{}", config.spec),
            };
            print(json, &variant, world, &fields);
        }
    }
    group.barrier()
}

fn main() -> Result<()> {
    let args = bench_util::args();
    let json = args.iter().any(|a| a == "--json");
    if args.iter().any(|a| a == "--single") {
        return single(json);
    }
    let specs = args
        .iter()
        .position(|a| a == "--configs")
        .and_then(|i| args.get(i + 1))
        .map_or(DEFAULT_CONFIGS, String::as_str);
    let configs = specs
        .split(',')
        .map(parse_config)
        .collect::<Result<Vec<_>>>()?;
    ranks(json, &configs)
}
