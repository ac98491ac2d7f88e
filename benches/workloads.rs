//! Criterion benchmarks of the benches/PEERS.md workloads: W1 (small forward, layers and raw ops),
//! W2 (MLP train step), W3 (1024^3 matmul, as GFLOP/s via throughput) and W5 (a 100-layer
//! chain, forward + backward). `cargo bench --bench workloads`; for a quick table against
//! PyTorch's figures run `cargo bench --bench bench_report`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nn::optim::{Optimizer, Sgd};
use nn::{DynSequential, Forward, Linear, ModuleExt, ReLU, Sequential, Tensor};

fn w1(c: &mut Criterion) {
    nn::manual_seed(0);
    let net = Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)));
    let x = Tensor::rand(&[2, 20]);
    c.bench_function("W1 forward 20-256-10 batch 2 (layers)", |b| {
        b.iter(|| net.forward(&x))
    });
    let leaf = |t: Tensor| t.with_requires_grad(true);
    let w0 = leaf(Tensor::rand(&[20, 256]));
    let w2 = leaf(Tensor::rand(&[256, 10]));
    let (b0, b2) = (leaf(Tensor::zeros(&[256])), leaf(Tensor::zeros(&[10])));
    c.bench_function("W1 forward raw ops", |b| {
        b.iter(|| -> nn::Result<Tensor> {
            let h = x.matmul(&w0)?.add(&b0)?.relu()?;
            h.matmul(&w2)?.add(&b2)
        })
    });
}

fn w2(c: &mut Criterion) {
    nn::manual_seed(0);
    let net = Sequential::new((
        Linear::new(784, 1024),
        ReLU,
        Linear::new(1024, 1024),
        ReLU,
        Linear::new(1024, 10),
    ));
    let x = Tensor::rand(&[128, 784]);
    let Ok(t) = Tensor::randint(&[128], 0, 10) else {
        return;
    };
    let Ok(mut opt) = Sgd::with_lr(net.parameters(), 0.01) else {
        return;
    };
    let mut g = c.benchmark_group("W2");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("train step 784-1024-1024-10 batch 128", |b| {
        b.iter(|| -> nn::Result<()> {
            opt.zero_grad();
            let loss = net.forward(&x)?.cross_entropy(&t)?;
            loss.backward()?;
            opt.step()
        })
    });
    g.finish();
}

fn w3(c: &mut Criterion) {
    let a = Tensor::rand(&[1024, 1024]);
    let m = Tensor::rand(&[1024, 1024]);
    let mut g = c.benchmark_group("W3");
    g.sample_size(20);
    // criterion reports elements/s: read it as FLOP/s
    g.throughput(Throughput::Elements(2 * 1024 * 1024 * 1024));
    g.bench_function("matmul 1024^3 f32 (FLOP/s)", |b| b.iter(|| a.matmul(&m)));
    g.finish();
}

fn w5(c: &mut Criterion) {
    nn::manual_seed(0);
    let mut deep = DynSequential::new();
    for _ in 0..100 {
        deep.push(Linear::new(64, 64));
        deep.push(ReLU);
    }
    let x = Tensor::rand(&[8, 64]);
    c.bench_function("W5 100x(Linear(64,64)+ReLU) batch 8 fwd+sum+bwd", |b| {
        b.iter(|| -> nn::Result<()> {
            deep.zero_grad();
            deep.forward(&x)?.sum()?.backward()
        })
    });
}

criterion_group!(benches, w1, w2, w3, w5);
criterion_main!(benches);
