#!/usr/bin/env python3
"""ResNet-18's distinct convolutions (W6f's, batch 8 of 64x64) timed one by one, ours
beside PyTorch's, to see where W6f's time goes layer by layer.

    python3 benches/conv_layers.py --threads 2 [--py /path/to/python-with-torch]

Ours come from `bench_convnet --layers --json` (built by `benches/bench_bin.sh`), PyTorch's
from `F.conv2d` under `torch.no_grad()` on the same shapes (no bias, padding k // 2),
each the median of 31 calls after 5 warm-up calls, both in the same run.
"""

import argparse
import json
import os
import subprocess
import sys

# (label, in channels, out channels, kernel, stride, input side, count): bench_convnet's LAYERS
LAYERS = [
    ("stem 7x7/2", 3, 64, 7, 2, 64, 1),
    ("l1 3x3", 64, 64, 3, 1, 16, 4),
    ("l2 3x3/2", 64, 128, 3, 2, 16, 1),
    ("l2 1x1/2", 64, 128, 1, 2, 16, 1),
    ("l2 3x3", 128, 128, 3, 1, 8, 3),
    ("l3 3x3/2", 128, 256, 3, 2, 8, 1),
    ("l3 1x1/2", 128, 256, 1, 2, 8, 1),
    ("l3 3x3", 256, 256, 3, 1, 4, 3),
    ("l4 3x3/2", 256, 512, 3, 2, 4, 1),
    ("l4 1x1/2", 256, 512, 1, 2, 4, 1),
    ("l4 3x3", 512, 512, 3, 1, 2, 3),
]


def torch_side(threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import time
    import statistics
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    out = {}
    total = 0.0
    with torch.no_grad():
        for label, c, o, k, s, side, count in LAYERS:
            x = torch.randn(8, c, side, side)
            w = torch.randn(o, c, k, k)
            for _ in range(5):
                F.conv2d(x, w, stride=s, padding=k // 2)
            ts = []
            for _ in range(31):
                t = time.perf_counter()
                F.conv2d(x, w, stride=s, padding=k // 2)
                ts.append(time.perf_counter() - t)
            out[label] = statistics.median(ts)
            total += out[label] * count
    out["total"] = total
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--py", default=sys.executable, help="a Python with torch")
    ap.add_argument("--bin", help="bench_convnet executable (default: build it)")
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_only:
        return torch_side(a.threads)
    here = os.path.dirname(os.path.abspath(__file__))
    exe = a.bin or subprocess.check_output([os.path.join(here, "bench_bin.sh"), "bench_convnet"], text=True).strip()
    ours = {}
    lines = subprocess.check_output([exe, "--threads", str(a.threads), "--layers", "--json"], text=True)
    for line in lines.splitlines():
        r = json.loads(line)
        ours[r["variant"]] = r["median_s"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    theirs = json.loads(subprocess.check_output(
        [a.py, os.path.abspath(__file__), "--torch-only", "--threads", str(a.threads)], text=True, env=env))
    print(f"{'layer (batch 8)':<22} {'count':>5} {'ours ms':>9} {'PyTorch ms':>11} {'ours vs PyTorch':>16}")
    for label, *_, count in LAYERS + [("total", 0, 0, 0, 0, 0, 1)]:
        o, t = ours[label] * 1e3, theirs[label] * 1e3
        print(f"{label:<22} {count:>5} {o:>9.3f} {t:>11.3f} {t / o:>15.2f}x")


if __name__ == "__main__":
    main()
