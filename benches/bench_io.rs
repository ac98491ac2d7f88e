//! Benchmark W4: save and load a ~100M-parameter f32 model (400 MB) in the native format
//! and in safetensors, and print GB/s (median of 5 after a warm-up; the file stays in the
//! page cache). Run with `cargo bench --bench bench_io [-- dir]`; `--json` prints one
//! JSON object per line instead (`workload`, `variant`, `median_s`, `best_s`, `gb_s`, and
//! `peak_rss_mib` on the memory rows), which `benches/side_by_side.py` reads.
//!
//! The machine's own figures beside ours, same run and same bytes: a plain write to a new
//! file with and without `fsync` (what a crash-safe save can at best reach), a plain
//! `fs::read`, and a single-threaded `memcpy` of 400 MB into memory already touched (the
//! ceiling of any load that copies into a model's existing parameters). The memory rows
//! run each load in a fresh child process (`--rss-child KIND PATH`) that builds the model,
//! loads once and reports its peak resident set (Linux `VmHWM`); the model alone is the
//! `model only` row. `--load-only` times only the two loads into a model (for a profiler).

use nn::io::{self, LoadOptions};
use nn::{Forward, Linear, ModuleExt, Result, Sequential, Tensor};

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::{Plan, Warm};

fn time(reps: usize, f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    Plan {
        warm: Warm::Calls(1),
        reps,
        inner: 1,
    }
    .run(f)
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
                "{{\"workload\":\"W4\",\"variant\":\"{variant}\",\"median_s\":{median:e},\"best_s\":{best:e},\"gb_s\":{:.3}}}",
                self.gb / median
            );
        } else {
            println!(
                "{variant:<60} {:>6.2} GB/s (best {:.2})",
                self.gb / median,
                self.gb / best
            );
        }
    }

    fn rss(&self, variant: &str, mib: f64) {
        if self.json {
            println!("{{\"workload\":\"W4\",\"variant\":\"{variant}\",\"peak_rss_mib\":{mib:.1}}}");
        } else {
            println!("{variant:<60} {mib:>6.0} MiB peak RSS");
        }
    }
}

/// 4 x Linear(5000, 5000): 100.02M parameters, 400 MB of f32.
fn make() -> Sequential<(Linear, Linear, Linear, Linear)> {
    Sequential::new((
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
    ))
}

/// Peak resident set of this process in MiB (Linux's VmHWM), if the system says.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The child of a memory row: build the model, do one load of `kind`, print VmHWM.
fn rss_child(kind: &str, path: &str) -> Result<()> {
    let net = make();
    match kind {
        "model" => {}
        "load" => {
            net.load(path)?;
        }
        "load_mmap" => {
            net.load_with(path, &LoadOptions::strict().mmap(true))?;
            // every page of the file read once, as a first use does
            std::hint::black_box(net.forward(&Tensor::rand(&[1, 5000]))?);
        }
        "state_dict_file" => {
            std::hint::black_box(io::load_state_dict_file(path)?);
        }
        other => {
            return Err(nn::Error::invalid_config(
                "bench_io",
                "--rss-child",
                other,
                "model, load, load_mmap or state_dict_file",
            ))
        }
    }
    println!("{:.1}", peak_rss_mib().unwrap_or(f64::NAN));
    Ok(())
}

