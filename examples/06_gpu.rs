//! The book's 5.6 (GPUs), cell by cell: how many GPUs there are, tensors created on or
//! copied to a GPU, operands that must share a device, and a model moved to the GPU.
//! Without a GPU (or without the `cuda` feature) it says so and runs the same cells on
//! the CPU, as the book's `try_gpu()` does.
//!
//! Run: `cargo run --features cuda --example 06_gpu`

use nn::{Device, Forward, Linear, ModuleExt, Result, Sequential, Tensor};

/// GPU `i` if it exists, else the CPU (the book's `try_gpu(i)`).
fn try_gpu(i: usize) -> Device {
    #[cfg(feature = "cuda")]
    {
        nn::cuda::try_device(i)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = i;
        Device::Cpu
    }
}

/// Every GPU, or `[cpu]` (the book's `try_all_gpus()`).
fn try_all_gpus() -> Vec<Device> {
    #[cfg(feature = "cuda")]
    {
        nn::cuda::all_devices()
    }
    #[cfg(not(feature = "cuda"))]
    {
        vec![Device::Cpu]
    }
}

fn main() -> Result<()> {
    // 5.6.1 Computing devices
    #[cfg(feature = "cuda")]
    {
        let n = nn::cuda::device_count();
        println!("nn::cuda::device_count() = {n}");
        if let Err(e) = nn::cuda::device(0) {
            println!("no CUDA GPU here ({e}); the cells below run on the CPU");
        }
    }
    #[cfg(not(feature = "cuda"))]
    println!(
        "built without the `cuda` feature (rerun with --features cuda); the cells below run on the CPU"
    );
    println!(
        "cpu: {}, try_gpu(0): {}, try_gpu(10): {}, try_all_gpus(): {:?}",
        Device::Cpu,
        try_gpu(0),
        try_gpu(10),
        try_all_gpus()
    );

    // 5.6.2 Tensors and GPUs: a tensor is created on the CPU
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
    println!("x.device = {}", x.device());

    // storage on the GPU
    let big_x = Tensor::ones(&[2, 3]).to_device(&try_gpu(0))?;
    println!("X = {big_x} on {}", big_x.device());
    let y = Tensor::rand(&[2, 3]).to_device(&try_gpu(1))?;
    println!("Y = {y} on {}", y.device());

    // copying: X + Y needs both on one device
    match big_x.add(&y) {
        Ok(s) => println!("X + Y = {s} (same device {})", s.device()),
        Err(e) => println!("X + Y across devices is an error: {e}"),
    }
    let z = big_x.to_device(&try_gpu(1))?;
    println!("Z = X copied to {}: {z}", z.device());
    println!("Y + Z = {}", y.add(&z)?);
    // moving to the device a tensor is already on returns the same tensor
    println!(
        "Z.to_device(try_gpu(1)) is Z: {}",
        z.to_device(&try_gpu(1))?.same_storage(&z)
    );

    // 5.6.3 Neural networks and GPUs
    let mut net = Sequential::new((Linear::new(3, 1),));
    net.to_device(&try_gpu(0))?;
    let out = net.forward(&big_x.to_device(&try_gpu(0))?)?;
    println!("net(X) = {out}");
    println!("net[0].weight.data.device = {}", net.0.weight.device());
    // results come back to the host for printing or saving
    println!(
        "back on the cpu: {:?}",
        out.to_device(&Device::Cpu)?.to_vec::<f32>()?
    );
    Ok(())
}
