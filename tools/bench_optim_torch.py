"""PyTorch's side of benches/bench_optim.rs: clip_grad_norm_ (max 1) then torch.optim.AdamW (default foreach) with
two parameter groups (weights decayed, biases not) and a LinearLR + CosineAnnealingLR
schedule over the W2 model's parameters, on gradients already computed. Prints one JSON
line: median and best seconds per step after a 0.5 s warm-up.

Pinned: torch==2.15.0 (CPU). Usage: python tools/bench_optim_torch.py --threads 2
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                        nn.Linear(1024, 10))
    decay = [p for n, p in net.named_parameters() if not n.endswith(".bias")]
    no_decay = [p for n, p in net.named_parameters() if n.endswith(".bias")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
    )
    S = torch.optim.lr_scheduler
    sched = S.SequentialLR(
        opt, [S.LinearLR(opt, 0.1, 1.0, 100), S.CosineAnnealingLR(opt, 100_000)], [100]
    )
    for p in net.parameters():
        p.grad = torch.randn_like(p)

    params = list(net.parameters())

    def step():
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()

    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:
        step()
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({"peer": "pytorch", "w": "optim",
                      "variant": "clip_grad_norm + AdamW 2 groups + warmup/cosine, W2 params",
                      "median": statistics.median(times), "min": min(times)}))


if __name__ == "__main__":
    main()
