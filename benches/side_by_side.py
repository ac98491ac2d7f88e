#!/usr/bin/env python3
"""Ours beside PyTorch in one run: builds our benchmarks (benches/bench_*.rs), runs them and
benches/torch_peers.py interleaved round after round (ours, torch, ours, torch, ...) so that
load on a shared machine hits both alike, and prints medians over rounds with ratios.

usage (from the repository root):
    python3 benches/side_by_side.py [--rounds 3] [--only w1,w2,w3,w5,w4,m1,w6,w7] [--threads 2]
                                    [--py PYTHON | --setup-venv DIR] [--out results.jsonl]
                                    [--quiet-check [--max-load 1.5] [--settle 180]]
                                    [--before DIR]

PyTorch: `--py` names a python that has torch==2.15.0, numpy and safetensors; `--setup-venv DIR`
creates that venv at DIR if it is missing (pip install of the pinned versions; the PyPI wheel is
the CUDA build, about 5 GB, and runs on the CPU). Without either, $PY or python3 is used.
`--threads N` gives both sides N threads (RAYON_NUM_THREADS for ours, torch.set_num_threads).

Each side prints JSON lines {workload, variant, median_s, best_s[, gflops | gb_s]} (W4's
memory rows: {workload, variant, peak_rss_mib}):
`bench_report --json`, `bench_io --json`, `bench_convnet --json` (W6, W6f and W6's peak RSS,
`peak_rss_mb`; torch's side needs torchvision), the main job's "training loop" time for M1,
and torch_peers.py. W7/W7i (one TransformerEncoderLayer, train step and eval forward) run
`bench_transformer` beside tools/bench_transformer_torch.py (PyTorch's eval forward with its
MHA fast path off and on); their rows also carry the peak RSS of each side's whole process
(wait4's ru_maxrss). The table compares the pairs in PAIRS; everything measured is in --out.

`--quiet-check`: a quiet machine is part of the measurement (under load PyTorch's OpenMP
threads collapse and the ratio lies). Before each round the script waits up to `--settle`
seconds for the 1-minute load average to fall to `--max-load` (default 1.5; our own rounds
raise it too), records the load it started the round at, and refuses to print the ratio
table (exit status 3, the raw rows still written to --out) when any round started above it.

`--before DIR`: DIR holds our bench executables built from an earlier commit
(bench_report, bench_convnet, bench_transformer); they run in the same rounds, interleaved,
as the peer "before", and the table gets a before/after column.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PINNED = ["torch==2.15.0", "numpy", "safetensors"]

# (workload, our variant, torch's variant): the rows of the ratio table
PAIRS = [
    ("W1", "layers", "layers"),
    ("W1", "raw ops", "raw ops"),
    ("W2", "sgd-step", "sgd-step"),
    ("W3", "matmul1024", "matmul1024"),
    ("W5", "fwd+bwd", "fwd+bwd"),
    ("W4", "native save (fsync)", "torch.save(state_dict)"),
    ("W4", "safetensors save (fsync)", "torch.save(state_dict)"),
    ("W4", "native load into model, checksum verified", "torch.load(weights_only)+load_state_dict"),
    ("W4", "safetensors load into model", "torch.load(weights_only)+load_state_dict"),
    ("W4", "safetensors load into model", "torch.load(weights_only, mmap)+load_state_dict"),
    ("W4", "native load into model, checksum verified", "torch.load(weights_only, mmap)+load_state_dict"),
    ("W4", "native load into model, mapped (LoadOptions::mmap, checksum verified)",
     "torch.load(weights_only, mmap)+load_state_dict"),
    ("W4", "peak RSS: native load into model", "peak RSS: torch.load+load_state_dict"),
    ("W4", "peak RSS: native mapped load + first forward", "peak RSS: torch.load(mmap)+load_state_dict"),
    ("W4", "peak RSS: native load into model", "peak RSS: torch.load(mmap)+load_state_dict"),
    ("W4", "peak RSS: model only", "peak RSS: model only"),
    ("M1", "training loop, 20 epochs", "training loop, 20 epochs"),
    ("W6", "sgd-step", "sgd-step"),
    ("W6f", "eval-forward", "eval-forward"),
    ("W6", "peak-rss", "peak-rss"),
    ("W7", "train-step", "train-step"),
    ("W7i", "eval-forward", "eval-forward (fastpath off)"),
    ("W7i", "eval-forward", "eval-forward (fastpath on)"),
    ("W7", "peak-rss", "peak-rss"),
]
# ours against the machine itself, same run: (workload, ours, baseline measured by ours)
BASELINES = [
    ("W4", "native save (fsync)", "baseline: plain write to a new file + fsync"),
    ("W4", "safetensors save (fsync)", "baseline: plain write to a new file + fsync"),
    ("W4", "native load into model, checksum verified", "baseline: memcpy into touched memory (1 thread)"),
]
# ours against ours, same run: what a mapped load defers (the pages are read on first use)
OWN = [
    ("W4", "native load + first forward, mapped", "native load + first forward, copied"),
    ("W4", "safetensors load + first forward, mapped", "safetensors load + first forward, copied"),
]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="w1,w2,w3,w5,w4,m1,w6,w7")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--py", default=os.environ.get("PY", ""))
    ap.add_argument("--setup-venv", default="")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "nn-side-by-side.jsonl"))
    ap.add_argument("--quiet-check", action="store_true",
                    help="refuse to report when a round starts above --max-load")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--settle", type=float, default=180.0,
                    help="seconds to wait before a round for the load to fall to --max-load")
    ap.add_argument("--before", default="", help="a folder of our bench executables from an earlier commit")
    return ap.parse_args()


def load1():
    return float(open("/proc/loadavg").read().split()[0])


def settle(max_load, seconds):
    """Waits up to `seconds` for the 1-minute load average to fall to `max_load`; the load
    the round starts at."""
    deadline = time.monotonic() + seconds
    while load1() > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load1()


def run_with_rss(cmd, env):
    """Runs `cmd` to the end; (stdout, stderr, exit status, peak RSS of that process in MiB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return out.read(), err.read(), p.returncode, usage.ru_maxrss / 1024  # KiB on Linux


def w7_rows(cmd, env, peer):
    """W7/W7i from bench_transformer or tools/bench_transformer_torch.py (their own schema:
    `w`, `variant`, `median`, `min`) in this script's schema, plus the process's peak RSS."""
    out, err, rc, rss = run_with_rss(cmd, env)
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed ({rc}):\n{err[-2000:]}")
    rows = []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        w = {"w7": "W7", "w7i": "W7i"}[r["w"]]
        v = "train-step" if w == "W7" else "eval-forward"
        if "fastpath on" in r["variant"]:
            v += " (fastpath on)"
        elif "fastpath off" in r["variant"]:
            v += " (fastpath off)"
        rows.append(dict(peer=peer, workload=w, variant=v, median_s=r["median"], best_s=r["min"],
                         **({"threads": r["threads"]} if "threads" in r else {})))
    rows.append(dict(peer=peer, workload="W7", variant="peak-rss", peak_rss_mb=round(rss, 1)))
    return rows


def python_with_torch(a):
    if a.setup_venv:
        py = os.path.join(a.setup_venv, "bin", "python")
        if not os.path.exists(py):
            subprocess.run([sys.executable, "-m", "venv", a.setup_venv], check=True)
            subprocess.run([py, "-m", "pip", "install", "-q", *PINNED], check=True)
        return py
    return a.py or "python3"


def run_json(cmd, env, peer):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    for r in rows:
        r["peer"] = peer
    return rows


def ours_m1(train, env):
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([train, "--epochs", "20", "--out", d], capture_output=True, text=True,
                           env=env, cwd=ROOT)
    m = re.search(r"training loop ([\d.]+) ms", p.stdout)
    if p.returncode != 0 or not m:
        sys.exit(f"the main job failed or printed no training-loop time:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    s = float(m.group(1)) / 1e3
    return [dict(peer="ours", workload="M1", variant="training loop, 20 epochs", median_s=s, best_s=s)]


def build_ours():
    """Builds our benchmarks (bench targets, bench profile) and the main job (a release
    example); their executables by target name, as cargo reports them."""
    exes = {}
    for cmd in (["cargo", "bench", "-q", "--no-run", "--message-format=json", "--bench", "bench_report",
                 "--bench", "bench_io", "--bench", "bench_convnet", "--bench", "bench_transformer"],
                ["cargo", "build", "-q", "--release", "--message-format=json", "--example", "train"]):
        p = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        for line in p.stdout.splitlines():
            m = json.loads(line) if line.startswith("{") else {}
            if m.get("executable"):
                exes[m["target"]["name"]] = m["executable"]
    return exes


def main():
    a = parse_args()
    py = python_with_torch(a)
    only = [w.strip().lower() for w in a.only.split(",") if w.strip()]
    ex = build_ours()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    w4dir = tempfile.mkdtemp(prefix="nn-side-w4-")
    ours = {
        "w4": lambda: run_json([ex["bench_io"], "--json", w4dir], env, "ours"),
        "m1": lambda: ours_m1(ex["train"], env),
        "w6": lambda: run_json([ex["bench_convnet"], "--json", "--threads", str(a.threads)],
                               env, "ours"),
    }
    torch_w7 = [py, os.path.join(ROOT, "tools", "bench_transformer_torch.py"), "--threads", str(a.threads)]
    before = {}
    if a.before:
        for name in ("bench_report", "bench_convnet", "bench_transformer"):
            exe = os.path.join(a.before, name)
            if os.access(exe, os.X_OK):
                before[name] = exe
    rows, starts = [], []
    for rnd in range(a.rounds):
        for w in only:
            if a.quiet_check:
                starts.append((rnd, w, settle(a.max_load, a.settle)))
            if w == "w7":
                got = w7_rows([ex["bench_transformer"]], env, "ours")
                if "bench_transformer" in before:
                    got += w7_rows([before["bench_transformer"]], env, "before")
                got += w7_rows(torch_w7, env, "torch")
            else:
                got = ours[w]() if w in ours else run_json(
                    [ex["bench_report"], "--json", w], env, "ours")
                if w == "w6" and "bench_convnet" in before:
                    got += run_json([before["bench_convnet"], "--json", "--threads", str(a.threads)],
                                    env, "before")
                elif w in ("w1", "w2", "w3", "w5") and "bench_report" in before:
                    got += run_json([before["bench_report"], "--json", w], env, "before")
                got += run_json([py, os.path.join(HERE, "torch_peers.py"), w, "--threads", str(a.threads),
                                 "--dir", w4dir], env, "torch")
            for r in got:
                r["round"] = rnd
            rows += got
            print(f"round {rnd + 1}/{a.rounds} {w} done (load {load1():.2f})", file=sys.stderr, flush=True)
    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    loud = [(r, w, l) for r, w, l in starts if l > a.max_load]
    if loud:
        print("\n".join(f"round {r + 1} {w} started at load {l:.2f} > {a.max_load}" for r, w, l in loud),
              file=sys.stderr)
        print(f"--quiet-check: not a quiet machine, no ratio reported (raw rows in {a.out})", file=sys.stderr)
        sys.exit(3)
    print(report(rows, a, starts))


def median_of(rows, peer, w, variant):
    key = ("gflops" if w == "W3" else "peak_rss_mb" if variant == "peak-rss"
           else "peak_rss_mib" if variant.startswith("peak RSS") else "median_s")
    v = [r[key] for r in rows if r["peer"] == peer and r["workload"] == w and r["variant"] == variant]
    return statistics.median(v) if v else None


def fmt(w, v, gb=None):
    if v is None:
        return "-"
    if w == "W3":
        return f"{v:.0f} GFLOP/s"
    if gb:
        return f"{gb / v:.2f} GB/s"
    return f"{v * 1e6:.2f} µs" if v < 1e-3 else f"{v * 1e3:.2f} ms"


def report(rows, a, starts=()):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    torch_v = next((r for r in rows if r["peer"] == "torch" and "threads" in r), {})
    gb = {r["workload"]: r.get("gb_s", r.get("gbps")) * r["median_s"] for r in rows
          if "gb_s" in r or "gbps" in r}
    out = [f"{cpu}, {os.cpu_count()} CPUs; {a.threads} threads each; medians of {a.rounds} interleaved rounds; "
           f"torch threads={torch_v.get('threads', '?')}"]
    if starts:
        loads = [l for _, _, l in starts]
        out.append(f"load average (1 min) at the start of each round: {min(loads):.2f} to {max(loads):.2f} "
                   f"(--max-load {a.max_load})")
    has_before = any(r["peer"] == "before" for r in rows)
    out += ["", "| workload | ours | PyTorch | ours vs PyTorch |" + (" ours before | after vs before |" if has_before else ""),
            "|---|---|---|---|" + ("---|---|" if has_before else "")]
    for w, ov, tv in PAIRS:
        o, t = median_of(rows, "ours", w, ov), median_of(rows, "torch", w, tv)
        if o is None or t is None:
            continue
        b = median_of(rows, "before", w, ov) if has_before else None
        label = f"{w} {ov}" if ov == tv else f"{w} {ov} / torch: {tv}"
        if ov == "peak-rss" or ov.startswith("peak RSS"):
            line = f"| {label} | {o:.0f} MiB | {t:.0f} MiB | {o / t:.2f}x the memory |"
            if has_before:
                line += f" {b:.0f} MiB | {o / b:.2f}x the memory |" if b else " - | - |"
            out.append(line)
            continue
        r = o / t if w == "W3" else t / o
        word = "faster" if r >= 1 else "slower"
        line = f"| {label} | {fmt(w, o, gb.get(w))} | {fmt(w, t, gb.get(w))} | {r:.2f}x ({word}) |"
        if has_before:
            line += (f" {fmt(w, b, gb.get(w))} | {(o / b if w == 'W3' else b / o):.2f}x |" if b else " - | - |")
        out.append(line)
    for w, ov, base in BASELINES:
        o, b = median_of(rows, "ours", w, ov), median_of(rows, "ours", w, base)
        if o is not None and b is not None:
            out.append(f"| {w} {ov} vs {base} | {fmt(w, o, gb.get(w))} | {fmt(w, b, gb.get(w))} (machine) | {b / o:.2f}x of the machine |")
    for w, ov, other in OWN:
        o, b = median_of(rows, "ours", w, ov), median_of(rows, "ours", w, other)
        if o is not None and b is not None:
            out.append(f"| {w} {ov} vs {other} | {fmt(w, o, gb.get(w))} | {fmt(w, b, gb.get(w))} (ours) | {b / o:.2f}x |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