fn child_rss(kind: &str, path: &std::path::Path) -> Result<f64> {
    let exe = std::env::current_exe().map_err(|e| nn::Error::io("bench_io", e))?;
    let out = std::process::Command::new(&exe)
        .args(["--rss-child", kind])
        .arg(path)
        .output()
        .map_err(|e| nn::Error::io(&exe, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse::<f64>().map_err(|_| nn::Error::NotClose {
        what: format!("bench_io --rss-child {kind}"),
        got: format!("{text:?} {}", String::from_utf8_lossy(&out.stderr)),
        expected: "a number of MiB".into(),
    })
}

fn main() -> Result<()> {
    let args = bench_util::args();
    if let (Some("--rss-child"), Some(kind), Some(path)) =
        (args.first().map(String::as_str), args.get(1), args.get(2))
    {
        return rss_child(kind, path);
    }
    let json = args.iter().any(|a| a == "--json");
    // only the two loads into a model (for profiling them)
    let load_only = args.iter().any(|a| a == "--load-only");
    let given = args.iter().find(|a| !a.starts_with("--"));
    let dir = given.map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("nn-bench-io-{}", std::process::id()))
    });
    // a directory given by the caller (the side-by-side harness shares it with PyTorch's
    // side) keeps existing; only our files go
    let clean = || -> Result<()> {
        if given.is_none() {
            return std::fs::remove_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e));
        }
        for f in ["w4.params", "w4.safetensors", "raw.bin"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        Ok(())
    };
    std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    let (net, fresh, mapped) = (make(), make(), make());
    let mmap = LoadOptions::strict().mmap(true);
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
        if load_only {
            net.save(&path)?;
        } else {
            out.row(
                &format!("{name} save (fsync)"),
                time(5, || net.save(&path))?,
            );
        }
        let verified = if name == "native" {
            ", checksum verified"
        } else {
            ""
        };
        out.row(
            &format!("{name} load into model{verified}"),
            time(5, || net.load(&path).map(|_| ()))?,
        );
        out.row(
            &format!("{name} load into model, mapped (LoadOptions::mmap{verified})"),
            time(5, || mapped.load_with(&path, &mmap).map(|_| ()))?,
        );
        // the loaded models compute what the saved one does
        fresh.load(&path)?;
        mapped.load_with(&path, &mmap)?;
        let want = net.forward(&x)?.to_vec::<f32>()?;
        for (how, m) in [("copied", &fresh), ("mapped", &mapped)] {
            if m.forward(&x)?.to_vec::<f32>()? != want {
                return Err(nn::Error::NotClose {
                    what: format!("{name}: {how} reloaded model's output"),
                    got: "different values".into(),
                    expected: "the saved model's".into(),
                });
            }
        }
        // what a mapped load defers: the pages are read on first use
        for (how, m, opts) in [
            ("copied", &fresh, LoadOptions::strict()),
            ("mapped", &mapped, mmap.clone()),
        ] {
            out.row(
                &format!("{name} load + first forward, {how}"),
                time(5, || {
                    m.load_with(&path, &opts)?;
                    std::hint::black_box(m.forward(&x)?);
                    Ok(())
                })?,
            );
        }
        if load_only {
            continue;
        }
        out.row(
            &format!("{name} load_state_dict_file (new tensors{verified})"),
            time(5, || io::load_state_dict_file(&path).map(|_| ()))?,
        );
        if name == "native" {
            out.row(
                "piece: native open + verify every chunk (io::inspect)",
                time(5, || io::inspect(&path).map(|_| ()))?,
            );
        }
    }
    if load_only {
        return clean();
    }
    // machine baselines for the same bytes
    let path = dir.join("w4.params");
    let bytes = std::fs::read(&path).map_err(|e| nn::Error::io(&path, e))?;
    out.row(
        "baseline: fs::read into a fresh buffer",
        time(5, || {
            std::fs::read(&path)
                .map(|_| ())
                .map_err(|e| nn::Error::io(&path, e))
        })?,
    );
    let mut dst = vec![1u8; bytes.len()];
    out.row(
        "baseline: memcpy into touched memory (1 thread)",
        time(5, || {
            dst.copy_from_slice(&bytes);
            std::hint::black_box(&dst);
            Ok(())
        })?,
    );
    drop(dst);
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
    drop(bytes);
    // peak memory, each in a fresh process
    if cfg!(target_os = "linux") {
        let st = dir.join("w4.safetensors");
        out.rss("peak RSS: model only", child_rss("model", &path)?);
        out.rss(
            "peak RSS: native load into model",
            child_rss("load", &path)?,
        );
        out.rss(
            "peak RSS: safetensors load into model",
            child_rss("load", &st)?,
        );
        out.rss(
            "peak RSS: native mapped load + first forward",
            child_rss("load_mmap", &path)?,
        );
        out.rss(
            "peak RSS: model + native load_state_dict_file",
            child_rss("state_dict_file", &path)?,
        );
    }
    clean()
}
