#!/usr/bin/env bash
# W8 (benches/PEERS.md): the W2 train step data-parallel over 2 ranks of 1 thread vs 1
# process of 1 thread, ours (benches/bench_distributed.rs, Open MPI) and PyTorch's DDP on
# Gloo (tools/bench_ddp_torch.py), interleaved in one run; prints every measurement as a
# JSON line and then each implementation's scaling efficiency (PyTorch's definition:
# speedup / world size at the same global batch, t_1proc / t_2ranks / 2); ours for each
# DDP set-up bench_distributed times (blocking all-reduce after backward, then the
# overlapped buckets; NN_W8_CONFIGS=... passes its --configs).
#
#   benches/bench_w8.sh [ROUNDS]        # default 3 rounds; PYTHON=... picks the torch venv
#
# Needs Open MPI (apt-get install libopenmpi-dev openmpi-bin libclang-dev) and, for the
# reference, PyTorch (default /work/venv-torch/bin/python; skipped when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PY=${PYTHON:-/work/venv-torch/bin/python}
BIN=$(benches/bench_bin.sh bench_distributed --features mpi)
MPIRUN=(mpirun --oversubscribe -np 2 --mca btl self,vader
        --mca btl_vader_single_copy_mechanism none -x RAYON_NUM_THREADS=1)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq "$ROUNDS"); do
    echo "== round $r of $ROUNDS" >&2
    RAYON_NUM_THREADS=1 "$BIN" --single --json | tee -a "$OUT"
    "${MPIRUN[@]}" "$BIN" --json ${NN_W8_CONFIGS:+--configs "$NN_W8_CONFIGS"} | tee -a "$OUT"
    if [ -x "$PY" ]; then
        "$PY" tools/bench_ddp_torch.py --world 1 | tee -a "$OUT"
        "$PY" tools/bench_ddp_torch.py --world 2 | tee -a "$OUT"
    fi
done
SUMMARY_PY=$PY
[ -x "$SUMMARY_PY" ] || SUMMARY_PY=python3
"$SUMMARY_PY" - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(impl, variant, key="median_s"):
    v = [r[key] for r in rows if r["impl"] == impl and r["variant"] == variant and key in r]
    return statistics.median(v) if v else None
for impl in ("nn", "torch"):
    t1 = med(impl, "1proc")
    # "2ranks", then ours' other DDP set-ups ("2ranks:<config>", bench_distributed --configs)
    variants = sorted({r["variant"] for r in rows if r["impl"] == impl
                       and r["variant"].startswith("2ranks")}, key=lambda v: (v != "2ranks", v))
    for variant in variants:
        t2 = med(impl, variant)
        if t1 is None or t2 is None:
            continue
        speedup = t1 / t2
        out = {"workload": "W8", "impl": impl, "variant": "efficiency", "world": 2,
               "ranks_variant": variant, "t_1proc_s": t1, "t_2ranks_s": t2,
               "speedup": round(speedup, 3), "efficiency": round(speedup / 2, 3),
               "allreduce_s": med(impl, "2ranks", "allreduce_s"),
               "allreduce_bytes": med(impl, "2ranks", "allreduce_bytes")}
        if impl == "nn":
            out["allreduce_in_step_s"] = med(impl, variant, "allreduce_in_step_s")
        print(json.dumps(out))
        print(f"W8 {impl:5} {variant:28}: 1 proc {t1*1e3:.2f} ms/step, 2 ranks {t2*1e3:.2f} ms/step, "
              f"speedup {speedup:.2f}, efficiency {100*speedup/2:.0f}% "
              f"(all-reduce of {out['allreduce_bytes']/1e6:.1f} MB: {out['allreduce_s']*1e3:.2f} ms)",
              file=sys.stderr)
PY
