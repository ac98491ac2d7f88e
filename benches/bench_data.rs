//! Benchmarks of `nn::data`, beside PyTorch's `torch.utils.data` in the same run:
//!
//! - D1: one shuffled epoch of a 60,000 x 784 f32 `TensorDataset` (with i64 labels),
//!   batch 128, no workers, ours vs `DataLoader(num_workers=0)`.
//! - D2: one epoch of 5,000 3x32x32 images through RandomCrop(32, padding=4) +
//!   RandomHorizontalFlip + Normalize, batch 128: ours with 0 and 2 workers, PyTorch's
//!   with 0 and 2 (torchvision's transforms when importable, the same ops in torch
//!   otherwise).
//! - D3 (`d3 MB`, opt-in): a memory-mapped `.npy` of MB megabytes iterated once in
//!   batches of 128 rows; prints the peak resident set (Linux `VmHWM`). Run it alone:
//!   the process's peak includes whatever ran before.
//!
//! `cargo bench --bench bench_data [-- d1] [d2] [d3 MB]` (default `d1 d2`); the
//! PyTorch side runs `tools/bench_data_torch.py` with `$PYTHON` (default `python3`) and is
//! skipped with a note when that fails. Median of 5 epochs after one warm-up epoch.

use nn::data::readers::NpyFile;
use nn::data::{
    Compose, DataLoader, Dataset, Normalize, RandomCrop, RandomHorizontalFlip, TensorDataset,
    Transformed,
};
use nn::{Result, Tensor};
use std::process::Command;

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::{Plan, Warm};

/// Median seconds of one epoch of `loader` (5 after one warm-up), and the batch count.
fn epoch_time<D>(loader: &mut DataLoader<D>) -> Result<f64>
where
    D: Dataset + 'static,
    D::Item: nn::data::Stack,
{
    let mut epoch = 0;
    let (median, _) = Plan {
        warm: Warm::Calls(1),
        reps: 5,
        inner: 1,
    }
    .run(|| {
        loader.set_epoch(epoch);
        epoch += 1;
        for b in loader.iter() {
            b?;
        }
        Ok(())
    })?;
    Ok(median)
}

fn torch(args: &[&str]) -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/bench_data_torch.py");
    let out = Command::new(python).arg(script).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "(PyTorch side failed: {})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `median_s` of the JSON line of `variant` in the PyTorch script's output.
fn torch_median(out: &Option<String>, variant: &str) -> Option<f64> {
    out.as_ref()?
        .lines()
        .find(|l| l.contains(&format!("\"variant\": \"{variant}\"")))
        .and_then(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["median_s"].as_f64()
        })
}

fn row(workload: &str, variant: &str, s: f64, theirs: Option<f64>) {
    let ratio = theirs.map_or(String::new(), |t| {
        format!(", PyTorch {:.1} ms: {:.2}x", t * 1e3, t / s)
    });
    println!("{workload} {variant}: {:.1} ms per epoch{ratio}", s * 1e3);
}

fn d1() -> Result<()> {
    nn::manual_seed(0);
    let x = Tensor::rand(&[60_000, 784]);
    let y = Tensor::randint(&[60_000], 0, 10)?;
    let mut loader = DataLoader::builder(TensorDataset::new((x, y))?)
        .batch_size(128)
        .shuffle(true)
        .seed(0)
        .build()?;
    let ours = epoch_time(&mut loader)?;
    let t = torch(&["d1"]);
    row(
        "D1",
        "60000x784, batch 128, shuffled, 0 workers",
        ours,
        torch_median(&t, "workers0"),
    );
    Ok(())
}

fn d2() -> Result<()> {
    nn::manual_seed(0);
    let images = Tensor::rand(&[5_000, 3, 32, 32]);
    let y = Tensor::randint(&[5_000], 0, 10)?;
    let t = torch(&["d2"]);
    let mut base = None;
    for workers in [0, 2] {
        let aug = Compose(vec![
            Box::new(RandomCrop::new(32, 4)),
            Box::new(RandomHorizontalFlip::default()),
            Box::new(Normalize::new(
                vec![0.49, 0.48, 0.45],
                vec![0.25, 0.24, 0.26],
            )?),
        ]);
        let ds = Transformed::new(TensorDataset::new((images.clone(), y.clone()))?, aug, 0);
        let mut loader = DataLoader::builder(ds)
            .batch_size(128)
            .shuffle(true)
            .seed(0)
            .num_workers(workers)
            .build()?;
        let s = epoch_time(&mut loader)?;
        let theirs = torch_median(&t, &format!("workers{workers}"));
        row(
            "D2",
            &format!("crop+flip+normalize 3x32x32, {workers} workers"),
            s,
            theirs,
        );
        match base {
            None => base = Some(s),
            Some(b) => println!("D2 ours: 2 workers vs 0: {:.2}x", b / s),
        }
    }
    Ok(())
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|kb| kb / 1024.0)
}

fn d3(mb: usize) -> Result<()> {
    let cols = 1024usize;
    let rows = mb * (1 << 20) / (cols * 4);
    let path = std::env::temp_dir().join(format!("nn-bench-d3-{}.npy", std::process::id()));
    // written in slices so the writer's memory stays small
    let chunk = Tensor::rand(&[rows.min(1024), cols]);
    let bytes = nn::data::readers::npy::npy_header(nn::DType::F32, &[rows, cols])?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).map_err(|e| nn::Error::io(&path, e))?;
        f.write_all(&bytes).map_err(|e| nn::Error::io(&path, e))?;
        let data = chunk.to_host()?.to_le_bytes();
        let mut left = rows;
        while left > 0 {
            let n = left.min(chunk.shape()[0]);
            f.write_all(&data[..n * cols * 4])
                .map_err(|e| nn::Error::io(&path, e))?;
            left -= n;
        }
    }
    let before = peak_rss_mib().unwrap_or(f64::NAN);
    let file = NpyFile::open(&path)?;
    let loader = DataLoader::builder(file).batch_size(128).build()?;
    let t = std::time::Instant::now();
    let mut n = 0usize;
    for b in &loader {
        n += b?.shape()[0];
    }
    println!(
        "D3 mapped .npy of {mb} MB ({n} rows): {:.2} s, peak RSS {:.0} MiB ({before:.0} MiB before reading)",
        t.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    std::fs::remove_file(&path).map_err(|e| nn::Error::io(&path, e))?;
    Ok(())
}

fn main() -> Result<()> {
    let args = bench_util::args();
    let want = |w: &str| args.is_empty() || args.iter().any(|a| a == w);
    if let Some(i) = args.iter().position(|a| a == "d3") {
        let mb = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(2048);
        return d3(mb);
    }
    if want("d1") {
        d1()?;
    }
    if want("d2") {
        d2()?;
    }
    Ok(())
}
