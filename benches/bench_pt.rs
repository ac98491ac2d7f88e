//! Benchmark W4p: load a 400 MB `torch.save` state dict (4 x Linear(5000, 5000), f32)
//! into a model with `model.load(path)`, and print one JSON line (median and best of
//! `--reps` loads after a warm-up, seconds; the file stays in the page cache).
//!
//! `tools/bench_pt.py` writes the file with PyTorch and runs this beside
//! `torch.load(path, weights_only=True)` + `load_state_dict(strict=True)`, interleaved.
//! By hand: `cargo bench --bench bench_pt -- FILE [REPS]`.

use nn::{Linear, ModuleExt, Result, Sequential};
use std::time::Instant;

fn main() -> Result<()> {
    // without the `--bench` flag `cargo bench` appends
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let Some(path) = args.next() else {
        // a plain `cargo bench` runs every benchmark: this one needs its file
        eprintln!("bench_pt: skipped, no FILE (usage: cargo bench --bench bench_pt -- FILE.pt [REPS]; tools/bench_pt.py writes the file and runs it)");
        return Ok(());
    };
    let reps: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5).max(1);
    let net = Sequential::new((
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
    ));
    let bytes = (net.num_parameters() * 4) as f64;
    net.load(&path)?; // warm-up: page cache, first-touch of the model's memory
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        net.load(&path)?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    let (median, best) = (ts[ts.len() / 2], ts[0]);
    println!(
        "{{\"peer\": \"nn\", \"what\": \"model.load(.pt)\", \"median\": {median:.6}, \"min\": {best:.6}, \"GB/s\": {:.3}}}",
        bytes / median / 1e9
    );
    Ok(())
}
