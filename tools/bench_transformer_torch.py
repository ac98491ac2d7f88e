"""W7 / W7i in PyTorch, the peer of benches/bench_transformer.rs (same layer, batch,
modes and timing rule: medians of single calls after a 0.5 s warm-up).

Pinned: torch==2.15.0 (CPU). Run: `python tools/bench_transformer_torch.py --threads 2`.
`--threads` sets the thread knobs before torch is imported. One JSON line per workload.
The eval forward runs with the MHA fast path disabled as well as enabled (the fast path
is PyTorch's fused inference kernel; both are printed).
"""
import argparse
import json
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=0)
args = ap.parse_args()
if args.threads:
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)

import torch  # noqa: E402
from torch import nn  # noqa: E402

if args.threads:
    torch.set_num_threads(args.threads)


def bench(f, reps):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        f()
    v = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        v.append(time.perf_counter() - t)
    v.sort()
    return v[len(v) // 2], v[0]


def out(w, variant, med, mn):
    print(json.dumps(dict(peer="torch", w=w, variant=variant, median=round(med, 6), min=round(mn, 6),
                          threads=torch.get_num_threads())), flush=True)


torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, batch_first=True)
x = torch.randn(16, 64, 256)


def train_step():
    layer.zero_grad()
    xg = x.clone().requires_grad_(True)
    layer(xg).sum().backward()


out("w7", "encoder layer fwd+sum+bwd train", *bench(train_step, 20))
layer.eval()
for fast in (False, True):
    torch.backends.mha.set_fastpath_enabled(fast)
    with torch.no_grad():
        med, mn = bench(lambda: layer(x), 30)
    out("w7i", f"encoder layer fwd eval no_grad (fastpath {'on' if fast else 'off'})", med, mn)
