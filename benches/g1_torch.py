"""Benchmark G1 in PyTorch: one W2 training step (784-1024-1024-10 MLP with ReLU, batch
128, cross-entropy, backward, SGD), on the CPU and on the GPU when there is one.
The Rust side is `cargo bench --features cuda --bench bench_gpu`.

Run: python3 benches/g1_torch.py [steps]
"""
import sys
import time

import torch
from torch import nn


def time_on(device, warmup, steps):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    ).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(128, 784, device=device)
    t = torch.randint(0, 10, (128,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), t)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], loss.item()


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print("G1 (PyTorch %s): W2 training step (784-1024-1024-10, batch 128, CE, backward, SGD)" % torch.__version__)
    ms, loss = time_on(torch.device("cpu"), 2, steps)
    print("%-28s %10.3f ms/step   (loss %.4f)" % ("cpu", ms, loss))
    if torch.cuda.is_available():
        dev = torch.device("cuda:0")
        gms, gloss = time_on(dev, 5, max(steps, 20))
        print("%-28s %10.3f ms/step   (loss %.4f)   %.1fx the cpu" % (str(dev), gms, gloss, ms / gms))
    else:
        print("%-28s no GPU" % "cuda")


if __name__ == "__main__":
    main()
