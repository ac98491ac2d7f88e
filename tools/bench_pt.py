"""W4p: load a 400 MB torch.save state dict into a model, nn vs PyTorch, in one run.

Pinned: torch==2.15.0. From the repository root:

    cargo bench --bench bench_pt --no-run
    .venv-torch/bin/python tools/bench_pt.py [--rounds 3] [--reps 5] [--threads 2]

Writes /tmp/nn-w4p/w4p.pt (4 x Linear(5000, 5000) f32, 400 MB; never committed) with
torch.save, then alternates, round after round: PyTorch's torch.load(path,
weights_only=True) + model.load_state_dict(sd, strict=True) into a model built once,
and benches/bench_pt.rs (nn's model.load(path)). Prints each round's JSON
lines and the median ratio PyTorch time / nn time (above 1: nn is faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
for v in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"]:
    os.environ[v] = str(args.threads)

import torch  # noqa: E402

torch.set_num_threads(args.threads)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# the bench target's executable, as `cargo bench --no-run` reports it (built if needed)
BIN = subprocess.run([os.path.join(ROOT, "benches", "bench_bin.sh"), "bench_pt"], check=True,
                     stdout=subprocess.PIPE, text=True).stdout.strip()
PATH = "/tmp/nn-w4p/w4p.pt"


def model():
    return torch.nn.Sequential(*[torch.nn.Linear(5000, 5000) for _ in range(4)])


os.makedirs(os.path.dirname(PATH), exist_ok=True)
if not os.path.exists(PATH):
    torch.manual_seed(0)
    torch.save(model().state_dict(), PATH)
print(f"W4p: {os.path.getsize(PATH) / 1e6:.0f} MB file {PATH}, torch {torch.__version__}, "
      f"{args.threads} threads", flush=True)

net = model()


def torch_load():
    net.load_state_dict(torch.load(PATH, weights_only=True), strict=True)


torch_load()  # warm-up
ratios = []
for r in range(args.rounds):
    ts = []
    for _ in range(args.reps):
        t = time.perf_counter()
        torch_load()
        ts.append(time.perf_counter() - t)
    pt = {"peer": "torch", "what": "torch.load(weights_only=True)+load_state_dict",
          "median": statistics.median(ts), "min": min(ts)}
    print(json.dumps(pt), flush=True)
    out = subprocess.run([BIN, PATH, str(args.reps)], check=True, capture_output=True, text=True)
    ours = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(ours), flush=True)
    ratios.append(pt["median"] / ours["median"])
    print(f"round {r}: torch/nn = {ratios[-1]:.2f}", flush=True)
print(f"median ratio torch/nn over {args.rounds} rounds: {statistics.median(ratios):.2f}")
sys.exit(0)
