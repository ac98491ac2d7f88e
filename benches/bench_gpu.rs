//! Benchmark G1: one training step of the W2 network (784-1024-1024-10 MLP with ReLU,
//! batch 128, cross-entropy, backward, SGD) on the CPU and on the GPU, side by side.
//! `benches/g1_torch.py` times the same step in PyTorch.
//!
//! Run: `cargo bench --features cuda --bench bench_gpu` (`NN_BENCH_STEPS=N`
//! sets the number of timed steps).

use nn::{Device, Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};
use std::time::Instant;

type Net = Sequential<(Linear, ReLU, Linear, ReLU, Linear)>;

fn step(net: &Net, x: &Tensor, t: &Tensor, lr: f32) -> Result<Tensor> {
    net.zero_grad();
    let loss = net.forward(x)?.cross_entropy(t)?;
    loss.backward()?;
    for p in net.parameters() {
        if let Some(g) = p.grad() {
            p.update(|d| d.sub(&g.mul_scalar(lr)?))?;
        }
    }
    Ok(loss)
}

fn sync(dev: &Device) -> Result<()> {
    dev.synchronize()
}

/// Milliseconds per step (median of `steps` timed steps after `warmup`) and the last loss.
fn time_on(dev: &Device, warmup: usize, steps: usize) -> Result<(f64, f32)> {
    nn::manual_seed(0);
    let mut net: Net = Sequential::new((
        Linear::new(784, 1024),
        ReLU,
        Linear::new(1024, 1024),
        ReLU,
        Linear::new(1024, 10),
    ));
    net.to_device(dev)?;
    let x = Tensor::randn(&[128, 784]).to_device(dev)?;
    let t = Tensor::randint(&[128], 0, 10)?.to_device(dev)?;
    for _ in 0..warmup {
        step(&net, &x, &t, 0.01)?;
    }
    sync(dev)?;
    let mut times = Vec::with_capacity(steps);
    let mut loss = Tensor::scalar(0.0);
    for _ in 0..steps {
        let t0 = Instant::now();
        loss = step(&net, &x, &t, 0.01)?;
        sync(dev)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times[times.len() / 2], loss.item()?))
}

fn main() -> Result<()> {
    let steps: usize = std::env::var("NN_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("G1: W2 training step (784-1024-1024-10, batch 128, CE, backward, SGD)");
    let (cpu_ms, cpu_loss) = time_on(&Device::Cpu, 2, steps)?;
    println!(
        "{:<28} {:>10.3} ms/step   (loss {cpu_loss:.4})",
        "cpu", cpu_ms
    );
    #[cfg(feature = "cuda")]
    match nn::cuda::device(0) {
        Ok(dev) => {
            let (gpu_ms, gpu_loss) = time_on(&dev, 5, steps.max(20))?;
            println!(
                "{:<28} {:>10.3} ms/step   (loss {gpu_loss:.4})   {:.1}x the cpu",
                dev.to_string(),
                gpu_ms,
                cpu_ms / gpu_ms
            );
        }
        Err(e) => println!("{:<28} no GPU: {e}", "cuda"),
    }
    #[cfg(not(feature = "cuda"))]
    println!("{:<28} no GPU: built without the `cuda` feature", "cuda");
    Ok(())
}
