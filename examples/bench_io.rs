//! Benchmark W4: save and load a ~100M-parameter f32 model (400 MB) in the native format
//! and in safetensors, and print GB/s (median of 5 after a warm-up; the file stays in the
//! page cache). Run with `cargo run --release --example bench_io [dir]`; `--json` prints one JSON
//! object per line instead (`workload`, `variant`, `median_s`, `best_s`, `gbps`), which
//! `benches/side_by_side.py` reads. The machine baselines beside ours: a plain write of the same
//! bytes to a new file with and without `fsync` (what a crash-safe save can at best reach), and
//! a plain read.

use nn::io;
use nn::{Linear, ModuleExt, Result, Sequential, Tensor};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    f()?;
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    let best = ts.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((median(ts), best))
}

/// Prints one figure for `bytes` moved in `median`/`best` seconds, as text or a JSON line.
struct Out {
    json: bool,
    gb: f64,
}

impl Out {
    fn row(&self, variant: &str, (median, best): (f64, f64)) {
        if self.json {
            println!(
                "{{\"workload\":\"W4\",\"variant\":\"{variant}\",\"median_s\":{median:e},\"best_s\":{best:e},\"gbps\":{:.3}}}",
                self.gb / median
            );
        } else {
            println!(
                "{variant:<56} {:>6.2} GB/s (best {:.2})",
                self.gb / median,
                self.gb / best
            );
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("nn-bench-io-{}", std::process::id()))
        });
    std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    // 4 x Linear(5000, 5000): 100.02M parameters, 400 MB of f32
    let make = || {
        Sequential::new((
            Linear::new(5000, 5000),
            Linear::new(5000, 5000),
            Linear::new(5000, 5000),
            Linear::new(5000, 5000),
        ))
    };
    let (net, fresh) = (make(), make());
    let n = net.num_parameters();
    let out = Out {
        json,
        gb: (n * 4) as f64 / 1e9,
    };
    if !json {
        println!(
            "W4: {:.2}M f32 parameters ({:.0} MB), dir {}",
            n as f64 / 1e6,
            out.gb * 1e3,
            dir.display()
        );
    }
    let x = Tensor::rand(&[1, 5000]);
    for (name, file) in [("native", "w4.params"), ("safetensors", "w4.safetensors")] {
        let path = dir.join(file);
        out.row(
            &format!("{name} save (fsync)"),
            time(5, || net.save(&path))?,
        );
        let verified = if name == "native" {
            ", checksum verified"
        } else {
            ""
        };
        out.row(
            &format!("{name} load into model{verified}"),
            time(5, || net.load(&path).map(|_| ()))?,
        );
        // the loaded model computes what the saved one does
        use nn::Forward;
        fresh.load(&path)?;
        if fresh.forward(&x)?.to_vec::<f32>()? != net.forward(&x)?.to_vec::<f32>()? {
            return Err(nn::Error::NotClose {
                what: format!("{name}: reloaded model's output"),
                got: "different values".into(),
                expected: "the saved model's".into(),
            });
        }
    }
    // the pieces of a native load, to show where the time goes
    let path = dir.join("w4.params");
    out.row(
        "native load_state_dict_file (new tensors, checksum verified)",
        time(5, || io::load_state_dict_file(&path).map(|_| ()))?,
    );
    let bytes = std::fs::read(&path).map_err(|e| nn::Error::io(&path, e))?;
    out.row(
        "piece: in-memory decode+verify",
        time(5, || io::from_bytes::<nn::StateDict>(&bytes).map(|_| ()))?,
    );
    out.row(
        "piece: crc32 of the bytes",
        time(5, || {
            std::hint::black_box(crc32fast::hash(&bytes));
            Ok(())
        })?,
    );
    // machine baselines for the same bytes
    out.row(
        "baseline: fs::read into a fresh buffer",
        time(5, || {
            std::fs::read(&path)
                .map(|_| ())
                .map_err(|e| nn::Error::io(&path, e))
        })?,
    );
    let raw = dir.join("raw.bin");
    let plain_write = |sync: bool| -> Result<()> {
        use std::io::Write;
        let _ = std::fs::remove_file(&raw);
        let mut f = std::fs::File::create(&raw).map_err(|e| nn::Error::io(&raw, e))?;
        f.write_all(&bytes).map_err(|e| nn::Error::io(&raw, e))?;
        if sync {
            f.sync_all().map_err(|e| nn::Error::io(&raw, e))?;
        }
        Ok(())
    };
    out.row(
        "baseline: plain write to a new file, no fsync",
        time(5, || plain_write(false))?,
    );
    out.row(
        "baseline: plain write to a new file + fsync",
        time(5, || plain_write(true))?,
    );
    std::fs::remove_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    Ok(())
}
