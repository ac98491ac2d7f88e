#!/usr/bin/env python3
"""PyTorch's side of the project's benchmarks, one JSON object per line.

Pinned: torch==2.15.0, numpy, safetensors (the PyPI wheel runs on the CPU). Each line has
`peer`, `workload`, `variant`, `median_s`, `best_s` (seconds per call), and `gflops` or `gb_s`
(W4; `peak_rss_mib` on its memory rows) where that figure means something: the schema `bench_report --json` and `bench_io --json`
print, so `side_by_side.py` can put both in one table.

usage: python benches/torch_peers.py [w1 w2 w3 w4 w5 m1 w6 ...] [--threads T] [--dir DIR]

Workloads (benches/PEERS.md): W1 forward of Linear(20,256)-ReLU-Linear(256,10) at batch 2;
W2 SGD train step of 784-1024-1024-10 at batch 128; W3 1024^3 f32 matmul; W4 save/load of a
400 MB state dict (4 x Linear(5000,5000)); W5 100 x (Linear(64,64)+ReLU) forward+backward at
batch 8; M1 the main job's digits MLP, 20 epochs of Adam, the training loop alone (the same
split rule, model, optimizer, batch size and epochs as examples/train); W6 a ResNet-18 train
step (torchvision.models.resnet18(weights=None, num_classes=10), batch 8 of 3x64x64: forward,
cross-entropy, backward, SGD) and W6f its eval-mode forward under no_grad (needs
torchvision), then W6's peak RSS (ru_maxrss) of a fresh process that runs only the step
(`peak_rss_mb`; `benches/bench_convnet.rs` is our side).

`--threads` must be applied before torch is imported, hence the environment variables.
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("which", nargs="*", default=["w1", "w2", "w3", "w4", "w5", "m1"])
ap.add_argument("--threads", type=int, default=0, help="0 = torch's default")
ap.add_argument("--dir", default=tempfile.gettempdir(), help="where W4 writes its files")
ap.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
ap.add_argument("--w4-rss", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
args = ap.parse_args()
if args.threads:
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

if args.threads:
    torch.set_num_threads(args.threads)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def emit(workload, variant, med, best, **extra):
    d = dict(peer="torch", workload=workload, variant=variant, median_s=med, best_s=best,
             threads=torch.get_num_threads(), **extra)
    print(json.dumps(d), flush=True)


def bench(f, warm, reps, iters):
    for _ in range(warm):
        f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(iters):
            f()
        ts.append((time.perf_counter() - t) / iters)
    return statistics.median(ts), min(ts)


def w1():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))
    x = torch.randn(2, 20)
    emit("W1", "layers", *bench(lambda: m(x), 2000, 21, 2000))
    with torch.inference_mode():
        emit("W1", "layers, inference_mode", *bench(lambda: m(x), 2000, 21, 2000))
    w0, b0, w2, b2 = (p.detach().requires_grad_() for p in m.parameters())
    emit("W1", "raw ops", *bench(lambda: F.linear(F.linear(x, w0, b0).relu(), w2, b2),
                                 2000, 21, 2000))


def w2():
    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                      nn.Linear(1024, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

    emit("W2", "sgd-step", *bench(step, 5, 20, 10))


def w3():
    n = 1024
    flop = 2.0 * n ** 3
    a, b = torch.randn(n, n), torch.randn(n, n)
    med, best = bench(lambda: torch.mm(a, b), 3, 21, 5)
    emit("W3", "matmul1024", med, best, gflops=flop / med / 1e9, gflops_best=flop / best / 1e9)


def w4():
    torch.manual_seed(4)
    m = nn.Sequential(*[nn.Linear(5000, 5000) for _ in range(4)])
    sd = m.state_dict()
    gb = sum(t.numel() * t.element_size() for t in sd.values()) / 1e9
    pt = os.path.join(args.dir, f"torch_peers_w4_{os.getpid()}.pt")

    def rep(variant, med_best):
        med, best = med_best
        emit("W4", variant, med, best, gb_s=gb / med)

    def save():
        if os.path.exists(pt):
            os.remove(pt)
        torch.save(sd, pt)

    rep("torch.save(state_dict)", bench(save, 1, 5, 1))
    rep("torch.load(weights_only)+load_state_dict",
        bench(lambda: m.load_state_dict(torch.load(pt, weights_only=True)), 1, 5, 1))
    rep("torch.load(weights_only, mmap)+load_state_dict",
        bench(lambda: m.load_state_dict(torch.load(pt, weights_only=True, mmap=True)), 1, 5, 1))
    # peak memory of one load into a fresh model, each in a fresh process
    import subprocess

    for mode in ("model", "load", "mmap"):
        cmd = [sys.executable, os.path.abspath(__file__), "--w4-rss", mode, pt]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        subprocess.run(cmd, check=True)
    os.remove(pt)


def w4_rss(mode, pt):
    import resource

    m = nn.Sequential(*[nn.Linear(5000, 5000) for _ in range(4)])
    if mode != "model":
        m.load_state_dict(torch.load(pt, weights_only=True, mmap=mode == "mmap"))
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    variant = {"model": "peak RSS: model only", "load": "peak RSS: torch.load+load_state_dict",
               "mmap": "peak RSS: torch.load(mmap)+load_state_dict"}[mode]
    print(json.dumps(dict(peer="torch", workload="W4", variant=variant, peak_rss_mib=round(mb, 1),
                          threads=torch.get_num_threads())), flush=True)


def w5():
    torch.manual_seed(5)
    layers = []
    for _ in range(100):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    m = nn.Sequential(*layers)
    x = torch.randn(8, 64)

    def step():
        m.zero_grad(set_to_none=True)
        m(x).sum().backward()

    emit("W5", "fwd+bwd", *bench(step, 50, 21, 50))


def resnet18_case():
    import torchvision

    torch.manual_seed(6)
    m = torchvision.models.resnet18(weights=None, num_classes=10)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

    return m, x, step


def w6_rss_only():
    import resource

    _, _, step = resnet18_case()
    for _ in range(3):
        step()
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(dict(peer="torch", workload="W6", variant="peak-rss", peak_rss_mb=round(mb, 1),
                          threads=torch.get_num_threads())), flush=True)


def w6():
    import subprocess

    m, x, step = resnet18_case()
    emit("W6", "sgd-step", *bench(step, 3, 9, 1))
    m.eval()
    with torch.no_grad():
        emit("W6f", "eval-forward", *bench(lambda: m(x), 3, 15, 1))
    # a fresh process, so that W6f and the timing loops do not count
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-only"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    subprocess.run(cmd, check=True)


def m1():
    # the main job's data and split: pixels / 16, a random (not stratified) 80/20 split by
    # np.random.RandomState(0).permutation, test = the first ceil(0.2 * n) rows
    with gzip.open(os.path.join(ROOT, "data", "digits", "digits.csv.gz"), "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = torch.from_numpy(rows[:, :64] / 16.0), torch.from_numpy(rows[:, 64]).long()
    perm = np.random.RandomState(0).permutation(len(rows))
    n_test = -(-len(rows) // 5)
    tr = torch.from_numpy(perm[n_test:])
    xtr, ytr = x[tr], y[tr]
    epochs, batch = 20, 64

    def run():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        for _ in range(epochs):
            order = torch.randperm(len(xtr), generator=g)
            for i in range(0, len(xtr), batch):
                idx = order[i:i + batch]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(m(xtr[idx]), ytr[idx]).backward()
                opt.step()
        return time.perf_counter() - t

    run()
    ts = [run() for _ in range(5)]
    emit("M1", "training loop, 20 epochs", statistics.median(ts), min(ts))


if __name__ == "__main__":
    print(f"# torch {torch.__version__} numpy {np.__version__} threads={torch.get_num_threads()} "
          f"python {sys.version.split()[0]}", file=sys.stderr)
    if args.rss_only:
        w6_rss_only()
        sys.exit(0)
    if args.w4_rss:
        w4_rss(*args.w4_rss)
        sys.exit(0)
    # w6 also measures W6f and W6's peak memory
    table = dict(w1=w1, w2=w2, w3=w3, w4=w4, w5=w5, m1=m1, w6=w6, w6f=w6)
    for w in args.which:
        if w.lower() not in table:
            sys.exit(f"unknown workload {w!r}: expected one of {', '.join(table)}")
        table[w.lower()]()
