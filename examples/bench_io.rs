//! Benchmark W4: save and load a ~100M-parameter f32 model (400 MB) in the native format
//! and in safetensors, and print GB/s (median of 5 after a warm-up; the file stays in the
//! page cache). Run with `cargo run --release --example bench_io [dir]`.

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

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("nn-bench-io-{}", std::process::id()))
        });
    std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    // 4 x Linear(5000, 5000): 100.02M parameters, 400 MB of f32
    let net = Sequential::new((
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
    ));
    let n = net.num_parameters();
    let gb = (n * 4) as f64 / 1e9;
    println!(
        "W4: {:.2}M f32 parameters ({:.0} MB), dir {}",
        n as f64 / 1e6,
        gb * 1e3,
        dir.display()
    );
    let fresh = Sequential::new((
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
        Linear::new(5000, 5000),
    ));
    let x = Tensor::rand(&[1, 5000]);
    for (name, file) in [("native", "w4.params"), ("safetensors", "w4.safetensors")] {
        let path = dir.join(file);
        let (save_med, save_best) = time(5, || net.save(&path))?;
        let (load_med, load_best) = time(5, || net.load(&path).map(|_| ()))?;
        println!(
            "{name:>12}: save {:.2} GB/s (best {:.2}), load {:.2} GB/s (best {:.2}){}",
            gb / save_med,
            gb / save_best,
            gb / load_med,
            gb / load_best,
            if name == "native" {
                ", checksum verified"
            } else {
                ""
            }
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
    let (fresh_load, _) = time(5, || io::load_state_dict_file(&path).map(|_| ()))?;
    println!(
        "native load_state_dict_file (new tensors, checksum verified): {:.2} GB/s",
        gb / fresh_load
    );
    let (read, _) = time(5, || {
        std::fs::read(&path)
            .map(|_| ())
            .map_err(|e| nn::Error::io(&path, e))
    })?;
    let bytes = std::fs::read(&path).map_err(|e| nn::Error::io(&path, e))?;
    let (crc, _) = time(5, || {
        std::hint::black_box(crc32fast::hash(&bytes));
        Ok(())
    })?;
    let (decode, _) = time(5, || io::from_bytes::<nn::StateDict>(&bytes).map(|_| ()))?;
    let raw = dir.join("raw.bin");
    let (write, _) = time(5, || {
        let _ = std::fs::remove_file(&raw);
        std::fs::write(&raw, &bytes).map_err(|e| nn::Error::io(&raw, e))
    })?;
    println!(
        "machine baseline: plain fs::write of the same bytes to a new file (no fsync) {:.2} GB/s",
        gb / write
    );
    println!(
        "pieces: fs::read into a fresh buffer {:.2} GB/s, crc32 {:.2} GB/s, in-memory decode+verify {:.2} GB/s",
        gb / read,
        gb / crc,
        gb / decode
    );
    std::fs::remove_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    Ok(())
}
